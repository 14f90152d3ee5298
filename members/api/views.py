"""REST endpoints for the mirror configuration.

Viewsets are declarative: a queryset that loads related rows up front (so a list costs the same
number of queries whatever its length), a serializer and a filterset; parser, pagination and the
error responses in the schema come from portal.api. Every change calls one service function with
the caller as the actor; the service validates, saves and audits.
"""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from accounts.roles import OPERATOR
from members import services
from members.api import filters
from members.api.serializers import (
    DatabaseCopySerializer,
    DNUpdateSerializer,
    HostSerializer,
    MemberSerializer,
    MirroredDatabaseSerializer,
    MirrorSerializer,
)
from members.models import DatabaseCopy, Host, Member, Mirror, MirroredDatabase, PendingDNUpdate
from portal.api import changed_fields
from tasks.api.serializers import JobSerializer
from tasks.services import start_job


class MirrorViewSet(viewsets.ModelViewSet):
    queryset = Mirror.objects.all()
    serializer_class = MirrorSerializer
    filterset_class = filters.MirrorFilter
    ordering_fields = ["name", "created_at", "updated_at"]

    def perform_create(self, serializer):
        serializer.instance = services.create_mirror(self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.update_mirror(
            self.request.user, serializer.instance, **changed_fields(serializer)
        )

    def perform_destroy(self, instance):
        services.delete_mirror(self.request.user, instance)


class HostViewSet(viewsets.ModelViewSet):
    queryset = Host.objects.all()
    serializer_class = HostSerializer
    filterset_class = filters.HostFilter
    ordering_fields = ["name", "address", "last_checked_at"]
    action_roles = {"check": OPERATOR}

    def perform_create(self, serializer):
        serializer.instance = services.register_host(self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.update_host(
            self.request.user, serializer.instance, **changed_fields(serializer)
        )

    def perform_destroy(self, instance):
        services.delete_host(self.request.user, instance)

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        """Start a "check host" job: is the agent reachable, and how far away is it?"""
        job = start_job(request.user, "check_host", self.get_object())
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class MemberViewSet(viewsets.ModelViewSet):
    queryset = Member.objects.select_related("mirror", "host")
    serializer_class = MemberSerializer
    filterset_class = filters.MemberFilter
    ordering_fields = ["name", "mirror__name", "member_type", "created_at"]

    def perform_create(self, serializer):
        fields = dict(serializer.validated_data)
        mirror = fields.pop("mirror")
        serializer.instance = services.add_member(self.request.user, mirror, **fields)

    def perform_update(self, serializer):
        serializer.instance = services.update_member(
            self.request.user, serializer.instance, **changed_fields(serializer)
        )

    def perform_destroy(self, instance):
        services.remove_member(self.request.user, instance)


class PendingMemberViewSet(viewsets.ReadOnlyModelViewSet):
    """Members that joined a TLS mirror and wait for an admin to authorize or reject them."""

    queryset = Member.objects.filter(authorization=Member.PENDING).select_related("mirror", "host")
    serializer_class = MemberSerializer
    filterset_class = filters.PendingMemberFilter
    ordering_fields = ["name", "mirror__name", "created_at"]

    def _decision_target(self) -> Member:
        # Any member, not only pending ones: a decision made already is a 409 from the service,
        # not a 404 (the member exists).  A rejected member is removed, so it is a 404.
        member = get_object_or_404(
            Member.objects.select_related("mirror", "host"), pk=self.kwargs["pk"]
        )
        self.check_object_permissions(self.request, member)
        return member

    @extend_schema(request=None, responses={200: MemberSerializer})
    @action(detail=True, methods=["post"])
    def authorize(self, request, pk=None):
        member = services.authorize_member(request.user, self._decision_target())
        return Response(MemberSerializer(member).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        services.reject_member(request.user, self._decision_target())
        return Response(status=status.HTTP_204_NO_CONTENT)


class DNUpdateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Requests to change a member's X.509 DN; an admin authorizes or rejects each."""

    queryset = PendingDNUpdate.objects.select_related("member")
    serializer_class = DNUpdateSerializer
    filterset_class = filters.DNUpdateFilter
    ordering_fields = ["requested_at", "decided_at"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.request_dn_update(
            self.request.user, data["member"], data["new_dn"]
        )

    def _decide(self, authorize: bool):
        update = services.decide_dn_update(
            self.request.user, self.get_object(), authorize=authorize
        )
        return Response(DNUpdateSerializer(update).data)

    @extend_schema(request=None, responses={200: DNUpdateSerializer})
    @action(detail=True, methods=["post"])
    def authorize(self, request, pk=None):
        return self._decide(authorize=True)

    @extend_schema(request=None, responses={200: DNUpdateSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(authorize=False)


class MirroredDatabaseViewSet(viewsets.ModelViewSet):
    queryset = MirroredDatabase.objects.select_related("mirror").prefetch_related(
        # Only what the nested summary shows: a list of 50 databases carries ~100 copies.
        Prefetch(
            "copies",
            queryset=DatabaseCopy.objects.select_related("member").only(
                "database", "member__name", "status", "failover_db"
            ),
        )
    )
    serializer_class = MirroredDatabaseSerializer
    filterset_class = filters.MirroredDatabaseFilter
    ordering_fields = ["name", "mirror__name", "created_at"]

    def perform_create(self, serializer):
        fields = dict(serializer.validated_data)
        mirror = fields.pop("mirror")
        serializer.instance = services.create_mirrored_database(self.request.user, mirror, **fields)

    def perform_update(self, serializer):
        serializer.instance = services.update_mirrored_database(
            self.request.user, serializer.instance, **changed_fields(serializer)
        )

    def perform_destroy(self, instance):
        services.remove_mirrored_database(self.request.user, instance)


class DatabaseCopyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Each member's copy of a mirrored database and its status."""

    queryset = DatabaseCopy.objects.select_related("database", "member")
    serializer_class = DatabaseCopySerializer
    filterset_class = filters.DatabaseCopyFilter
    ordering_fields = ["status", "updated_at"]

    def perform_create(self, serializer):
        serializer.instance = services.add_database_copy(
            self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.remove_database_copy(self.request.user, instance)
