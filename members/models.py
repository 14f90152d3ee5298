"""Mirrors as the portal knows them: what their members last answered (members/reconcile.py),
the settings the portal keeps for them (drift shows where the primary differs), the hosts and
the instances their agents report.

Validation lives in `members.rules` (the rules shared with the engine are engine/rules.py's);
fields point at it and `clean()` applies the cross-object limits, so `full_clean()` enforces all
of it for what the portal itself writes (hosts, its own settings). Setting values are stored as
the engine spells them ("System Selected", "failover+dr").
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from engine import rules as catalog
from members import rules
from portal.crypto import EncryptedCharField

# Mirror fields whose values the catalog checks (the engine's `tls` is `requires_tls` here).
SETTING_FIELDS = frozenset(catalog.SETTINGS) - {"tls"}


class Mirror(models.Model):
    name = models.CharField(
        max_length=catalog.MAX_MIRROR_NAME,
        unique=True,
        help_text="1-15 letters or digits, stored uppercase; never changes.",
    )
    requires_tls = models.BooleanField(
        "requires TLS", default=True, help_text="Mutual TLS between all members."
    )
    arbiter_host = models.CharField(
        max_length=253, blank=True, validators=[rules.validate_host_address]
    )
    # the arbiter's own port (docs/failover.md, "Running one"), pushed to the primary
    arbiter_port = models.PositiveIntegerField(
        default=rules.DEFAULT_ARBITER_PORT, validators=[rules.validate_port]
    )
    vip_address = models.GenericIPAddressField("VIP address", null=True, blank=True)
    vip_mask = models.PositiveSmallIntegerField(
        "VIP mask", null=True, blank=True, help_text="CIDR bits"
    )
    vip_interface = models.CharField("VIP interface", max_length=64, blank=True)
    failover_compression = models.CharField(
        max_length=20, choices=rules.COMPRESSION_MODES, default=catalog.SYSTEM_SELECTED
    )
    failover_compression_type = models.CharField(
        max_length=8, choices=rules.COMPRESSION_TYPES, default="zlib"
    )
    async_compression = models.CharField(
        max_length=20, choices=rules.COMPRESSION_MODES, default=catalog.SYSTEM_SELECTED
    )
    async_compression_type = models.CharField(
        max_length=8, choices=rules.COMPRESSION_TYPES, default="zlib"
    )
    qos_timeout_ms = models.PositiveIntegerField(
        "QoS timeout (ms)",
        default=catalog.SETTINGS["qos_timeout_ms"],
        validators=[rules.validate_qos_timeout],
    )
    parallel_dejournaling = models.CharField(
        max_length=16,
        choices=rules.PARALLEL_DEJOURNALING,
        default=catalog.PARALLEL_FAILOVER_DR,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean_fields(self, exclude=None):
        """A setting the catalog refuses gets the catalog's reason code only (not Django's
        invalid_choice besides it); the other fields, and good settings, Django's checks."""
        exclude = set(exclude or ())
        errors = {}
        for name in SETTING_FIELDS - exclude:
            try:
                rules.check_setting(name, self._meta.get_field(name).to_python(getattr(self, name)))
            except ValidationError as exc:
                errors[name] = exc.error_list
        try:
            super().clean_fields(exclude=exclude | set(errors))
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def clean(self):
        if self.name:
            with rules.about("name"):
                self.name = rules.normalize_mirror_name(self.name)
        rules.validate_virtual_ip(self.vip_address, self.vip_mask, self.vip_interface)
        if self.pk:
            promotable = self.members.filter(member_type__in=rules.PROMOTABLE_TYPES)
            # a host is known by its address and by its name
            hosts = [
                h for pair in promotable.values_list("host__address", "host__name") for h in pair
            ]
            with rules.about("arbiter_host"):
                rules.check_arbiter_placement(self.arbiter_host, hosts)


class Host(models.Model):
    """A machine running an agent; members live on hosts, the arbiter is a host's agent."""

    name = models.CharField(max_length=64, unique=True)
    address = models.CharField(max_length=253, validators=[rules.validate_host_address])
    agent_port = models.PositiveIntegerField(
        default=rules.DEFAULT_AGENT_PORT, validators=[rules.validate_port]
    )
    tls_dn = models.CharField(
        "agent certificate DN", max_length=512, blank=True, validators=[rules.validate_x509_dn]
    )
    # Sent to the agent, so it cannot be stored hashed: stored encrypted (portal/crypto.py); the
    # API never returns it.
    credential = EncryptedCharField(max_length=256, blank=True)
    reachable = models.BooleanField(null=True, editable=False)
    rtt_ms = models.FloatField("RTT (ms)", null=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, editable=False)
    last_check_error = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["address", "agent_port"],
                name="host_unique_agent_endpoint",
                violation_error_code="unique",
                violation_error_message="Another host already uses that agent address and port.",
            )
        ]

    def __str__(self):
        return self.name


class Member(models.Model):
    PENDING = "pending"
    AUTHORIZED = "authorized"
    AUTHORIZATION = [(PENDING, "Pending"), (AUTHORIZED, "Authorized")]

    mirror = models.ForeignKey(Mirror, on_delete=models.CASCADE, related_name="members")
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="members")
    name = models.CharField(
        max_length=catalog.MAX_MEMBER_NAME,
        help_text="Stored uppercase; the same instance keeps it in every mirror.",
    )
    member_type = models.CharField(max_length=16, choices=rules.MEMBER_TYPES)
    superserver_address = models.CharField(max_length=253, validators=[rules.validate_host_address])
    superserver_port = models.PositiveIntegerField(validators=[rules.validate_port])
    mirror_private_address = models.CharField(
        max_length=253, blank=True, validators=[rules.validate_host_address]
    )
    agent_address = models.CharField(
        max_length=253, blank=True, validators=[rules.validate_host_address]
    )
    agent_port = models.PositiveIntegerField(
        default=rules.DEFAULT_AGENT_PORT, validators=[rules.validate_port]
    )
    x509_dn = models.CharField(
        "X.509 DN", max_length=512, blank=True, validators=[rules.validate_x509_dn]
    )
    authorization = models.CharField(max_length=12, choices=AUTHORIZATION, default=AUTHORIZED)
    # What the member itself last answered (guide §5.1.1.1): written by import and refresh.
    status = models.CharField(max_length=32, blank=True, editable=False)
    observed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # "No failover" (guide §3.4) as the member last answered a set or clear of it; None: never
    # asked through the portal. Its status does not report the flag, so this is the last word.
    no_failover = models.BooleanField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["mirror__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["mirror", "name"],
                name="member_unique_name",
                violation_error_code="unique",
                violation_error_message="This mirror already has a member of that name.",
            ),
        ]

    def __str__(self):
        return f"{self.mirror_id and self.mirror.name}/{self.name}"

    @property
    def is_async(self):
        return self.member_type in rules.ASYNC_TYPES

    def clean(self):
        if self.name and self.member_type:
            with rules.about("name"):
                self.name = rules.normalize_member_name(self.name, self.member_type)
        if not (self.mirror_id and self.host_id and self.member_type):
            return
        siblings = Member.objects.filter(mirror_id=self.mirror_id).exclude(pk=self.pk)
        same_instance = (
            Member.objects.filter(host_id=self.host_id, name=self.name)
            .exclude(mirror_id=self.mirror_id)
            .exclude(pk=self.pk)
        )
        rules.check_member_limits(
            mirror=self.mirror.name,
            member_type=self.member_type,
            mirror_members=siblings.values_list("member_type", flat=True),
            instance_memberships=same_instance.values_list("mirror__name", "member_type"),
        )
        if self.member_type in rules.PROMOTABLE_TYPES:
            rules.check_arbiter_placement(
                self.mirror.arbiter_host, [self.host.address, self.host.name]
            )
        rules.check_member_addresses(
            self, siblings.values_list("name", "superserver_address", "superserver_port")
        )


class PendingMemberManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(authorization=Member.PENDING)


class PendingMember(Member):
    """A member that joined a TLS mirror and waits for authorization on the primary (§4.7.3)."""

    objects = PendingMemberManager()

    class Meta:
        proxy = True
        verbose_name = "pending member"


class PendingDNUpdate(models.Model):
    """A changed X.509 DN waiting to be authorized or rejected on the primary (guide §5.4)."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    REJECTED = "rejected"
    STATES = [(PENDING, "Pending"), (AUTHORIZED, "Authorized"), (REJECTED, "Rejected")]

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="dn_updates")
    new_dn = models.CharField("new DN", max_length=512, validators=[rules.validate_x509_dn])
    # the certificate that presented it, as the primary recorded it (docs/hardening.md,
    # Membership): an operator compares these before authorizing; blank if the primary gave none
    fingerprint = models.CharField(
        "SHA-256 fingerprint", max_length=95, blank=True, default="", editable=False
    )
    issuer = models.CharField("issuer DN", max_length=512, blank=True, default="", editable=False)
    state = models.CharField(max_length=12, choices=STATES, default=PENDING)
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "pending DN update"

    def __str__(self):
        return f"{self.member}: {self.new_dn}"


class MirroredDatabase(models.Model):
    mirror = models.ForeignKey(Mirror, on_delete=models.CASCADE, related_name="databases")
    name = models.CharField(
        max_length=catalog.MAX_DATABASE_NAME,
        help_text="Mirror DB name; unique in the mirror whatever the case.",
    )
    mount_required_at_startup = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mirror__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["mirror", "name"],
                name="database_unique_name",
                violation_error_code="unique",
                violation_error_message="This mirror already has a database of that name.",
            )
        ]

    def __str__(self):
        return f"{self.mirror_id and self.mirror.name}:{self.name}"

    def clean(self):
        if self.name:
            with rules.about("name"):
                self.name = rules.normalize_database_name(self.name)


class DatabaseCopy(models.Model):
    """One member's copy of a mirrored database, with its Mirror Monitor status (guide §5.1.1.3)."""

    database = models.ForeignKey(MirroredDatabase, on_delete=models.CASCADE, related_name="copies")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="database_copies")
    status = models.CharField(
        max_length=24, choices=rules.DATABASE_STATUSES, default="Needs Activation"
    )
    # Set on DR and read-only reporting copies, cleared on read-write reporting (guide §4.10.1).
    failover_db = models.BooleanField("failover DB", default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["database__name", "member__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["database", "member"],
                name="copy_unique_per_member",
                violation_error_code="unique",
                violation_error_message="This member already has a copy of that database.",
            )
        ]
        verbose_name_plural = "database copies"

    def __str__(self):
        return f"{self.database} on {self.member.name}"

    def clean(self):
        if self.database_id and self.member_id and self.database.mirror_id != self.member.mirror_id:
            raise ValidationError(
                "A copy belongs to a member of the database's own mirror.", code="wrong_mirror"
            )


class Instance(models.Model):
    """An instance a host's agent reports (host discovery): what runs there, whether it is a
    member, and its certificate. Observations only: rewritten by every discovery."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=64)
    superserver = models.CharField(max_length=260)
    state = models.CharField(max_length=8, help_text="up, down or hung, as the agent probes it")
    role = models.CharField(max_length=8, blank=True)
    mirror_name = models.CharField(max_length=catalog.MAX_MIRROR_NAME, blank=True)
    member_name = models.CharField(max_length=catalog.MAX_MEMBER_NAME, blank=True)
    member_type = models.CharField(max_length=16, blank=True)
    certificate_dn = models.CharField(max_length=512, blank=True)
    certificate_not_after = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="instance_unique_per_host")
        ]

    def __str__(self):
        return f"{self.name} on {self.host_id and self.host.name}"


class Drift(models.Model):
    """A mirror setting whose value on the primary differs from the one the portal keeps:
    shown until it is re-applied to the primary or adopted by the portal."""

    mirror = models.ForeignKey(Mirror, on_delete=models.CASCADE, related_name="drifts")
    setting = models.CharField(max_length=40)
    desired = models.CharField(max_length=100, help_text="The portal's value.")
    observed = models.CharField(max_length=100, help_text="The primary's value.")
    detected_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mirror__name", "setting"]
        constraints = [
            models.UniqueConstraint(fields=["mirror", "setting"], name="drift_unique_setting")
        ]

    def __str__(self):
        mirror = self.mirror_id and self.mirror.name
        return f"{mirror}.{self.setting}: {self.desired} -> {self.observed}"


class Draft(models.Model):
    """A mirror being built in the wizard (members/wizard/): its steps' answers and the jobs
    they started, kept so that a person can leave halfway and carry on later, from any browser."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mirror_drafts"
    )
    title = models.CharField(max_length=catalog.MAX_MIRROR_NAME, blank=True)
    step = models.CharField(max_length=32, blank=True)
    state = models.JSONField(default=dict, help_text="The wizard's storage (django-formtools).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self):
        return f"draft {self.pk}: {self.title or 'new mirror'} at {self.step or 'the start'}"
