"""One form per wizard step. Each field says in a line what it is for; the values are checked
with the shared rules here, and again by the action the step starts (members/actions.py)."""

from __future__ import annotations

import copy
import re

from django import forms
from django.core.exceptions import ValidationError

from engine import rules as catalog
from members import reconcile, rules
from members.forms import MirrorSettingsForm
from members.models import Instance, Member, Mirror

ADVANCED = [
    "qos_timeout_ms",
    "failover_compression",
    "failover_compression_type",
    "async_compression",
    "async_compression_type",
    "parallel_dejournaling",
    "arbiter_host",
    "arbiter_port",
    "vip_address",
    "vip_mask",
    "vip_interface",
]
NAMES = re.compile(r"[\s,]+")
# Bounds on what a person may type: each value is kept in the draft and in jobs' parameters.
PATH_MAX = 4096
ADDRESS_MAX = 260
NAMES_MAX = 4000
MAX_DATABASES_AT_ONCE = 50  # one job each


def instance_label(instance: Instance) -> str:
    where = f"{instance.name} on {instance.host.name} ({instance.superserver or 'no superserver'})"
    if instance.member_name:
        where += f", {catalog.MEMBER_TYPE_LABELS.get(instance.member_type, instance.member_type)}"
        where += f" of {instance.mirror_name}"
    return where


def suggest_private(instance: Instance | None) -> str:
    """The superserver's host with the next port: what our launcher reserves for it."""
    host, port = reconcile.split_address(instance.superserver if instance else "")
    return f"{host}:{port + 1}" if host and port else ""


def split_names(text: str) -> list[str]:
    return [n for n in NAMES.split(text or "") if n]


class InstancesForm(forms.Form):
    primary = forms.ChoiceField(
        label="First failover member",
        help_text="It creates the mirror and becomes its primary.",
    )
    backup = forms.ChoiceField(
        label="Second failover member",
        required=False,
        help_text="It joins as the backup that can take over; leave empty to add one later.",
    )
    asyncs = forms.MultipleChoiceField(
        label="Async members",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Disaster-recovery or reporting members; you choose each one's type later.",
    )
    tls = forms.BooleanField(
        label="Secure the mirror with TLS",
        required=False,
        initial=True,
        help_text="Members prove who they are with certificates and the journal travels "
        "encrypted (recommended; guide §4.7.3).",
    )

    def __init__(self, *args, free=(), reporting=(), **kwargs):
        """`free`: instances in no mirror; `reporting`: reporting members, which may join more
        mirrors (guide §3.3.3)."""
        super().__init__(*args, **kwargs)
        self.instances = {str(i.pk): i for i in [*free, *reporting]}
        failover = [(str(i.pk), instance_label(i)) for i in free]
        self.fields["primary"].choices = [("", "— choose an instance —"), *failover]
        self.fields["backup"].choices = [("", "— none for now —"), *failover]
        self.fields["asyncs"].choices = [(k, instance_label(i)) for k, i in self.instances.items()]

    def clean(self):
        data = super().clean()
        primary, backup = data.get("primary"), data.get("backup")
        asyncs = data.get("asyncs") or []
        if primary and primary == backup:
            self.add_error("backup", "Choose another instance than the first failover member.")
        if {primary, backup} & set(asyncs):
            self.add_error("asyncs", "A failover member cannot also be an async member.")
        types = [catalog.FAILOVER] * (1 + bool(backup)) + [catalog.DR] * len(asyncs)
        try:
            rules.verdict(catalog.check_member_mix, "NEW", types)
        except ValidationError as exc:
            self.add_error("asyncs", exc)
        return data


class CertificatesForm(forms.Form):
    ca = forms.CharField(
        label="CA certificate",
        max_length=PATH_MAX,
        required=False,
        help_text="The file of the certificate authority all members trust, on each host.",
    )

    def __init__(self, *args, instances=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.instances = list(instances)
        for i in self.instances:
            shown = f" (its agent reports {i.certificate_dn})" if i.certificate_dn else ""
            self.fields[f"cert_{i.pk}"] = forms.CharField(
                label=f"{i.name}'s certificate",
                max_length=PATH_MAX,
                required=False,
                help_text=f"Its certificate file on {i.host.name}{shown}; its DN identifies "
                "the member.",
            )
            self.fields[f"key_{i.pk}"] = forms.CharField(
                label=f"{i.name}'s private key",
                max_length=PATH_MAX,
                required=False,
                help_text=f"Its key file on {i.host.name}.",
            )

    def clean(self):
        data = super().clean()
        for name, value in data.items():
            if value and not value.startswith("/"):
                self.add_error(name, "An absolute path on the instance's host.")
        given = self.given()
        for i in self.instances:
            if bool(data.get(f"cert_{i.pk}")) != bool(data.get(f"key_{i.pk}")):
                self.add_error(f"key_{i.pk}", "Give both the certificate and its key, or neither.")
        if given and not data.get("ca"):
            self.add_error("ca", "The CA certificate is needed with the members' certificates.")
        return data

    def given(self) -> list:
        """The instances whose files were given (the others have theirs already)."""
        data = getattr(self, "cleaned_data", {})
        return [i for i in self.instances if data.get(f"cert_{i.pk}") and data.get(f"key_{i.pk}")]


class MirrorForm(forms.Form):
    """The mirror's name and the primary's private address; the advanced settings are the
    mirror page's settings fields (members.forms.MirrorSettingsForm), with the same words."""

    name = forms.CharField(
        label="Mirror name",
        max_length=catalog.MAX_MIRROR_NAME,
        help_text="1-15 letters or digits; stored uppercase and never changed.",
    )
    private = forms.CharField(
        label="Mirror private address of the first failover member",
        max_length=ADDRESS_MAX,
        help_text="host:port where the failover members exchange the journal (guide §4.7.1).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = Mirror()
        for name in ADVANCED:  # folded away: an advanced setting left out takes its default
            field = copy.deepcopy(MirrorSettingsForm.base_fields[name])
            field.required, field.initial = False, getattr(defaults, name)
            self.fields[name] = field

    def clean_name(self):
        return rules.normalize_mirror_name(self.cleaned_data["name"])

    def clean(self):
        data = super().clean()
        for name in ADVANCED:
            if data.get(name) in (None, "") and name not in self.errors:
                data[name] = self.fields[name].initial
        return data


class BackupForm(forms.Form):
    private = forms.CharField(
        label="Mirror private address of the second failover member",
        max_length=ADDRESS_MAX,
        help_text="host:port where it receives the journal from the primary.",
    )


class AsyncsForm(forms.Form):
    TYPES = [(t, catalog.MEMBER_TYPE_LABELS[t]) for t in sorted(catalog.ASYNC_TYPES)]

    def __init__(self, *args, instances=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.instances = list(instances)
        for i in self.instances:
            initial = i.member_type if i.member_type in catalog.REPORTING_TYPES else catalog.DR
            self.fields[f"type_{i.pk}"] = forms.ChoiceField(
                label=f"{i.name} on {i.host.name}",
                choices=self.TYPES,
                initial=initial,
                help_text="Disaster recovery can be promoted to failover; reporting members "
                "serve reads (read-write: also their own writes).",
            )

    def clean(self):
        data = super().clean()
        types = [data[k] for k in data if k.startswith("type_")]
        try:
            rules.verdict(catalog.check_member_mix, "NEW", [catalog.FAILOVER, *types])
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None
        return data

    def types(self) -> dict[int, str]:
        return {int(k[5:]): v for k, v in self.cleaned_data.items() if k.startswith("type_")}


class AuthorizeForm(forms.Form):
    members = forms.MultipleChoiceField(
        label="Members to authorize",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Authorize a member only if the DN is the one its certificate should carry.",
    )

    def __init__(self, *args, members=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.members = list(members)
        self.fields["members"].choices = [(str(m.pk), self.label(m)) for m in self.members]
        self.fields["members"].initial = [
            str(m.pk) for m in self.members if m.authorization == Member.PENDING
        ]

    @staticmethod
    def label(m: Member) -> str:
        text = f"{m.name} ({m.get_member_type_display()}) — DN {m.x509_dn or 'none'}"
        return text if m.authorization == Member.PENDING else f"{text} — authorized already"


class DatabasesForm(forms.Form):
    HOW = [
        ("download", "The other members download it from the mirror now"),
        ("restore", "I restore the primary's files on them; the next step adds those copies"),
    ]
    new = forms.CharField(
        label="New databases",
        max_length=NAMES_MAX,
        required=False,
        help_text="Names of empty databases to create on every member, separated by commas.",
    )
    existing = forms.CharField(
        label="Existing databases of the primary",
        max_length=NAMES_MAX,
        required=False,
        help_text="Names of databases the first failover member already holds, with their "
        "data, to add to the mirror.",
    )
    how = forms.ChoiceField(
        label="How the other members get the existing ones",
        choices=HOW,
        initial="download",
        widget=forms.RadioSelect,
        help_text="Downloading is simplest; restoring a backup is faster for large databases "
        "(guide §4.8).",
    )

    def _names(self, field: str) -> list[str]:
        names = []
        given = split_names(self.cleaned_data.get(field, ""))
        if len(given) > MAX_DATABASES_AT_ONCE:
            self.add_error(field, f"At most {MAX_DATABASES_AT_ONCE} databases in one step.")
            return []
        for name in given:
            try:
                names.append(rules.normalize_database_name(name))
            except ValidationError as exc:
                self.add_error(field, f"{name}: {' '.join(exc.messages)}")
        return names

    def clean(self):
        data = super().clean()
        data["new_names"], data["existing_names"] = self._names("new"), self._names("existing")
        both = set(data["new_names"]) & set(data["existing_names"])
        if both:
            self.add_error("existing", f"Named twice: {', '.join(sorted(both))}.")
        return data


class CatchupForm(forms.Form):
    copies = forms.MultipleChoiceField(
        label="Copies to bring up to date",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Each chosen copy is added (if restored), activated and caught up.",
    )

    def __init__(self, *args, copies=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["copies"].choices = [(key, label) for key, label, _ in copies]
        self.fields["copies"].initial = [key for key, _, wanted in copies if wanted]


class ReviewForm(forms.Form):
    """Nothing to answer: the review reads the members."""
