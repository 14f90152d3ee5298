"""The live monitor over REST, read-only, for viewers (docs/monitor-api.md): a mirror's Mirror
Monitor (guide §5.1.1) as the collector last stored it, the last hour's lag and rate samples in
columns for the charts, and the history of events.

A mirror is named in the URL by its name (any case) or by its id, so the same `/mirrors/{id}/`
prefix as the members API works with either. The routes sit beside the members router's
`/mirrors/{id}/<action>/` routes: its actions are fixed names and none is `status` or
`samples`, so neither URL is taken by the other.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import MirrorScoped
from accounts.roles import scope
from engine import rules as catalog
from members.models import Member, Mirror
from monitor.api.filters import EventFilter, SamplesQuery
from monitor.api.serializers import AlertSerializer, EventSerializer, mirror_status
from monitor.models import Event, Sample

# Digits longer than this are no database id (and would only cost a query).
_MAX_ID_DIGITS = 18

MIRROR_PARAMETER = OpenApiParameter(
    "id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description=(
        "The mirror's name (any case) or its id. A mirror whose name is all digits is found by "
        "its name before another mirror is found by that id."
    ),
)


def get_mirror(key: str, user) -> Mirror:
    """The mirror named `key` (names are stored uppercase) or, failing that, of id `key`, among
    those the user sees (any other is not found, docs/access.md)."""
    key = str(key)
    mirror = None
    mirrors = scope(Mirror.objects, user, "pk")
    if len(key) <= catalog.MAX_MIRROR_NAME:
        mirror = mirrors.filter(name=key.upper()).first()
    if mirror is None and key.isascii() and key.isdigit() and len(key) <= _MAX_ID_DIGITS:
        mirror = mirrors.filter(pk=int(key)).first()
    if mirror is None:
        raise NotFound(f"No mirror named {key[:40]!r}.")
    return mirror


# --- The shapes, for the OpenAPI schema (mirror_status() builds the data itself) ---------------
class LiveHealthSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=["ok", "warn", "bad", "unknown"])
    text = serializers.CharField()


class LiveArbiterSerializer(serializers.Serializer):
    address = serializers.CharField(help_text='"host|port", empty without an arbiter.')
    connection = serializers.CharField(
        allow_null=True, help_text="The primary's arbiter connection, as it reports it."
    )


class LiveFailoverMemberSerializer(serializers.Serializer):
    name = serializers.CharField()
    superserver = serializers.CharField(help_text='"address|port"')
    private = serializers.CharField(help_text="The mirror private address.")


class LiveMemberSerializer(serializers.Serializer):
    name = serializers.CharField()
    member_type = serializers.CharField(help_text="failover, dr, ro_reporting or rw_reporting.")
    type = serializers.CharField(help_text="As the Mirror Monitor shows it.")
    status = serializers.CharField(
        help_text="Live status from the collector, else the status at the last refresh."
    )
    journal_transfer = serializers.CharField()
    dejournaling = serializers.CharField()
    transfer_lag_s = serializers.FloatField(allow_null=True)
    dejournal_lag_s = serializers.FloatField(allow_null=True)
    agent_reachable = serializers.BooleanField(
        allow_null=True, help_text="null: the collector has not seen this member yet."
    )
    x509_dn = serializers.CharField()
    authorization = serializers.CharField()
    superserver = serializers.CharField(help_text='"address|port"')
    mirror_private_address = serializers.CharField()
    seen_at = serializers.DateTimeField(allow_null=True)
    changed_at = serializers.DateTimeField(allow_null=True)
    record = serializers.DictField(
        help_text=(
            "The rest of the member's streamed record: incoming_journal_figures, databases, "
            "state (up, down or hung), ...; empty before the collector has seen the member."
        ),
    )


class CollectorStateSerializer(serializers.Serializer):
    live = serializers.BooleanField(help_text="A collector holds an unexpired lease.")
    holder = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)


class MirrorStatusSerializer(serializers.Serializer):
    """A mirror's live Mirror Monitor (guide §5.1.1)."""

    mirror = serializers.CharField()
    requires_tls = serializers.BooleanField()
    health = LiveHealthSerializer()
    primary = serializers.CharField(
        allow_null=True,
        help_text="The member that reports itself Primary (or In Trouble) now: roles change "
        "with every takeover.",
    )
    failover_mode = serializers.CharField(allow_null=True)
    arbiter = LiveArbiterSerializer()
    no_failover = serializers.ListField(
        child=serializers.CharField(),
        help_text='Failover members with "no failover" set, as they last said it.',
    )
    failover_members = LiveFailoverMemberSerializer(many=True)
    members = LiveMemberSerializer(
        many=True, help_text="Primary first, then the backup, then asyncs."
    )
    alerts = AlertSerializer(many=True, help_text="The mirror's open alerts.")
    collector = CollectorStateSerializer()
    generated_at = serializers.DateTimeField()


class MemberSamplesSerializer(serializers.Serializer):
    at = serializers.ListField(child=serializers.FloatField(), help_text="Epoch seconds.")
    transfer_lag_s = serializers.ListField(child=serializers.FloatField(allow_null=True))
    dejournal_lag_s = serializers.ListField(child=serializers.FloatField(allow_null=True))
    journal_kb_s = serializers.ListField(child=serializers.FloatField(allow_null=True))
    network_kb_s = serializers.ListField(child=serializers.FloatField(allow_null=True))


class MirrorSamplesSerializer(serializers.Serializer):
    """Columns, one array per series, all of a member's arrays the same length (uPlot's data)."""

    mirror = serializers.CharField()
    since = serializers.FloatField(help_text="Epoch seconds: samples taken after this.")
    members = serializers.DictField(
        child=MemberSamplesSerializer(), help_text="Member name to its columns; every member."
    )


SERIES = ("transfer_lag_s", "dejournal_lag_s", "journal_kb_s", "network_kb_s")


# --- Views --------------------------------------------------------------------------------------
class MirrorStatusView(APIView):
    any_mirror = True

    @extend_schema(
        parameters=[MIRROR_PARAMETER],
        responses={200: MirrorStatusSerializer},
    )
    def get(self, request, id):
        """The mirror's live Mirror Monitor: members with their live status, lag and record,
        failover information, arbiter, open alerts and the collector's own state."""
        return Response(mirror_status(get_mirror(id, request.user)))


class MirrorSamplesView(APIView):
    any_mirror = True

    @extend_schema(
        parameters=[
            MIRROR_PARAMETER,
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description=(
                    "Only samples taken after this ISO 8601 time (the last `at` a page holds). "
                    "Default, and at the earliest: the samples kept (the last hour)."
                ),
            ),
        ],
        responses={200: MirrorSamplesSerializer},
    )
    def get(self, request, id):
        """The last hour's lag and incoming journal rate samples of each member, as columns."""
        query = SamplesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        mirror = get_mirror(id, request.user)
        oldest = timezone.now() - timedelta(seconds=settings.MONITOR_SAMPLE_KEEP_S)
        since = max(query.validated_data.get("since", oldest), oldest)
        members = {
            name: {"at": [], **{series: [] for series in SERIES}}
            for name in Member.objects.filter(mirror=mirror)
            .order_by("name")
            .values_list("name", flat=True)
        }
        rows = (
            Sample.objects.filter(member__mirror=mirror, at__gt=since)
            .order_by("member__name", "at", "id")
            .values_list("member__name", "at", *SERIES)
        )
        for name, at, *values in rows:
            columns = members.setdefault(name, {"at": [], **{series: [] for series in SERIES}})
            columns["at"].append(round(at.timestamp(), 3))
            for series, value in zip(SERIES, values, strict=True):
                columns[series].append(value)
        return Response(
            {"mirror": mirror.name, "since": round(since.timestamp(), 3), "members": members}
        )


class EventList(MirrorScoped, generics.ListAPIView):
    """The mirrors' history, newest first: status changes the collector saw, jobs started and
    ended, alerts. Filter by mirror and member name, kind, time (since/until) and job."""

    queryset = Event.objects.order_by("-at", "-id")
    serializer_class = EventSerializer
    filterset_class = EventFilter
    ordering_fields = ["at", "id"]
    ordering = ["-at", "-id"]
