"""Forms for the operations on the mirror and host pages.

They only turn what a person typed into the arguments of one members.actions function; every
rule is that function's (members.rules over the engine's catalog), so a page refuses exactly
what the API refuses, with the same message. Labels and help texts are plain words: a person
reads them, not a script.
"""

from django import forms
from django.core.exceptions import ValidationError

from accounts.roles import scope
from engine import rules as catalog
from members import actions, rules
from members.models import Instance, Member, Mirror


def other_members(mirror: Mirror) -> list[Member]:
    """Members that may get a copy of a new database: all but the one that reports Primary."""
    return [m for m in mirror.members.all() if m.status != catalog.PRIMARY]


def show_refusal(form, exc: ValidationError) -> None:
    """A rule's refusal on the form: on the field it names, else above the form."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


# --- The confirmation every destructive operation asks for -------------------------------------
class ConfirmForm(forms.Form):
    """Type the mirror's name: members.actions.check_confirmed decides, as for the API."""

    confirm = forms.CharField(label="Type the mirror's name to confirm", max_length=64)

    def __init__(self, mirror: Mirror, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mirror = mirror
        field = self.fields["confirm"]
        field.help_text = f"Type {mirror.name} (any case). Nothing starts until it matches."
        field.error_messages["required"] = f"Type the mirror's name, {mirror.name}, to confirm."
        field.widget.attrs.update(autocomplete="off", spellcheck="false", autocapitalize="off")

    def clean_confirm(self):
        value = self.cleaned_data["confirm"]
        try:
            actions.check_confirmed(self.mirror, value)
        except ValidationError as exc:
            raise ValidationError(exc.error_dict["confirm"]) from None
        return value


class RemoveMirrorForm(ConfirmForm):
    remove_db_attribute = forms.BooleanField(
        label="Make the databases ordinary ones on every member",
        required=False,
        help_text="Otherwise they keep the mirrored attribute and can only rejoin this mirror.",
    )
    remove_tls = forms.BooleanField(
        label="Also remove each member's TLS setup",
        required=False,
        help_text="The certificate, key and CA each member uses for the mirror.",
    )


# --- Settings ----------------------------------------------------------------------------------
class MirrorSettingsForm(forms.Form):
    """The mirror's settings, filled with what the portal holds. Turning TLS off is not here:
    it has its own confirmation page (members.views.turn_tls_off)."""

    requires_tls = forms.BooleanField(
        label="Require TLS between members",
        required=False,
        help_text="Every member then proves who it is with its certificate; each needs one.",
    )
    failover_compression = forms.ChoiceField(
        label="Compression to the backup",
        choices=rules.COMPRESSION_MODES,
        help_text="How journal data travels between the failover members.",
    )
    failover_compression_type = forms.ChoiceField(
        label="Compression method to the backup",
        choices=rules.COMPRESSION_TYPES,
        help_text="Used when compression to the backup is Compressed.",
    )
    async_compression = forms.ChoiceField(
        label="Compression to async members",
        choices=rules.COMPRESSION_MODES,
        help_text="How journal data travels to the DR and reporting members.",
    )
    async_compression_type = forms.ChoiceField(
        label="Compression method to async members",
        choices=rules.COMPRESSION_TYPES,
        help_text="Used when compression to async members is Compressed.",
    )
    arbiter_host = forms.CharField(
        label="Arbiter host",
        required=False,
        max_length=253,
        help_text="Name or IP of the arbiter's host, not a failover member's; empty for none.",
    )
    arbiter_port = forms.IntegerField(
        label="Arbiter port",
        min_value=1,
        max_value=65535,
        help_text="The arbiter's own port on its host (2189 unless its agent says otherwise).",
    )
    vip_address = forms.CharField(
        label="Virtual IP address",
        required=False,
        max_length=45,
        help_text="An IP address that moves with the primary; empty for none.",
    )
    vip_mask = forms.IntegerField(
        label="Virtual IP mask (CIDR bits)",
        required=False,
        min_value=0,
        max_value=128,
        help_text="The network's prefix length, e.g. 24.",
    )
    vip_interface = forms.CharField(
        label="Virtual IP network interface",
        required=False,
        max_length=64,
        help_text="The interface on each failover member that carries it, e.g. eth0.",
    )
    qos_timeout_ms = forms.IntegerField(
        label="Quality of service timeout (milliseconds)",
        help_text="How long the failover members wait for each other before acting.",
    )
    parallel_dejournaling = forms.ChoiceField(
        label="Parallel dejournaling",
        choices=rules.PARALLEL_DEJOURNALING,
        help_text="Which members apply journal data with several processes at once.",
    )
    skip_verify = forms.BooleanField(
        label="Turn TLS on even if a certificate fails the check",
        required=False,
        help_text="Only when you know why a member's certificate fails.",
    )
    ADVANCED = ("qos_timeout_ms", "parallel_dejournaling", "skip_verify")
    VIP = ("vip_address", "vip_mask", "vip_interface")

    def __init__(self, mirror: Mirror, *args, **kwargs):
        kwargs.setdefault(
            "initial", {f: getattr(mirror, f) for f in self.base_fields if f != "skip_verify"}
        )
        super().__init__(*args, **kwargs)
        self.mirror = mirror
        if mirror.requires_tls:
            del self.fields["requires_tls"], self.fields["skip_verify"]

    def visible(self, names):
        return [self[name] for name in names if name in self.fields]

    def main_fields(self):
        skip = set(self.ADVANCED) | set(self.VIP)
        return self.visible([n for n in self.fields if n not in skip])

    def vip_fields(self):
        return self.visible(self.VIP)

    def advanced_fields(self):
        return self.visible(self.ADVANCED)

    def changes(self) -> dict:
        """Only what differs from the mirror (the VIP as a whole: it is all or nothing)."""
        data = dict(self.cleaned_data)
        skip_verify = data.pop("skip_verify", False)
        data["vip_address"] = data["vip_address"] or None
        changed = {f: v for f, v in data.items() if getattr(self.mirror, f) != v}
        if set(changed) & set(self.VIP):
            changed.update({f: data[f] for f in self.VIP})
        if not changed:
            raise ValidationError("Nothing changed.", code="no_change")
        return {**changed, "skip_verify": skip_verify}


# --- Members -----------------------------------------------------------------------------------
class JoinForm(forms.Form):
    """An instance a host's agent reported joins the mirror (guide §4.7.2, §4.7.5)."""

    instance = forms.ChoiceField(
        label="Instance",
        help_text="As its host's agent reported it at the last check (Hosts, Check now).",
    )
    member_type = forms.ChoiceField(
        label="Member type",
        choices=rules.MEMBER_TYPES,
        help_text="Failover: may become primary (two at most). The others are asyncs.",
    )
    private = forms.CharField(
        label="Mirror private address",
        required=False,
        max_length=260,
        help_text="Failover members only: host:port where the failover members exchange data.",
    )
    member = forms.CharField(
        label="Member name",
        required=False,
        max_length=32,
        help_text="Leave empty to use the instance's name.",
    )
    ADVANCED = ("member",)

    def __init__(self, mirror: Mirror, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mirror = mirror
        joined = {(m.host_id, m.name) for m in mirror.members.all()}
        # which mirror an instance serves, as this user may read it (docs/access.md)
        seen = scope(Mirror.objects, user, "pk") if user else Mirror.objects.all()
        readable = set(seen.values_list("name", flat=True))
        groups: dict[str, list] = {}
        for found in Instance.objects.select_related("host").order_by("host__name", "name"):
            if (found.host_id, found.name) in joined:
                continue
            label = found.name
            if found.mirror_name:
                shown = found.mirror_name if found.mirror_name in readable else "another mirror"
                label += f" (member of {shown})"
            groups.setdefault(found.host.name, []).append((f"{found.host_id}:{found.name}", label))
        self.fields["instance"].choices = [("", "Choose an instance"), *groups.items()]

    def clean_instance(self):
        host_id, _, name = self.cleaned_data["instance"].partition(":")
        found = Instance.objects.select_related("host").filter(host_id=host_id, name=name).first()
        if found is None:
            raise ValidationError("That instance is no longer reported.", code="invalid_choice")
        return found

    def arguments(self) -> dict:
        data = self.cleaned_data
        found = data["instance"]
        return {
            "host": found.host,
            "instance": found.name,
            "member_type": data["member_type"],
            "private": data["private"].strip(),
            "member": data["member"].strip(),
        }


class MemberAddressForm(forms.Form):
    """New addresses recorded on the primary, which passes them on (guide §5.2)."""

    superserver = forms.CharField(
        label="Superserver address",
        required=False,
        max_length=260,
        help_text="host:port where applications and other members reach it.",
    )
    private = forms.CharField(
        label="Mirror private address",
        required=False,
        max_length=260,
        help_text="host:port for mirror data (failover members); leave empty to keep it.",
    )

    def __init__(self, member: Member, *args, **kwargs):
        current = f"{member.superserver_address}:{member.superserver_port}"
        kwargs.setdefault("initial", {"superserver": current})
        super().__init__(*args, **kwargs)
        self.current = current

    def arguments(self) -> dict:
        superserver = self.cleaned_data["superserver"].strip()
        return {
            "superserver": "" if superserver == self.current else superserver,
            "private": self.cleaned_data["private"].strip(),
        }


# --- Databases ---------------------------------------------------------------------------------
class DatabaseForm(forms.Form):
    """A database in the mirror: new, or one the primary has (guide §4.8)."""

    name = forms.CharField(
        label="Database name",
        max_length=64,
        help_text="A letter or _ first, then letters, digits, - or _; stored uppercase.",
    )
    how = forms.ChoiceField(
        label="Where it comes from",
        widget=forms.RadioSelect,
        initial="create",
        choices=[
            ("create", "Create a new, empty database"),
            ("add", "Add a database the primary already has, with its data"),
        ],
        help_text="An existing database is downloaded by the members that get a copy.",
    )
    members = forms.MultipleChoiceField(
        label="Members that get a copy now",
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Untick a member to give it its copy later.",
    )

    def __init__(self, mirror: Mirror, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = [m.name for m in other_members(mirror)]
        self.fields["members"].choices = [(n, n) for n in names]
        self.fields["members"].initial = names

    def arguments(self) -> dict:
        data = self.cleaned_data
        chosen = list(data["members"])
        every = set(chosen) == {value for value, _ in self.fields["members"].choices}
        # all ticked: "every other member", which the job works out from the primary itself
        return {"name": data["name"], "how": data["how"], "members": None if every else chosen}


COPY_ACTIONS = [
    ("activate", "Activate"),
    ("catchup", "Catch up"),
    ("mount", "Mount"),
    ("remove", "Remove from the mirror on this member"),
]


class CopiesForm(forms.Form):
    """Several of one member's copies and one action for all, as the Mirror Monitor's
    mirrored-databases list offers them (guide §5.1.1.3, §4.8.5)."""

    copies = forms.ModelMultipleChoiceField(
        queryset=None,
        label="Databases",
        error_messages={"required": "Select at least one database."},
    )
    action = forms.ChoiceField(label="Action for the selected databases", choices=COPY_ACTIONS)

    def __init__(self, member: Member, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["copies"].queryset = member.database_copies.select_related("database")


class RemoveCopiesForm(ConfirmForm):
    copies = forms.ModelMultipleChoiceField(
        queryset=None,
        widget=forms.MultipleHiddenInput,
        error_messages={"required": "Select at least one database."},
    )

    def __init__(self, member: Member, *args, **kwargs):
        super().__init__(member.mirror, *args, **kwargs)
        self.fields["copies"].queryset = member.database_copies.select_related("database")


# --- Application credentials of a member's instance (docs/hardening.md) ------------------------
class AppCredentialForm(forms.Form):
    name = forms.CharField(
        label="Application's credential name",
        max_length=64,
        help_text="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit: "
        "the application's name, say billing.",
    )


class RevokeAppCredentialForm(ConfirmForm):
    name = forms.CharField(widget=forms.HiddenInput, max_length=64)


# --- Forcing a primary, promoting a DR async to primary (members/failover_views.py) -----------
class ForcePrimaryForm(ConfirmForm):
    """The mirror's name typed, and which preview job's answer the operator saw (step two of
    forcing a primary and of promoting a DR async to primary alike)."""

    preview = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


# --- Promoting a DR async to primary with no primary running (members/failover_views.py) -------
class PartnerForm(forms.Form):
    """Step one: the partner the DR async takes, one of the mirror's failover members, or none
    (members.failover_actions decides, as for the API)."""

    partner = forms.ChoiceField(
        label="Partner",
        widget=forms.RadioSelect,
        required=False,
        help_text="A failover member whose host is up but whose instance is down: its agent "
        "confirms it down and its journal beyond the DR async's is copied first, so nothing it "
        "had is lost. None: what the failover members committed after the DR async's journal "
        "end is lost.",
    )

    def __init__(self, failover_members: list[Member], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["partner"].choices = [("", "None")] + [
            (m.name, f"{m.name} ({m.status or 'not read yet'}, as it last reported)")
            for m in failover_members
        ]
        self.initial.setdefault("partner", "")
