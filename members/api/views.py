"""REST endpoints for mirrors, their members and databases.

Reads are declarative viewsets: a queryset that loads related rows up front (so a list costs the
same number of queries whatever its length), a serializer and a filterset. A mirror's rows are
what its members last answered, so they are never written here: every change is an operation
that checks the request (members.actions) and answers 202 with the job that does it on the
members. Only the portal's own records (hosts, a database's startup flag) are edited directly.
Operators run operations; admins change configuration and decide on members. Destructive calls
carry `confirm`, the mirror's name; without it they are a 400 `not_confirmed` and nothing starts.
"""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from accounts.permissions import MirrorScoped, check_body_mirror
from accounts.roles import ADMIN, OPERATOR, VIEWER, scope
from members import actions, services
from members.access import check_whole_instance
from members.api import filters
from members.api import serializers as s
from members.api.failover import FAILOVER_ROLES, FailoverActions
from members.api.job_actions import ACCEPTED, accepted, body, operation
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
from members.operations import app_credentials
from portal.api import changed_fields
from tasks.models import Job


# --- Hosts and what runs on them --------------------------------------------------------------
class HostViewSet(viewsets.ModelViewSet):
    queryset = Host.objects.all()
    serializer_class = s.HostSerializer
    filterset_class = filters.HostFilter
    ordering_fields = ["name", "address", "last_checked_at"]
    action_roles = {"check": OPERATOR, "import_mirror": ADMIN}

    def perform_create(self, serializer):
        serializer.instance = services.register_host(self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.update_host(
            self.request.user, serializer.instance, **changed_fields(serializer)
        )

    def perform_destroy(self, instance):
        services.delete_host(self.request.user, instance)

    @operation()
    def check(self, request, pk=None):
        """Check and discover: is the agent reachable, how far, and which instances run there."""
        return accepted(actions.check_host(request.user, self.get_object()))

    @operation(s.ImportMirrorSerializer, url_path="import")
    def import_mirror(self, request, pk=None):
        """Register the mirror one of this host's instances belongs to, as its members report it."""
        return accepted(
            actions.import_mirror(
                request.user, self.get_object(), **body(request, s.ImportMirrorSerializer)
            )
        )


class InstanceViewSet(viewsets.ReadOnlyModelViewSet):
    """Instances the hosts' agents reported at their last check."""

    queryset = Instance.objects.select_related("host")
    serializer_class = s.InstanceSerializer
    filterset_class = filters.InstanceFilter
    ordering_fields = ["name", "seen_at"]

    @operation(s.InstanceTLSSerializer)
    def tls(self, request, pk=None):
        """Give the instance its certificate, key and CA (files on its host) for mutual TLS."""
        fields = body(request, s.InstanceTLSSerializer)
        return accepted(actions.set_instance_tls(request.user, self.get_object(), **fields))


# --- Mirrors ----------------------------------------------------------------------------------
class MirrorViewSet(
    MirrorScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = Mirror.objects.all()
    mirror_field = "pk"
    portal_wide_actions = {"create"}  # a new mirror is no mirror's business yet
    serializer_class = s.MirrorSerializer
    filterset_class = filters.MirrorFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    action_roles = {"refresh": OPERATOR, "review": OPERATOR, "create_database": OPERATOR}

    @extend_schema(request=s.CreateMirrorSerializer, responses=ACCEPTED)
    def create(self, request):
        """Create a mirror on an instance, which becomes its first failover member (primary)."""
        return accepted(
            actions.create_mirror(request.user, **body(request, s.CreateMirrorSerializer))
        )

    @operation()
    def refresh(self, request, pk=None):
        """Read every member and record what changed (and any drift of settings)."""
        return accepted(actions.refresh_mirror(request.user, self.get_object()))

    @operation()
    def review(self, request, pk=None):
        """Ask every member how it stands (status, journal transfer, dejournaling, copies): the
        review after creation (guide §4.7.4); the job's result holds the answers."""
        return accepted(actions.review_mirror(request.user, self.get_object()))

    @operation(s.EditMirrorSerializer, url_path="settings")
    def edit_settings(self, request, pk=None):
        """Change settings: the engine's on the primary (turning TLS on runs Verify SSL first;
        turning it off needs confirm, the mirror's name)."""
        return accepted(
            actions.edit_mirror(
                request.user, self.get_object(), **body(request, s.EditMirrorSerializer)
            )
        )

    @operation(url_path="adopt-settings")
    def adopt_settings(self, request, pk=None):
        """Settle drift by taking the primary's settings as the portal's."""
        return accepted(actions.adopt_settings(request.user, self.get_object()))

    @operation(url_path="reapply-settings")
    def reapply_settings(self, request, pk=None):
        """Settle drift by writing the portal's settings to the primary again."""
        return accepted(actions.reapply_settings(request.user, self.get_object()))

    @operation(s.JoinMirrorSerializer)
    def join(self, request, pk=None):
        """An instance joins as a failover member or an async (DR, reporting)."""
        return accepted(
            actions.join_mirror(
                request.user, self.get_object(), **body(request, s.JoinMirrorSerializer)
            )
        )

    @operation(s.RemoveMirrorSerializer)
    def remove(self, request, pk=None):
        """Remove the mirror from every member (the primary last, in two steps)."""
        return accepted(
            actions.remove_mirror(
                request.user, self.get_object(), **body(request, s.RemoveMirrorSerializer)
            )
        )

    @operation(s.ConfirmSerializer, responses={204: None})
    def forget(self, request, pk=None):
        """Unregister the mirror from the portal only; its members are not told."""
        actions.forget_mirror(request.user, self.get_object(), **body(request, s.ConfirmSerializer))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DriftViewSet(MirrorScoped, viewsets.ReadOnlyModelViewSet):
    """Settings whose value on the primary differs from the portal's."""

    queryset = Drift.objects.select_related("mirror")
    serializer_class = s.DriftSerializer
    filterset_fields = ["mirror", "setting"]
    ordering_fields = ["detected_at"]


# --- Members ----------------------------------------------------------------------------------
class MemberViewSet(MirrorScoped, FailoverActions, viewsets.ReadOnlyModelViewSet):
    """A member's row as it last answered, and the operations on it (the failover ones are
    members/api/failover.py's)."""

    queryset = Member.objects.select_related("mirror", "host")
    serializer_class = s.MemberSerializer
    filterset_class = filters.MemberFilter
    ordering_fields = ["name", "mirror__name", "member_type", "created_at"]
    action_roles = {
        name: OPERATOR
        for name in (
            "stop_mirroring",
            "start_mirroring",
            "stop_dejournaling",
            "start_dejournaling",
            "catchup",
            "clear_failover_db",
            "add_database",
            "create_app_credential",
            "read_app_credentials",
            "revoke_app_credential",
            "reveal_app_credential",
        )
    } | FAILOVER_ROLES

    @operation(s.MemberAddressSerializer)
    def addresses(self, request, pk=None):
        """New superserver or private address, recorded on the primary."""
        return accepted(
            actions.update_member_address(
                request.user, self.get_object(), **body(request, s.MemberAddressSerializer)
            )
        )

    @operation(s.SuperserverPortSerializer, url_path="superserver-port")
    def superserver_port(self, request, pk=None):
        """The member's instance moves to another superserver port (it restarts there)."""
        port = body(request, s.SuperserverPortSerializer)["port"]
        return accepted(actions.set_superserver_port(request.user, self.get_object(), port))

    @operation(s.ConfirmSerializer)
    def remove(self, request, pk=None):
        """The primary removes this member from the mirror (confirm: the mirror's name)."""
        return accepted(
            actions.remove_member(
                request.user, self.get_object(), **body(request, s.ConfirmSerializer)
            )
        )

    @operation(s.LeaveMirrorSerializer)
    def leave(self, request, pk=None):
        """The member leaves the mirror itself."""
        return accepted(
            actions.leave_mirror(
                request.user, self.get_object(), **body(request, s.LeaveMirrorSerializer)
            )
        )

    def _switch(self, kind):
        return accepted(actions.switch_member(self.request.user, self.get_object(), kind))

    @operation(url_path="stop-mirroring")
    def stop_mirroring(self, request, pk=None):
        return self._switch("stop_mirroring")

    @operation(url_path="start-mirroring")
    def start_mirroring(self, request, pk=None):
        return self._switch("start_mirroring")

    @operation(url_path="stop-dejournaling")
    def stop_dejournaling(self, request, pk=None):
        return self._switch("stop_dejournaling")

    @operation(url_path="start-dejournaling")
    def start_dejournaling(self, request, pk=None):
        return self._switch("start_dejournaling")

    @operation(s.DatabaseNamesSerializer)
    def catchup(self, request, pk=None):
        """Catch up several of the member's databases at once."""
        names = body(request, s.DatabaseNamesSerializer).get("databases") or []
        return accepted(actions.catchup_databases(request.user, self.get_object(), names))

    @operation(s.DatabaseNameSerializer, url_path="add-database")
    def add_database(self, request, pk=None):
        """Add an existing database on this member (restored from the primary's files)."""
        name = body(request, s.DatabaseNameSerializer)["name"]
        return accepted(actions.add_database_copy(request.user, self.get_object(), name))

    @operation(s.DatabaseNamesSerializer, url_path="clear-failover-db")
    def clear_failover_db(self, request, pk=None):
        """Clear the FailoverDB flag of the named databases, or of all of them."""
        names = body(request, s.DatabaseNamesSerializer).get("databases")
        return accepted(actions.clear_failover_db(request.user, self.get_object(), names))

    # application credentials of the member's instance (docs/hardening.md)
    @extend_schema(responses=s.AppCredentialListSerializer)
    @action(detail=True, methods=["get"], url_path="app-credentials")
    def app_credentials(self, request, pk=None):
        """The application credentials of the member's instance as it last answered: names and
        creation times, never secrets (POST app-credentials/read/ reads them again)."""
        member = self.get_object()
        check_whole_instance(request.user, member, VIEWER)
        recorded = app_credentials.recorded(member)
        return Response(s.AppCredentialListSerializer(recorded).data)

    @extend_schema(request=s.AppCredentialNameSerializer, responses=ACCEPTED)
    @app_credentials.mapping.post
    def create_app_credential(self, request, pk=None):
        """A credential for one application on the member's instance. Once the job succeeds,
        its secret is shown once, to the caller alone: POST app-credentials/reveal/."""
        name = body(request, s.AppCredentialNameSerializer)["name"]
        return accepted(actions.create_app_credential(request.user, self.get_object(), name))

    @operation(url_path="app-credentials/read")
    def read_app_credentials(self, request, pk=None):
        """Read the credentials the member's instance holds (the job's result lists them)."""
        return accepted(actions.list_app_credentials(request.user, self.get_object()))

    @operation(s.RevokeAppCredentialSerializer, url_path="app-credentials/revoke")
    def revoke_app_credential(self, request, pk=None):
        """Revoke a credential (confirm: the mirror's name): the application is refused from
        then on and its open connections are closed."""
        fields = body(request, s.RevokeAppCredentialSerializer)
        return accepted(actions.revoke_app_credential(request.user, self.get_object(), **fields))

    @operation(
        s.RevealAppCredentialSerializer,
        url_path="app-credentials/reveal",
        responses={200: s.AppCredentialSecretSerializer},
    )
    def reveal_app_credential(self, request, pk=None):
        """The secret of a credential the caller created (its create_app_credential job), once:
        the portal erases its sealed copy as it answers. Later: 409 secret_gone."""
        member = self.get_object()
        number = body(request, s.RevealAppCredentialSerializer)["job"]
        job = get_object_or_404(Job, pk=number, member=member, kind=app_credentials.CREATE)
        answer = actions.reveal_app_credential(request.user, job)
        return Response(
            s.AppCredentialSecretSerializer(answer).data, headers={"Cache-Control": "no-store"}
        )


class PendingMemberViewSet(MirrorScoped, viewsets.ReadOnlyModelViewSet):
    """Members that joined a TLS mirror and wait for an admin to authorize or reject them."""

    queryset = Member.objects.filter(authorization=Member.PENDING).select_related("mirror", "host")
    serializer_class = s.MemberSerializer
    filterset_class = filters.PendingMemberFilter
    ordering_fields = ["name", "mirror__name", "created_at"]

    def _decision_target(self) -> Member:
        # Any member, not only pending ones: a decision made already is a 409 from the action,
        # not a 404 (the member exists). A rejected member is removed, so it is a 404.
        members = scope(Member.objects.select_related("mirror", "host"), self.request.user)
        member = get_object_or_404(members, pk=self.kwargs["pk"])
        self.check_object_permissions(self.request, member)
        return member

    @operation()
    def authorize(self, request, pk=None):
        """Authorize the member on the primary, by the DN it presented; waits until it connects."""
        return accepted(actions.authorize_member(request.user, self._decision_target()))

    @operation(s.ConfirmSerializer)
    def reject(self, request, pk=None):
        """Reject the member on the primary (confirm: the mirror's name)."""
        confirm = body(request, s.ConfirmSerializer)
        return accepted(actions.reject_member(request.user, self._decision_target(), **confirm))


class DNUpdateViewSet(MirrorScoped, viewsets.ReadOnlyModelViewSet):
    """Changed X.509 DNs the members presented (read from the primary); an admin decides each."""

    mirror_field = "member__mirror"

    queryset = PendingDNUpdate.objects.select_related("member")
    serializer_class = s.DNUpdateSerializer
    filterset_class = filters.DNUpdateFilter
    ordering_fields = ["requested_at", "decided_at"]

    @operation()
    def authorize(self, request, pk=None):
        return accepted(actions.decide_dn_update(request.user, self.get_object(), authorize=True))

    @operation()
    def reject(self, request, pk=None):
        return accepted(actions.decide_dn_update(request.user, self.get_object(), authorize=False))


# --- Databases --------------------------------------------------------------------------------
class MirroredDatabaseViewSet(
    MirrorScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = MirroredDatabase.objects.select_related("mirror").prefetch_related(
        # Only what the nested summary shows: a list of 50 databases carries ~100 copies.
        Prefetch(
            "copies",
            queryset=DatabaseCopy.objects.select_related("member").only(
                "database", "member__name", "status", "failover_db"
            ),
        )
    )
    serializer_class = s.MirroredDatabaseSerializer
    filterset_class = filters.MirroredDatabaseFilter
    ordering_fields = ["name", "mirror__name", "created_at"]
    action_roles = {"create": OPERATOR}

    @extend_schema(request=s.CreateDatabaseSerializer, responses=ACCEPTED)
    def create(self, request):
        """A database in the mirror: created, or an existing one of the primary's added; each
        other member gets its copy (from the journal, or downloaded)."""
        fields = body(request, s.CreateDatabaseSerializer)
        mirror = fields.pop("mirror")
        check_body_mirror(request.user, mirror, OPERATOR)
        return accepted(actions.create_database(request.user, mirror, **fields))

    def perform_update(self, serializer):
        serializer.instance = services.update_mirrored_database(
            self.request.user, serializer.instance, **changed_fields(serializer)
        )


class DatabaseCopyViewSet(MirrorScoped, viewsets.ReadOnlyModelViewSet):
    """Each member's copy of a mirrored database, its status, and the operations on it."""

    mirror_field = "member__mirror"

    queryset = DatabaseCopy.objects.select_related("database", "member")
    serializer_class = s.DatabaseCopySerializer
    filterset_class = filters.DatabaseCopyFilter
    ordering_fields = ["status", "updated_at"]
    action_roles = {
        name: OPERATOR
        for name in ("download", "activate", "mount", "dismount", "remove", "pause", "resume")
    }

    def _run(self, operation, **params):
        copy = self.get_object()
        return accepted(actions.copy_operation(self.request.user, copy, operation, **params))

    @operation()
    def download(self, request, pk=None):
        """Download the database from another member; the job shows bytes received."""
        return self._run("download")

    @operation()
    def activate(self, request, pk=None):
        return self._run("activate")

    @operation(s.MountSerializer)
    def mount(self, request, pk=None):
        return self._run("mount", **body(request, s.MountSerializer))

    @operation()
    def dismount(self, request, pk=None):
        return self._run("dismount")

    @operation(s.ConfirmSerializer)
    def remove(self, request, pk=None):
        """The member stops holding the database (it stays in the mirror); confirm: the
        mirror's name."""
        return self._run("remove", **body(request, s.ConfirmSerializer))

    @operation()
    def pause(self, request, pk=None):
        """Pause dejournaling of this database on the member."""
        return self._run("pause")

    @operation()
    def resume(self, request, pk=None):
        return self._run("resume")
