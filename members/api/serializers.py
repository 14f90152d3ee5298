"""Serializers for the mirror configuration.

They only translate JSON to Python types and back. Every rule (names, limits, placement) is
enforced by the service the view calls, through `members.rules`, so the API reports the same
codes as forms and the admin. That is why name fields are plain CharFields here: the model's
length and uniqueness checks run in `full_clean()` after the name is normalized to uppercase.
"""

from rest_framework import serializers

from members import rules
from members.models import (
    DatabaseCopy,
    Host,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)
from members.services import MIRROR_EDITABLE


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
        fields = ["id", "member", "member_name", "mirror", "new_dn", "state"]
        fields += ["requested_at", "decided_at"]
        read_only_fields = ["state", "decided_at"]


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
