"""Users (admins only), roles on single mirrors (each mirror's admins), the caller's own API
tokens, and the audit trail."""

import django_filters
from django.contrib.auth import get_user_model
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import services
from accounts.api.serializers import (
    AuditEventSerializer,
    MirrorRoleChangeSerializer,
    MirrorRoleSerializer,
    NewTokenSerializer,
    TokenSerializer,
    UserSerializer,
)
from accounts.models import ApiToken, AuditEvent, MirrorRole
from accounts.permissions import MirrorScoped, check_body_mirror
from accounts.roles import ADMIN, NO_ROLE, ROLES, VIEWER
from members.api.filters import DateTimeFilter
from members.rules import field_error
from portal.api import changed_fields
from portal.filters import FilterSet

User = get_user_model()


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how scripts authenticate."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer"
        )


# --- Audit trail ------------------------------------------------------------------------------
class AuditEventFilter(FilterSet):
    since = DateTimeFilter(field_name="at", lookup_expr="gte")
    until = DateTimeFilter(field_name="at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = ["actor", "actor_name", "action", "object_type", "object_id"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["at", "action", "object_type"]


# --- API tokens -------------------------------------------------------------------------------
class TokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's own tokens. Any role may manage them; nobody sees anyone else's."""

    serializer_class = TokenSerializer
    required_role = VIEWER
    any_mirror = True  # a role on one mirror is enough to script it
    ordering_fields = ["created_at", "name"]

    def get_queryset(self):
        return ApiToken.objects.filter(user_id=self.request.user.pk)

    @extend_schema(responses={201: NewTokenSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, secret = services.create_token(request.user, name=serializer.validated_data["name"])
        token.secret = secret
        return Response(NewTokenSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        """Deleting a token revokes it; the row stays so the audit trail can name it."""
        services.revoke_token(self.request.user, instance)

    @extend_schema(request=None, responses={200: TokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = services.revoke_token(request.user, self.get_object())
        return Response(TokenSerializer(token).data)


# --- Users ------------------------------------------------------------------------------------
class UserFilter(FilterSet):
    role = django_filters.ChoiceFilter(
        choices=[(r, r) for r in ROLES], field_name="groups__name", distinct=True
    )

    class Meta:
        model = User
        fields = ["username", "is_active"]


USER_EDITABLE = {"role", "is_active", "email"}


class UserViewSet(viewsets.ModelViewSet):
    """Admins only, reads included: the list shows who holds which role."""

    queryset = User.objects.prefetch_related("groups").order_by("username")
    serializer_class = UserSerializer
    filterset_class = UserFilter
    required_role = ADMIN
    ordering_fields = ["username", "date_joined", "last_login"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.create_user(
            self.request.user,
            username=data["username"],
            password=data.get("password") or None,
            role=data["role"],
            email=data.get("email", ""),
        )

    def perform_update(self, serializer):
        changes = changed_fields(serializer)
        refused = sorted(set(changes) - USER_EDITABLE)
        if refused:
            raise field_error(
                refused[0], "Only role, active flag and email change here.", "immutable"
            )
        serializer.instance = services.update_user(
            self.request.user, serializer.instance, **changes
        )

    def perform_destroy(self, instance):
        services.delete_user(self.request.user, instance)


class MirrorRoleFilter(FilterSet):
    username = django_filters.CharFilter(field_name="user__username", lookup_expr="iexact")
    mirror_name = django_filters.CharFilter(field_name="mirror__name", lookup_expr="iexact")

    class Meta:
        model = MirrorRole
        fields = ["mirror", "user", "role"]


class MirrorRoleViewSet(
    MirrorScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Who holds which role on single mirrors (docs/access.md). A mirror's admins (portal-wide
    or of that mirror) read and change its list; a role on a mirror adds to the portal-wide
    one and never lowers it."""

    queryset = MirrorRole.objects.select_related("user", "mirror")
    serializer_class = MirrorRoleSerializer
    filterset_class = MirrorRoleFilter
    required_role = ADMIN
    list_role = ADMIN  # only the lists of mirrors the caller administers, not merely sees
    ordering_fields = ["granted_at", "role"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        mirror = data["mirror"]
        # this endpoint lists the roles of the mirrors one administers: any other is not found
        check_body_mirror(self.request.user, mirror, ADMIN, seen_with=ADMIN)
        serializer.instance = services.set_mirror_role(
            self.request.user, data["user"], mirror, data["role"]
        )

    @extend_schema(request=MirrorRoleChangeSerializer, responses={200: MirrorRoleSerializer})
    def partial_update(self, request, pk=None):
        """Change the role (the only thing that changes)."""
        held = self.get_object()
        change = MirrorRoleChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        held = services.set_mirror_role(
            request.user, held.user, held.mirror, change.validated_data["role"]
        )
        return Response(MirrorRoleSerializer(held).data)

    def perform_destroy(self, instance):
        services.set_mirror_role(self.request.user, instance.user, instance.mirror, NO_ROLE)
