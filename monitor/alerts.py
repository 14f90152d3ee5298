"""The live monitor's alert rules (docs/monitor-alerts.md).

The collector (monitor/collector.py) calls `evaluate_alerts()` after each batch of changes and
once a second. Each call reads what the collector last stored — every member's MemberState, the
settings drift, the open alerts: three queries whatever the number of members — and works out
which troubles exist now. Each trouble has a key ("rule:MIRROR:subject"); the model allows one
open alert per key, so trouble that persists is the same alert, seen again, and a webhook hears
about it once. A trouble with no open alert opens one; an open alert whose trouble is gone is
resolved. Both add a line to the mirror's history (an Event of kind "alert").

`acknowledge_alert()` is the one change a person makes to an alert.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import audit
from engine import rules as catalog
from members.models import Drift, Mirror
from monitor.models import Alert, Event, MemberState
from monitor.services import add_event
from portal.exceptions import StateConflict

log = logging.getLogger(__name__)

# The primary is the member that says Primary, or In Trouble (a primary's trouble state).
DOWN_STATUSES = (catalog.DOWN, catalog.ERROR, catalog.CRASHED)


@dataclass(frozen=True)
class Finding:
    """A trouble the rules see now: the alert it opens, unless that one is open already."""

    mirror: Mirror
    rule: str
    subject: str  # the member (or the setting) it is about; "" for the mirror itself
    text: str
    member_name: str = ""

    @property
    def key(self) -> str:
        return alert_key(self.rule, self.mirror.name, self.subject)


def alert_key(rule: str, mirror_name: str, subject: str = "") -> str:
    return ":".join(part for part in (rule, mirror_name, subject) if part)


# --- Since when a backup has not been Active ----------------------------------------------------
class NotActiveClock:
    """Remembers, from one evaluation to the next, since when each backup has not been Active.

    MemberState.changed_at alone is not enough: the collector bumps it on every change of the
    row, and a backup that goes from "Catchup" to "Disconnected on ..." and back, never reaching
    Active, would restart the count each time and never alert. So the clock starts at the
    row's changed_at when a backup is first seen not Active (the row has not changed since, so
    the trouble is at least that old: never too early, at most late), and keeps that start for
    as long as every evaluation sees the backup still not Active.

    The count is kept only across evaluations at most GAP_S apart (they run once a second):
    after a longer gap (a collector that stopped, or lost its lease to another process) nobody
    watched in between, so the clock starts again from changed_at. Members are known by id and
    creation time, since a deleted member's id may be given to a new one.
    """

    GAP_S = 5.0

    def __init__(self):
        self._started: dict[tuple, tuple[dt.datetime, dt.datetime]] = {}  # -> (since, seen)
        self._lock = threading.Lock()

    def since(self, states: Iterable[MemberState], now: dt.datetime) -> dict[int, dt.datetime]:
        """Since when each of `states` (the backups not Active now) has been so, by member id.
        Backups not among them are Active again (or gone): they are forgotten."""
        started = {}
        with self._lock:
            for state in states:
                identity = (state.member_id, state.member.created_at)
                since, seen = self._started.get(identity, (None, None))
                if seen is None or not 0 <= (now - seen).total_seconds() <= self.GAP_S:
                    since = min(state.changed_at, now)
                started[identity] = (since, now)
            self._started = started
        return {member_id: since for (member_id, _), (since, _) in started.items()}


backup_clock = NotActiveClock()


# --- The rules ------------------------------------------------------------------------------
def is_backup_not_active(state: MemberState) -> bool:
    return (
        state.member.member_type == catalog.FAILOVER
        and state.status == catalog.BACKUP
        and state.journal_transfer != catalog.ACTIVE
    )


def member_down(state: MemberState) -> Finding | None:
    member = state.member
    if not state.agent_reachable:
        text = f"{member.name}: its agent cannot be reached (last status {state.status or '—'})"
    elif state.status in DOWN_STATUSES:
        text = f"{member.name} is {state.status}"
    else:
        return None
    return Finding(member.mirror, Alert.MEMBER_DOWN, member.name, text, member.name)


def backup_not_active(state: MemberState, since: dt.datetime | None, now) -> Finding | None:
    """Only once the backup has not been Active for more than the threshold: a backup catches
    up for a moment after every restart or reconnection, which is no trouble."""
    if since is None:
        return None
    waited = (now - since).total_seconds()
    if waited <= settings.MONITOR_BACKUP_NOT_ACTIVE_S:
        return None
    member = state.member
    transfer = state.journal_transfer or "no journal transfer"
    text = f"Backup {member.name} has not been Active for {waited:.0f} s ({transfer})"
    return Finding(member.mirror, Alert.BACKUP_NOT_ACTIVE, member.name, text, member.name)


def async_lag(state: MemberState) -> Finding | None:
    member = state.member
    lag = state.transfer_lag_s
    if member.member_type not in catalog.ASYNC_TYPES or lag is None:
        return None
    if lag <= settings.MONITOR_ASYNC_LAG_S:
        return None
    limit = settings.MONITOR_ASYNC_LAG_S
    text = f"{member.name} is {lag:.0f} s behind the primary (more than {limit} s)"
    return Finding(member.mirror, Alert.ASYNC_LAG, member.name, text, member.name)


def trouble(state: MemberState) -> Finding | None:
    if state.status != catalog.IN_TROUBLE:
        return None
    member = state.member
    text = f"Primary {member.name} is In Trouble"
    return Finding(member.mirror, Alert.TROUBLE, member.name, text, member.name)


def takeover(state: MemberState, now) -> Finding | None:
    """A member took over as primary (the collector marks its record when its role becomes
    primary): open for MONITOR_TAKEOVER_ALERT_S after, while it stays primary, so that someone
    looks at why the former primary went and brings it back as backup."""
    record = state.record or {}
    at = record.get("took_over_at")
    if not at:
        return None
    try:
        since = dt.datetime.fromisoformat(str(at))
    except ValueError:
        return None
    if (now - since).total_seconds() > settings.MONITOR_TAKEOVER_ALERT_S:
        return None
    member = state.member
    former = record.get("took_over_from")
    text = f"{member.name} took over as primary" + (f" from {former}" if former else "")
    text += f" at {since:%Y-%m-%d %H:%M:%S} UTC"
    return Finding(member.mirror, Alert.TAKEOVER, member.name, text, member.name)


def certificate_not_after(record: dict) -> dt.datetime | None:
    """The member's certificate expiry from its record; None without a certificate, or when the
    agent could not read it (the record then holds an "error" instead)."""
    certificate = record.get("certificate")
    if not isinstance(certificate, dict) or not certificate.get("not_after"):
        return None
    try:
        not_after = dt.datetime.fromisoformat(str(certificate["not_after"]))
    except ValueError:
        log.warning("unreadable certificate expiry %r", certificate["not_after"])
        return None
    return not_after if timezone.is_aware(not_after) else not_after.replace(tzinfo=dt.UTC)


def certificate_expiring(state: MemberState, now) -> Finding | None:
    not_after = certificate_not_after(state.record or {})
    if not_after is None:
        return None
    left = not_after - now
    if left > dt.timedelta(days=settings.MONITOR_CERT_EXPIRY_DAYS):
        return None
    member = state.member
    when = f"{not_after:%Y-%m-%d %H:%M} UTC"
    if left <= dt.timedelta(0):
        text = f"The certificate of {member.name} expired on {when}"
    else:
        text = f"The certificate of {member.name} expires on {when} (in {left.days} days)"
    return Finding(member.mirror, Alert.CERTIFICATE, member.name, text, member.name)


def arbiter_lost(mirror: Mirror, states: list[MemberState]) -> Finding | None:
    """A mirror configured with an arbiter whose primary does not report both failover members
    connected to it (guide §3.3.5). Nothing is said while no primary reports the link at all:
    the member rules speak for a mirror without a primary."""
    if not mirror.arbiter_host:
        return None
    primaries = sorted(
        (s for s in states if s.status in catalog.PRIMARY_STATUSES), key=lambda s: s.member.name
    )
    if not primaries:
        return None
    primary = primaries[0]
    connection = (primary.record or {}).get("arbiter_connection")
    if not connection or connection == catalog.ARBITER_BOTH:
        return None
    arbiter = f"{mirror.arbiter_host}:{mirror.arbiter_port}"
    text = f"Arbiter {arbiter}: {connection} (says primary {primary.member.name})"
    return Finding(mirror, Alert.ARBITER_LOST, "", text, primary.member.name)


def drift(row: Drift) -> Finding:
    text = f"Setting {row.setting} is {row.observed} on the primary; the portal keeps {row.desired}"
    return Finding(row.mirror, Alert.DRIFT, row.setting, text)


def findings_now(states: list[MemberState], drifts: list[Drift], now) -> dict[str, Finding]:
    """Every trouble the rules see in the collector's last picture, by alert key."""
    not_active_since = backup_clock.since(filter(is_backup_not_active, states), now)
    by_mirror: dict[int, list[MemberState]] = defaultdict(list)
    found: list[Finding | None] = []
    for state in states:
        by_mirror[state.member.mirror_id].append(state)
        since = not_active_since.get(state.member_id)
        found += [
            member_down(state),
            backup_not_active(state, since, now),
            async_lag(state),
            trouble(state),
            takeover(state, now),
            certificate_expiring(state, now),
        ]
    for mirror_states in by_mirror.values():
        found.append(arbiter_lost(mirror_states[0].member.mirror, mirror_states))
    found += [drift(row) for row in drifts]
    return {f.key: f for f in found if f is not None}


# --- Opening and resolving --------------------------------------------------------------------
def evaluate_alerts(now=None) -> set[int]:
    """Open an alert for each new trouble, resolve those whose trouble is gone; the ids of the
    mirrors whose open alerts changed (for the collector to publish)."""
    now = now or timezone.now()
    states = list(MemberState.objects.select_related("member__mirror"))
    drifts = list(Drift.objects.select_related("mirror"))
    findings = findings_now(states, drifts, now)
    open_alerts = {
        a.key: a for a in Alert.objects.filter(resolved_at=None).select_related("mirror")
    }
    to_open = [f for key, f in findings.items() if key not in open_alerts]
    to_resolve = [a for key, a in open_alerts.items() if key not in findings]
    if not (to_open or to_resolve):
        return set()  # the usual second: three reads, no transaction
    changed = set()
    with transaction.atomic():
        for finding in to_open:
            if open_alert(finding, now) is not None:
                changed.add(finding.mirror.pk)
        for alert in to_resolve:
            if resolve_alert(alert, now):
                changed.add(alert.mirror_id)
    return changed


def open_alert(finding: Finding, now) -> Alert | None:
    """Open the alert of `finding` and have the webhooks told once it is committed. None when
    an alert of that key opened meanwhile (another evaluation got there first)."""
    try:
        with transaction.atomic():  # a savepoint: the unique key may refuse it
            alert = Alert.objects.create(
                mirror=finding.mirror,
                member_name=finding.member_name,
                rule=finding.rule,
                key=finding.key,
                text=finding.text[:300],
                opened_at=now,
            )
    except IntegrityError:
        log.info("alert %s is open already", finding.key)
        return None
    add_event(
        finding.mirror,
        Event.ALERT,
        f"Alert: {finding.text}",
        member_name=finding.member_name,
        after="open",
        at=now,
    )
    schedule_delivery(alert)
    return alert


def resolve_alert(alert: Alert, now) -> bool:
    resolved = Alert.objects.filter(pk=alert.pk, resolved_at=None).update(resolved_at=now)
    if not resolved:
        return False
    alert.resolved_at = now
    add_event(
        alert.mirror,
        Event.ALERT,
        f"Resolved: {alert.text}",
        member_name=alert.member_name,
        before="open",
        after="resolved",
        at=now,
    )
    return True


def schedule_delivery(alert: Alert) -> None:
    """Queue the webhook delivery once the alert is committed: a rolled back alert is never
    announced. robust: a broker that cannot be reached is logged, it does not stop the
    collector (the alert stays undelivered, its page shows it)."""
    if not settings.MONITOR_WEBHOOK_URLS:
        return
    from monitor.tasks import deliver_alert  # the task module imports the serializers' world

    alert_id = alert.pk
    transaction.on_commit(lambda: deliver_alert.delay(alert_id), robust=True)


# --- Acknowledging ----------------------------------------------------------------------------
@transaction.atomic
def acknowledge_alert(actor, alert: Alert) -> Alert:
    """Say that someone looks after `alert`. An alert is acknowledged once: a second
    acknowledgement (two people at once, say) is refused, the first one stands."""
    now = timezone.now()
    taken = Alert.objects.filter(pk=alert.pk, acknowledged_at=None).update(
        acknowledged_by=actor, acknowledged_at=now
    )
    if not taken:
        alert.refresh_from_db()
        who = alert.acknowledged_by.get_username() if alert.acknowledged_by else "someone"
        raise StateConflict(
            f"This alert was already acknowledged by {who}.", code="already_acknowledged"
        )
    alert.refresh_from_db()
    audit.record(
        actor,
        "alert.acknowledge",
        alert,
        before={"acknowledged_at": None},
        after={"key": alert.key, "acknowledged_at": now.isoformat()},
    )
    add_event(
        alert.mirror,
        Event.ALERT,
        f"Acknowledged by {actor.get_username()}: {alert.text}",
        member_name=alert.member_name,
        after="acknowledged",
        at=now,
    )
    return alert
