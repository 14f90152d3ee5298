"""The live monitor's JSON, one shape for the REST API and the websockets (docs/monitor.md).

`mirror_status(mirror)` is the Mirror Monitor of one mirror (guide §5.1.1) as the collector last
stored it; `fleet_row(mirror)` its line on the fleet overview. Both read a handful of rows, so a
consumer can build a fresh snapshot on every (re)connect.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers

from engine import rules as catalog
from members.health import mirror_health
from members.models import Member, Mirror
from monitor.models import Alert, Event, Lease, MemberState

# members listed primary first, then the backup, then the asyncs (guide §5.1.1.1); the primary is
# whoever says so now (roles change with every takeover), one in Transition is becoming it
_ORDER = {catalog.PRIMARY: 0, catalog.IN_TROUBLE: 0, catalog.TRANSITION: 0, catalog.BACKUP: 1}


class EventSerializer(serializers.ModelSerializer):
    job_url = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "id",
            "at",
            "mirror_name",
            "member_name",
            "kind",
            "before",
            "after",
            "text",
            "job",
            "job_url",
        ]

    def get_job_url(self, event) -> str | None:
        return reverse("job-detail", args=[event.job_id]) if event.job_id else None


class AlertSerializer(serializers.ModelSerializer):
    mirror = serializers.CharField(source="mirror.name")
    acknowledged_by = serializers.CharField(
        source="acknowledged_by.get_username", default=None, allow_null=True
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "mirror",
            "member_name",
            "rule",
            "key",
            "text",
            "opened_at",
            "resolved_at",
            "acknowledged_by",
            "acknowledged_at",
            "delivered_at",
            "delivery_attempts",
        ]


class MemberStatusSerializer(serializers.Serializer):
    """One line of the Mirror Member Status table, and what the monitor knows besides."""

    name = serializers.CharField()
    member_type = serializers.CharField()
    type = serializers.SerializerMethodField(help_text="As the Mirror Monitor shows it.")
    status = serializers.SerializerMethodField()
    journal_transfer = serializers.SerializerMethodField()
    dejournaling = serializers.SerializerMethodField()
    transfer_lag_s = serializers.FloatField(source="live.transfer_lag_s", default=None)
    dejournal_lag_s = serializers.FloatField(source="live.dejournal_lag_s", default=None)
    agent_reachable = serializers.BooleanField(source="live.agent_reachable", default=None)
    x509_dn = serializers.CharField()
    authorization = serializers.CharField()
    superserver = serializers.SerializerMethodField()
    mirror_private_address = serializers.CharField()
    seen_at = serializers.DateTimeField(source="live.seen_at", default=None)
    changed_at = serializers.DateTimeField(source="live.changed_at", default=None)
    record = serializers.SerializerMethodField(
        help_text="The rest of the member's own record: rates, databases, pending members..."
    )

    def _live(self, member) -> MemberState | None:
        try:
            return member.live
        except MemberState.DoesNotExist:
            return None

    def get_record(self, member) -> dict:
        live = self._live(member)
        return live.record if live else {}

    def get_type(self, member) -> str:
        return catalog.MEMBER_TYPE_LABELS.get(member.member_type, member.member_type)

    def get_status(self, member) -> str:
        live = self._live(member)
        return live.status if live else member.status

    def get_journal_transfer(self, member) -> str:
        """A member that cannot answer has no journal transfer of its own: the primary's word
        for it is shown, e.g. "Disconnected on <time>" (guide §5.1.1.1)."""
        live = self._live(member)
        if live is None:
            return ""
        if live.status in (catalog.DOWN, catalog.ERROR) or not live.agent_reachable:
            seen = self.context.get("primary_view", {}).get(member.name)
            if seen and seen.get("journal_transfer"):
                return seen["journal_transfer"]
        return live.journal_transfer

    def get_dejournaling(self, member) -> str:
        live = self._live(member)
        return live.dejournaling if live else ""

    def get_superserver(self, member) -> str:
        return f"{member.superserver_address}|{member.superserver_port}"


def _members(mirror: Mirror) -> list[Member]:
    rows = list(Member.objects.filter(mirror=mirror).select_related("live", "host"))
    rows.sort(key=lambda m: (_ORDER.get(m.status, 2), m.member_type != catalog.FAILOVER, m.name))
    return rows


def _primary_record(members: list[Member]) -> dict:
    for m in members:
        live = getattr(m, "live", None) if _has_live(m) else None
        if live and live.status in catalog.PRIMARY_STATUSES:
            return live.record
    return {}


def _failover_record(members: list[Member]) -> dict:
    """Whose failover mode and arbiter link the page shows: the primary's; with no primary
    (a takeover under way, both waiting), the first failover member that reports them."""
    primary = _primary_record(members)
    if primary.get("failover_mode"):
        return primary
    for m in members:
        record = m.live.record if _has_live(m) else {}
        if m.member_type == catalog.FAILOVER and record.get("failover_mode"):
            return record
    return primary


def no_failover(members: list[Member]) -> list[str]:
    """The failover members with "no failover" set: as their status says it when it does,
    else as they last answered a set or clear of it (members.operations.failover)."""
    named = []
    for m in members:
        record = m.live.record if _has_live(m) else {}
        flag = record.get("no_failover", m.no_failover)
        if m.member_type == catalog.FAILOVER and flag:
            named.append(m.name)
    return named


def _has_live(member: Member) -> bool:
    try:
        member.live  # noqa: B018 - the reverse one-to-one raises when there is none
    except MemberState.DoesNotExist:
        return False
    return True


def collector_state() -> dict:
    lease = Lease.objects.filter(name="collector").first()
    now = timezone.now()
    return {
        "live": bool(lease and lease.expires_at > now),
        "holder": lease.holder if lease else None,
        "since": lease.acquired_at if lease else None,
    }


def mirror_status(mirror: Mirror) -> dict:
    """The live Mirror Monitor of `mirror` (guide §5.1.1): members, failover information,
    arbiter, databases per member, open alerts, the collector's own state."""
    members = _members(mirror)
    primary = _primary_record(members)
    failover = _failover_record(members)
    arbiter = f"{mirror.arbiter_host}|{mirror.arbiter_port}" if mirror.arbiter_host else ""
    health = mirror_health(members)
    alerts = Alert.objects.filter(mirror=mirror, resolved_at=None).select_related(
        "mirror", "acknowledged_by"
    )
    return {
        "mirror": mirror.name,
        "requires_tls": mirror.requires_tls,
        "health": {"level": health.level, "text": health.text},
        "primary": next((m.name for m in members if m.status in catalog.PRIMARY_STATUSES), None),
        "failover_mode": failover.get("failover_mode"),
        "arbiter": {"address": arbiter, "connection": failover.get("arbiter_connection")},
        "no_failover": no_failover(members),
        "failover_members": [
            {
                "name": m.name,
                "superserver": f"{m.superserver_address}|{m.superserver_port}",
                "private": m.mirror_private_address,
            }
            for m in members
            if m.member_type == catalog.FAILOVER
        ],
        "members": MemberStatusSerializer(
            members,
            many=True,
            context={"primary_view": {row["member"]: row for row in primary.get("members") or []}},
        ).data,
        "alerts": AlertSerializer(alerts, many=True).data,
        "collector": collector_state(),
        "generated_at": timezone.now(),
    }


def fleet_row(mirror: Mirror) -> dict:
    """The mirror at a glance: health, primary, whether the backup is Active, the worst async
    lag, open alerts (the fleet overview sorts by `rank`, worst first)."""
    members = _members(mirror)
    health = mirror_health(members)
    primary = next((m.name for m in members if m.status in catalog.PRIMARY_STATUSES), None)
    backup = next((m for m in members if m.status == catalog.BACKUP), None)
    backup_live = backup.live if backup is not None and _has_live(backup) else None
    lags = [
        m.live.transfer_lag_s
        for m in members
        if m.member_type != catalog.FAILOVER and _has_live(m) and m.live.transfer_lag_s is not None
    ]
    open_alerts = Alert.objects.filter(mirror=mirror, resolved_at=None).count()
    rank = {"bad": 0, "warn": 1, "unknown": 2, "ok": 3}[health.level]
    return {
        "mirror": mirror.name,
        "url": reverse("mirror-monitor", args=[mirror.name]),
        "health": {"level": health.level, "text": health.text},
        "rank": rank,
        "primary": primary,
        "backup": backup.name if backup else None,
        "backup_active": bool(backup_live and backup_live.journal_transfer == catalog.ACTIVE),
        "worst_async_lag_s": max(lags) if lags else None,
        "open_alerts": open_alerts,
        "members": len(members),
        "down": sum(
            1 for m in members if m.status in (catalog.DOWN, catalog.ERROR, catalog.CRASHED)
        ),
    }


def fleet(allowed: frozenset[int] | None = None) -> list[dict]:
    """Every mirror's row, or those of the `allowed` mirror ids only."""
    mirrors = Mirror.objects.all() if allowed is None else Mirror.objects.filter(pk__in=allowed)
    rows = [fleet_row(m) for m in mirrors]
    rows.sort(key=lambda r: (r["rank"], -r["open_alerts"], r["mirror"]))
    return rows
