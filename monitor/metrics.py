"""/metrics for Prometheus: the live monitor's rows, read at scrape time (docs/monitor-api.md).

No gauge lives in the process: `PortalCollector.collect()` reads the database on every scrape,
so every web worker answers the same, whichever one the scraper reaches, and a member that is
gone from the database is gone from the next scrape. A scrape costs a fixed handful of queries
(the members with their live state in one, the lease, jobs and open alerts grouped in one each),
whatever the number of mirrors and members.

Access is a viewer's or better, by session or by API token (Authorization: Bearer <token>), as
for the REST API; a refusal is logged with its reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from rest_framework import exceptions

from accounts.authentication import BearerTokenAuthentication
from accounts.roles import VIEWER, has_role
from engine import rules as catalog
from members.models import Member
from monitor import lease
from monitor.models import Alert, Lease, MemberState
from tasks.models import Job

log = logging.getLogger(__name__)

KB = 1024  # the engine's KB/s are KiB per second (engine/member/status.py)
MEMBER_LABELS = ["mirror", "member", "type"]
UNKNOWN = "unknown"


def _number(value) -> float | None:
    """A finite number from a member's record, or None (a record is JSON from an agent)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _live(member: Member) -> MemberState | None:
    try:
        return member.live
    except MemberState.DoesNotExist:
        return None


class PortalCollector:
    """Every series, built from the database when the registry collects."""

    def describe(self):
        return []  # nothing to read at registration: the database is read at scrape time

    def collect(self):
        yield from self._members()
        yield from self._collector()
        yield from self._jobs()
        yield from self._alerts()

    # --- members and their databases ------------------------------------------------------------
    def _members(self):
        status = GaugeMetricFamily(
            "mirror_member_status",
            "The member's status (guide §5.1.1.1): 1 for the one it has, 0 for the others. "
            "Live from the collector, else as the last refresh read it.",
            labels=[*MEMBER_LABELS, "status"],
        )
        transfer_lag = GaugeMetricFamily(
            "mirror_member_transfer_lag_seconds",
            "How far the member's journal transfer is behind the primary.",
            labels=MEMBER_LABELS,
        )
        dejournal_lag = GaugeMetricFamily(
            "mirror_member_dejournal_lag_seconds",
            "How far the member's dejournaling is behind the journal it holds.",
            labels=MEMBER_LABELS,
        )
        network = GaugeMetricFamily(
            "mirror_member_incoming_network_bytes_per_second",
            "Incoming journal on the data channel, as sent (compressed), in bytes per second.",
            labels=MEMBER_LABELS,
        )
        journal = GaugeMetricFamily(
            "mirror_member_incoming_journal_bytes_per_second",
            "Incoming journal, uncompressed, in bytes per second.",
            labels=MEMBER_LABELS,
        )
        reachable = GaugeMetricFamily(
            "mirror_member_agent_reachable",
            "1 while the collector follows the member's agent; 0 when the agent is unreachable "
            "(the member's other series are then stale).",
            labels=MEMBER_LABELS,
        )
        seen = GaugeMetricFamily(
            "mirror_member_last_seen_timestamp_seconds",
            "When the collector last heard about the member (Unix time).",
            labels=MEMBER_LABELS,
        )
        databases = GaugeMetricFamily(
            "mirror_database_copies",
            "The member's database copies in each status (guide §5.1.1.3).",
            labels=["mirror", "member", "status"],
        )
        members = Member.objects.select_related("mirror", "live").order_by("mirror__name", "name")
        for member in members:
            labels = [member.mirror.name, member.name, member.member_type]
            live = _live(member)
            current = (live.status if live else member.status) or UNKNOWN
            for name in dict.fromkeys([*catalog.MEMBER_STATUSES, current]):
                status.add_metric([*labels, name], 1.0 if name == current else 0.0)
            if live is None:
                continue
            reachable.add_metric(labels, 1.0 if live.agent_reachable else 0.0)
            seen.add_metric(labels, live.seen_at.timestamp())
            for family, value in (
                (transfer_lag, live.transfer_lag_s),
                (dejournal_lag, live.dejournal_lag_s),
            ):
                if value is not None:
                    family.add_metric(labels, value)
            record = live.record if isinstance(live.record, dict) else {}
            figures = record.get("incoming_journal_figures")
            if isinstance(figures, dict):
                for family, key in ((network, "network_kb_s"), (journal, "journal_kb_s")):
                    value = _number(figures.get(key))
                    if value is not None:
                        family.add_metric(labels, value * KB)
            copies = record.get("databases")
            counts = Counter(
                str(db.get("status") or UNKNOWN)
                for db in (copies if isinstance(copies, list) else [])
                if isinstance(db, dict)
            )
            for name, count in sorted(counts.items()):
                databases.add_metric([member.mirror.name, member.name, name], count)
        yield from (status, transfer_lag, dejournal_lag, network, journal, reachable, seen)
        yield databases

    # --- the collector, jobs, alerts ------------------------------------------------------------
    def _collector(self):
        now = timezone.now()
        row = Lease.objects.filter(name=lease.NAME).first()
        up = GaugeMetricFamily(
            "mirror_portal_collector_up",
            "1 while a collector holds an unexpired lease (the live monitor is current).",
        )
        up.add_metric([], 1.0 if row is not None and row.expires_at > now else 0.0)
        yield up
        if row is None:
            return
        # the holder renews to now + MONITOR_LEASE_S (monitor/lease.py)
        renewed = row.expires_at - timedelta(seconds=settings.MONITOR_LEASE_S)
        age = GaugeMetricFamily(
            "mirror_portal_collector_lease_age_seconds",
            "Seconds since the collector last renewed its lease.",
        )
        age.add_metric([], max(0.0, (now - renewed).total_seconds()))
        epoch = GaugeMetricFamily(
            "mirror_portal_collector_lease_epoch",
            "The lease's epoch: it grows by one each time another collector takes over.",
        )
        epoch.add_metric([], float(row.epoch))
        yield age
        yield epoch

    def _jobs(self):
        counts = dict(Job.objects.order_by().values_list("state").annotate(n=Count("id")))
        jobs = GaugeMetricFamily("mirror_portal_jobs", "Jobs in each state.", labels=["state"])
        for state, _ in Job.STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs

    def _alerts(self):
        counts = dict(
            Alert.objects.filter(resolved_at=None)
            .order_by()
            .values_list("rule")
            .annotate(n=Count("id"))
        )
        alerts = GaugeMetricFamily(
            "mirror_portal_alerts_open", "Open alerts of each rule.", labels=["rule"]
        )
        for rule, _ in Alert.RULES:
            alerts.add_metric([rule], counts.get(rule, 0))
        yield alerts


def exposition(accept: str = "") -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics when the scraper asks for it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _refuse(request, status: int, reason: str) -> HttpResponse:
    log.warning(
        "metrics: refused %s from %s (%s)",
        request.path,
        request.META.get("REMOTE_ADDR", "?"),
        reason,
    )
    response = HttpResponse(f"{reason}\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = BearerTokenAuthentication().authenticate_header(request)
    return response


@require_safe
def metrics(request):
    """Prometheus' scrape: viewer or better, by API token (a scraper) or by session."""
    try:
        found = BearerTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        return _refuse(request, 401, str(exc.detail))
    user = found[0] if found else request.user
    if not user.is_authenticated:
        return _refuse(request, 401, "No credentials: send Authorization: Bearer <token>.")
    if not has_role(user, VIEWER):
        return _refuse(request, 403, f"User {user.get_username()!r} holds no viewer role.")
    body, content_type = exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
