from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.models import ApiToken, AuditEvent, MirrorRole
from accounts.roles import ADMIN, PORTAL_ROLES, ROLES

User = get_user_model()


class AuditEventSerializer(serializers.ModelSerializer):
    before = serializers.JSONField(read_only=True, allow_null=True)
    after = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "actor_name", "action", "object_type", "object_id"]
        fields += ["object_repr", "before", "after"]
        read_only_fields = fields


class TokenSerializer(serializers.ModelSerializer):
    # Blank names reach the service, which answers with its own "required" code.
    name = serializers.CharField(allow_blank=True, max_length=1000)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "hint", "is_active", "created_at", "last_used_at", "revoked_at"]


class NewTokenSerializer(TokenSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Shown once, in this response only; the portal keeps a hash."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "secret"]


class RoleField(serializers.ChoiceField):
    """A user's portal-wide role: read from their groups (null: none), written as one of viewer /
    operator / admin, or "none" for someone who sees only the mirrors they hold a role on."""

    def __init__(self, **kwargs):
        super().__init__(choices=PORTAL_ROLES, source="*", **kwargs)

    def to_representation(self, user):
        if user.is_superuser:
            return ADMIN
        held = {group.name for group in user.groups.all()}  # prefetched by the viewset
        return next((role for role in reversed(ROLES) if role in held), None)

    def to_internal_value(self, data):
        return {"role": super().to_internal_value(data)}


class UserSerializer(serializers.ModelSerializer):
    role = RoleField(allow_null=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        style={"input_type": "password"},
        help_text="Only when creating; leave out for a user who logs in with tokens only.",
    )

    class Meta:
        model = User
        fields = ["id", "username", "email", "role", "is_active", "is_superuser", "password"]
        fields += ["date_joined", "last_login"]
        read_only_fields = ["is_superuser", "date_joined", "last_login"]
        extra_kwargs = {"username": {"validators": []}}  # uniqueness: case-insensitive, in service

    def validate_password(self, value):
        if value:
            try:
                validate_password(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(
                    [serializers.ErrorDetail(m, code=e.code) for e in exc.error_list for m in e]
                ) from None
        return value


class MirrorRoleSerializer(serializers.ModelSerializer):
    """A role on one mirror. Creating one for a user who holds a role on that mirror already
    changes it; the user is named by their user name."""

    user = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all())
    username = serializers.CharField(source="user.username", read_only=True)
    mirror_name = serializers.CharField(source="mirror.name", read_only=True)
    role = serializers.ChoiceField(choices=ROLES)

    class Meta:
        model = MirrorRole
        fields = ["id", "user", "username", "mirror", "mirror_name", "role", "granted_at"]
        read_only_fields = ["granted_at"]
        validators = []  # one role per user and mirror: the service changes the one held


class MirrorRoleChangeSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLES)
