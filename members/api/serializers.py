"""Serializers for the mirror configuration.

They only translate JSON to Python types and back. Every rule (names, limits, placement) is
enforced by the service the view calls, through `members.rules`, so the API reports the same
codes as forms and the admin. That is why name fields are plain CharFields here: the model's
length and uniqueness checks run in `full_clean()` after the name is normalized to uppercase.
"""

from rest_framework import serializers
from rest_framework.fields import empty

from members import rules
from members.models import (
    DatabaseCopy,
    Drift,
    Host,
    Instance,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)
from members.services import MIRROR_EDITABLE
from portal.api import ChoiceField


# --- Configuration ----------------------------------------------------------------------------
class SettingChoiceField(serializers.ChoiceField):
    """A mirror setting (named as the field): a value the rule catalog refuses gets its reason
    code (e.g. invalid_compression_mode), as from the service, not invalid_choice."""

    def to_internal_value(self, data):
        if isinstance(data, str) and data not in self.choices:
            rules.check_setting(self.field_name, data)
        return super().to_internal_value(data)


class MirrorSerializer(serializers.ModelSerializer):
    serializer_choice_field = SettingChoiceField  # its choice fields are all settings
    name = serializers.CharField(
        help_text="1-15 letters or digits, stored uppercase; never changes after creation."
    )

    class Meta:
        model = Mirror
        fields = ["id", "name", *sorted(MIRROR_EDITABLE), "created_at", "updated_at"]


class HostSerializer(serializers.ModelSerializer):
    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "address",
            "agent_port",
            "tls_dn",
            "credential",
            "reachable",
            "rtt_ms",
            "last_checked_at",
            "last_check_error",
        ]
        # The credential goes to the agent; the API accepts it and never shows it again.
        extra_kwargs = {"credential": {"write_only": True}}
        validators = []  # the (address, port) constraint is checked by full_clean in the service


class MemberSerializer(serializers.ModelSerializer):
    serializer_choice_field = ChoiceField
    name = serializers.CharField(
        help_text="At most 32 characters, stored uppercase; failover and async rules differ."
    )
    mirror_name = serializers.CharField(source="mirror.name", read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = Member
        fields = [
            "id",
            "mirror",
            "mirror_name",
            "host",
            "host_name",
            "name",
            "member_type",
            "superserver_address",
            "superserver_port",
            "mirror_private_address",
            "agent_address",
            "agent_port",
            "x509_dn",
            "authorization",
            "status",
            "observed_at",
            "no_failover",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["authorization"]
        validators = []


class DNUpdateSerializer(serializers.ModelSerializer):
    member_name = serializers.CharField(source="member.name", read_only=True)
    mirror = serializers.IntegerField(source="member.mirror_id", read_only=True)

    class Meta:
        model = PendingDNUpdate
        fields = ["id", "member", "member_name", "mirror", "new_dn", "fingerprint", "issuer"]
        fields += ["state", "requested_at", "decided_at"]
        read_only_fields = ["fingerprint", "issuer", "state", "decided_at"]


class CopySummarySerializer(serializers.ModelSerializer):
    """A copy as listed inside its database: who holds it and in what state."""

    member_name = serializers.CharField(source="member.name", read_only=True)

    class Meta:
        model = DatabaseCopy
        fields = ["id", "member", "member_name", "status", "failover_db"]
        read_only_fields = fields


class DatabaseCopySerializer(CopySummarySerializer):
    class Meta:
        model = DatabaseCopy
        fields = ["id", "database", "member", "member_name", "status", "failover_db"]
        fields += ["updated_at"]
        read_only_fields = ["failover_db"]
        validators = []


class MirroredDatabaseSerializer(serializers.ModelSerializer):
    name = serializers.CharField(
        help_text="Starts with a letter or underscore; stored uppercase; never changes."
    )
    mirror_name = serializers.CharField(source="mirror.name", read_only=True)
    copies = CopySummarySerializer(many=True, read_only=True)

    class Meta:
        model = MirroredDatabase
        fields = ["id", "mirror", "mirror_name", "name", "mount_required_at_startup"]
        fields += ["created_at", "copies"]
        validators = []


# --- Operation requests: each becomes a job (members.actions) ---------------------------------
NAME = {"max_length": 64, "trim_whitespace": True}


class ImportMirrorSerializer(serializers.Serializer):
    instance = serializers.CharField(help_text="An instance on this host that is a member.", **NAME)
    mirror = serializers.CharField(
        required=False, allow_blank=True, max_length=15, help_text="For a reporting async only."
    )


class ConfirmField(serializers.CharField):
    """The mirror's name, typed again to confirm a destructive operation. Missing or blank is
    refused like a wrong name (members.actions.check_confirmed: code not_confirmed, a message
    naming the mirror), not with a bare "required"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "The mirror's name, typed to confirm (any case).")
        super().__init__(max_length=64, allow_blank=True, **kwargs)

    def validate_empty_values(self, data):
        if data is empty:
            return True, ""
        return super().validate_empty_values(data)


class SettingField(SettingChoiceField, ChoiceField):
    """A setting's choice: the catalog's reason code for a value it refuses, and the valid values
    in the message."""


class MirrorSettingsSerializer(serializers.Serializer):
    """Mirror settings (guide §4.7.2): those the engine keeps go to the primary, the arbiter and
    the VIP are the portal's. Each is checked by the same rule as everywhere (members.rules)."""

    requires_tls = serializers.BooleanField(required=False)
    qos_timeout_ms = serializers.IntegerField(
        required=False, validators=[rules.validate_qos_timeout]
    )
    failover_compression = SettingField(rules.COMPRESSION_MODES, required=False)
    failover_compression_type = SettingField(rules.COMPRESSION_TYPES, required=False)
    async_compression = SettingField(rules.COMPRESSION_MODES, required=False)
    async_compression_type = SettingField(rules.COMPRESSION_TYPES, required=False)
    parallel_dejournaling = SettingField(rules.PARALLEL_DEJOURNALING, required=False)
    arbiter_host = serializers.CharField(
        required=False, allow_blank=True, max_length=253, validators=[rules.validate_host_address]
    )
    arbiter_port = serializers.IntegerField(required=False, validators=[rules.validate_port])
    vip_address = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    vip_mask = serializers.IntegerField(required=False, allow_null=True)
    vip_interface = serializers.CharField(required=False, allow_blank=True, max_length=64)


class EditMirrorSerializer(MirrorSettingsSerializer):
    skip_verify = serializers.BooleanField(
        default=False, help_text="Turn TLS on even if a member fails Verify SSL."
    )
    confirm = ConfirmField(
        required=False,
        help_text="The mirror's name: needed only to turn TLS off (requires_tls false).",
    )


class CreateMirrorSerializer(MirrorSettingsSerializer):
    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.all())
    instance = serializers.CharField(help_text="The instance that becomes the primary.", **NAME)
    name = serializers.CharField(help_text="1-15 letters or digits, stored uppercase.")
    private = serializers.CharField(
        max_length=260, help_text="Its mirror private address, host:port."
    )

    def validate(self, attrs):
        # all or nothing: checked here as a whole for a new mirror (an edit checks the result)
        vip = (attrs.get("vip_address") or None, attrs.get("vip_mask"), attrs.get("vip_interface"))
        rules.validate_virtual_ip(*vip[:2], vip[2] or "")
        return attrs

    def validate_name(self, value):
        name = rules.normalize_mirror_name(value)
        if Mirror.objects.filter(name=name).exists():
            raise serializers.ValidationError(
                f"Mirror {name} is already registered.", code="unique"
            )
        return name


class JoinMirrorSerializer(serializers.Serializer):
    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.all())
    instance = serializers.CharField(**NAME)
    member_type = ChoiceField(rules.MEMBER_TYPES)
    private = serializers.CharField(
        required=False, allow_blank=True, max_length=260, help_text="Failover members: host:port."
    )
    member = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text="Defaults to the instance's."
    )


class MemberAddressSerializer(serializers.Serializer):
    superserver = serializers.CharField(required=False, allow_blank=True, max_length=260)
    private = serializers.CharField(required=False, allow_blank=True, max_length=260)


class SuperserverPortSerializer(serializers.Serializer):
    port = serializers.IntegerField()


class LeaveMirrorSerializer(serializers.Serializer):
    remove_db_attribute = serializers.BooleanField(default=False)


class ConfirmSerializer(serializers.Serializer):
    confirm = ConfirmField()


class PartnerSerializer(serializers.Serializer):
    partner = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=32,
        help_text="The failover member to take as partner (its host up, its instance down); "
        "omitted, blank or null: no partner.",
    )


class PromoteToPrimarySerializer(ConfirmSerializer, PartnerSerializer):
    pass


class RemoveMirrorSerializer(ConfirmSerializer):
    remove_db_attribute = serializers.BooleanField(default=False)
    remove_tls = serializers.BooleanField(default=False)


class CreateDatabaseSerializer(serializers.Serializer):
    mirror = serializers.PrimaryKeyRelatedField(queryset=Mirror.objects.all())
    name = serializers.CharField(max_length=64)
    how = ChoiceField([("create", "create"), ("add", "add")], default="create")
    members = serializers.ListField(
        child=serializers.CharField(max_length=32),
        max_length=16,
        required=False,
        help_text="Members to hold a copy; every other member by default.",
    )


class DatabaseNamesSerializer(serializers.Serializer):
    databases = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=200, required=False
    )


class MountSerializer(serializers.Serializer):
    catchup = serializers.BooleanField(default=False)


class InstanceSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = Instance
        fields = ["id", "host", "host_name", "name", "superserver", "state", "role"]
        fields += ["mirror_name", "member_name", "member_type", "certificate_dn"]
        fields += ["certificate_not_after", "seen_at"]
        read_only_fields = fields


class DriftSerializer(serializers.ModelSerializer):
    mirror_name = serializers.CharField(source="mirror.name", read_only=True)

    class Meta:
        model = Drift
        fields = ["id", "mirror", "mirror_name", "setting", "desired", "observed", "detected_at"]
        read_only_fields = fields


class InstanceTLSSerializer(serializers.Serializer):
    cert = serializers.CharField(max_length=1024, help_text="Absolute path on the host.")
    key = serializers.CharField(max_length=1024)
    ca = serializers.CharField(max_length=1024)


class DatabaseNameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)


# --- Application credentials of a member's instance (docs/hardening.md) ----------------------
class AppCredentialNameSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=64,
        help_text="The application's credential: 1-64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit (kept as typed).",
    )


class RevokeAppCredentialSerializer(ConfirmSerializer):
    name = serializers.CharField(max_length=64, help_text="The credential to revoke.")


class RevealAppCredentialSerializer(serializers.Serializer):
    job = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="The create_app_credential job, finished."
    )


class AppCredentialSerializer(serializers.Serializer):
    name = serializers.CharField()
    created = serializers.CharField(allow_null=True, help_text="As the instance recorded it.")


class AppCredentialListSerializer(serializers.Serializer):
    member = serializers.IntegerField()
    instance = serializers.CharField(allow_null=True)
    host = serializers.CharField(allow_null=True)
    credentials = AppCredentialSerializer(
        many=True, allow_null=True, help_text="Names only, never secrets; null: not read yet."
    )
    auth = serializers.CharField(
        allow_null=True, help_text="Whether the instance requires authentication: required, off."
    )
    mode = serializers.CharField(allow_null=True, help_text="Its setting: auto, required, off.")
    job = serializers.IntegerField(allow_null=True, help_text="The job that read them.")
    read_at = serializers.DateTimeField(allow_null=True)


class AppCredentialSecretSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    member = serializers.CharField(allow_null=True)
    instance = serializers.CharField(allow_null=True)
    host = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    secret = serializers.CharField(help_text="Shown this once: the portal keeps no copy after.")
