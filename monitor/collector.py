"""The collector: follows the status stream of every registered host's agent, keeps each
member's live state (MemberState), writes the history (Event) and the chart samples, runs the
alert rules, and publishes every change to the websockets (docs/monitor.md).

    Collector().run()          # manage.py runmonitor; or start_embedded_collector() in the portal

Threads: one Follower per host reads its agent's stream (engine.client.stream.StatusStream:
snapshot, then changes, checked by sequence number; a gap or a lost connection ends the
connection and the follower reconnects for a fresh snapshot, with backoff while the agent
cannot be reached). Followers only put what they read on a queue; the collector's own thread
does every database write, in order, so a change is never applied twice or out of turn.

Only the holder of the lease (monitor/lease.py) follows and writes. A change that only moves a
lag, a rate or a journal position is written and published with the next second's tick; a
change of status, journal transfer phase, database status, membership or certificate at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from engine.client.agent import AgentError
from engine.client.stream import StatusStream
from members import reconcile
from members.agents import agent_client_for
from members.models import Host, Member, Mirror
from monitor import lease, publish, states
from monitor.api.serializers import EventSerializer, fleet_row, mirror_status
from monitor.models import Event, MemberState, Sample
from monitor.services import add_event, new_event
from portal.crypto import SecretUnreadable
from tasks.models import Job

log = logging.getLogger(__name__)

TICK_S = 1.0
# the agent sends a keep-alive every 10 s by default: silence for longer means the link is gone
READ_TIMEOUT_S = 15.0
FIRST_RETRY_S = 0.2
JOB_LOOKBACK_S = 300  # at takeover, jobs that moved this recently get their events (once)
# gathering changes this long before writing them: at 200 changes/s one transaction per ~20 ms
# instead of one each (bench/monitor.py: collector CPU share 0.39 -> 0.21)
BATCH_WINDOW_S = 0.02
BULK_FROM = 20  # rows written at once from which one bulk UPDATE beats one UPDATE per row
STATE_FIELDS = [
    "agent_reachable",
    "status",
    "journal_transfer",
    "dejournaling",
    "transfer_lag_s",
    "dejournal_lag_s",
    "record",
    "seen_at",
    "changed_at",
]


class Follower(threading.Thread):
    """Follows one agent's status stream and puts what it reads on the collector's queue:
    ("records", host_id, {instance: record}) for a snapshot or a change, ("lost", host_id,
    reason) when the agent cannot be reached (then again after each failed retry)."""

    def __init__(self, host_id: int, label: str, client, out: queue.Queue, retry_max_s: float):
        super().__init__(name=f"monitor-follow-{label}", daemon=True)
        self.host_id = host_id
        self.client = client
        self.out = out
        self.retry_max_s = retry_max_s
        self.stopping = threading.Event()
        self.stream: StatusStream | None = None

    def run(self) -> None:
        delay = FIRST_RETRY_S
        while not self.stopping.is_set():
            got_events, reason = self._follow_once()
            if self.stopping.is_set():
                break
            if got_events:  # it worked until now: reconnect at once, say nothing yet
                delay = FIRST_RETRY_S
                continue
            self.out.put(("lost", self.host_id, reason))
            self.stopping.wait(delay)
            delay = min(delay * 2, self.retry_max_s)
        self.client.close()

    def _follow_once(self) -> tuple[bool, str]:
        self.stream = stream = StatusStream(
            self.client, reconnect=False, read_timeout=READ_TIMEOUT_S
        )
        got = False
        try:
            for event in stream.events():
                got = True
                if event["type"] == "snapshot":
                    records = {name: dict(rec) for name, rec in stream.instances.items()}
                elif event["type"] == "instance":
                    records = {event["name"]: dict(stream.instances[event["name"]])}
                else:
                    continue
                self.out.put(("records", self.host_id, records))
        except AgentError as exc:  # refused (401, 403): no use hammering it
            return False, f"refused the status stream ({exc.status} {exc.code}): {exc.message}"
        return got, "status stream lost" if got else f"unreachable at {self.client.url}"

    def stop(self) -> None:
        self.stopping.set()
        if self.stream is not None:
            self.stream.close()


class Collector:
    def __init__(self, holder: str | None = None):
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_s = settings.MONITOR_LEASE_S
        self.queue: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.epoch: int | None = None
        self.followers: dict[int, tuple[tuple, Follower]] = {}
        self.states: dict[int, dict] = {}  # member pk -> state (monitor/states.py)
        self.changed_at: dict[int, object] = {}
        self.persisted: set[int] = set()  # members with a MemberState row
        self.dirty: set[int] = set()
        self.latest: dict[tuple[int, str], dict] = {}  # (host, instance) -> its last record
        self.lost: dict[int, str] = {}  # hosts whose agent cannot be followed now -> why
        self.known_as: dict[tuple[int, str], str] = {}  # (host, instance) -> member name
        self.members: dict[int, Member] = {}
        self.unreadable: set[int] = set()  # hosts whose stored credential no key opens
        self.next_tick = 0.0
        self.next_sample = 0.0
        self.job_watermark = None

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        log.info("collector %s started", self.holder)
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                except lease.LeaseLost as exc:
                    log.warning("%s; following stops until the lease is won again", exc)
                    self._stand_down()
                except DatabaseError as exc:  # a restart, a deadlock: try again shortly
                    log.warning("collector: database error: %s", exc)
                    close_old_connections()
                    self.stopping.wait(1.0)
                    self._recover()
                except Exception:  # a bug in one step must not end the monitoring for good
                    log.exception("collector: step failed; going on in a second")
                    self.stopping.wait(1.0)
        finally:
            self._stand_down(release=True)
            close_old_connections()
            log.info("collector %s stopped", self.holder)

    def stop(self) -> None:
        self.stopping.set()

    @property
    def active(self) -> bool:
        return self.epoch is not None

    def step(self) -> None:
        if self.epoch is None:
            self.epoch = lease.acquire(self.holder, self.lease_s)
            if self.epoch is None:
                self.stopping.wait(TICK_S)
                return
            log.info("collector %s holds the lease (epoch %s)", self.holder, self.epoch)
            self._take_over()
        batch = self._drain(timeout=0.05)
        if batch:
            self._apply(batch)
        if time.monotonic() >= self.next_tick:
            self.next_tick = time.monotonic() + TICK_S
            self._tick()

    def _drain(self, timeout: float) -> list:
        """What the followers queued: waits up to `timeout` for a first item, then gathers
        for BATCH_WINDOW_S more, so a busy fleet's changes share one transaction."""
        try:
            batch = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + BATCH_WINDOW_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                batch.append(self.queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    # --- taking over and standing down -------------------------------------------------------
    def _take_over(self) -> None:
        """Start from what the last holder wrote: new snapshots are compared with it, so what
        changed while nobody collected becomes events, and nothing already written does."""
        self.states, self.changed_at, self.dirty = {}, {}, set()
        for row in MemberState.objects.all():
            self.states[row.pk] = {f: getattr(row, f) for f in STATE_FIELDS[:7]}
            self.changed_at[row.pk] = row.changed_at
        self.persisted = set(self.states)
        self.job_watermark = timezone.now() - timedelta(seconds=JOB_LOOKBACK_S)
        self.next_tick = 0.0

    def _recover(self) -> None:
        """After a failed write, which rolled back: the states held here were never stored.
        Start again from what is stored, as a new holder would; the next tick applies the last
        record of every instance (and each host's loss) to it, so every change that was lost
        is written then, once."""
        if self.epoch is None:
            return
        self._take_over()
        self.members = {}  # all "new" at the next tick: the records read are applied again

    def _stand_down(self, release: bool = False) -> None:
        for _, follower in self.followers.values():
            follower.stop()
        self.followers = {}
        self.queue = queue.Queue()
        if release and self.epoch is not None:
            with contextlib.suppress(DatabaseError):  # the lease lapses by itself anyway
                lease.release(self.holder, self.epoch)
        self.epoch = None

    # --- applying what the agents said -------------------------------------------------------
    def _apply(self, batch: list) -> None:
        now = timezone.now()
        urgent: dict[int, list] = {}
        for kind, host_id, payload in batch:
            if kind == "lost":
                self.lost[host_id] = payload
                self._mark_lost(host_id, payload, now, urgent)
                continue
            self.lost.pop(host_id, None)
            for instance, record in payload.items():
                self.latest[(host_id, instance)] = record
                self._apply_record(host_id, instance, record, now, urgent)
        if urgent:
            self._write(urgent, now)

    def _mark_lost(self, host_id: int, reason: str, now, urgent) -> None:
        for member in self._on_host(host_id):
            old = self.states.get(member.pk)
            if old is None or not old["agent_reachable"]:
                continue
            self._note(member, old, states.unreachable(old, reason), now, urgent)

    def _apply_record(self, host_id, instance, record, now, urgent) -> None:
        known = self.known_as.get((host_id, instance))
        for mirror, name, flat in states.members_of(record, known):
            if not name:
                continue
            if mirror:
                self.known_as[(host_id, instance)] = name
            for member in self._on_host(host_id, name, mirror):
                self._note(member, self.states.get(member.pk), states.state_of(flat), now, urgent)

    def _note(self, member, old, new, now, urgent) -> None:
        new = states.keep_last_known(old, new)
        new = states.follow_takeover(old, new, now.isoformat())
        events = states.changes(member.name, old, new)
        self.states[member.pk] = new
        if states.significant(old, new):
            self.changed_at[member.pk] = now
            urgent.setdefault(member.pk, []).extend(events)
            self.dirty.discard(member.pk)
        else:
            self.dirty.add(member.pk)

    def _on_host(self, host_id: int, name: str | None = None, mirror: str = "") -> list[Member]:
        return [
            m
            for m in self.members.values()
            if m.host_id == host_id
            and (name is None or m.name == name)
            and (not mirror or m.mirror.name == mirror)
        ]

    def _write(self, changed: dict[int, list], now) -> None:
        """Write the states of `changed` (member pk -> its new events) and publish them."""
        # in primary-key order, as a job's refresh locks them (members/reconcile.py, which
        # also leaves the foreign-key checks of these rows' events free): two writers taking
        # the same rows in opposite orders would deadlock on PostgreSQL
        pks = sorted(pk for pk in changed if pk in self.members)
        if not pks:
            return
        events = []
        with transaction.atomic():
            lease.fence(self.holder, self.epoch, self.lease_s)
            rows = [self._row(pk, now) for pk in pks]
            self._save_states(rows)
            for pk in pks:
                member, status = self.members[pk], self.states[pk]["status"]
                if member.status != status:
                    Member.objects.filter(pk=pk).update(status=status, observed_at=now)
                    member.status = status
                # the type too is the member's word: a promotion or demotion changes it
                reported = states.reported_type(self.states[pk])
                if reported and reported != member.member_type:
                    reconcile.record_member_type(member, reported)
                for kind, before, after, text in changed[pk]:
                    events.append(
                        new_event(
                            member.mirror,
                            kind,
                            text,
                            member_name=member.name,
                            before=before,
                            after=after,
                            at=now,
                        )
                    )
            Event.objects.bulk_create(events)
        self._publish({self.members[pk].mirror_id for pk in pks}, events)

    def _save_states(self, rows: list[MemberState]) -> None:
        """A few rows: one UPDATE each (cheaper than bulk_update's CASE per field, which cost
        a third of the collector's time in bench/monitor.py); many: bulk_update."""
        old = [r for r in rows if r.pk in self.persisted]
        if len(old) > BULK_FROM:
            MemberState.objects.bulk_update(old, STATE_FIELDS, batch_size=200)
        else:
            for row in old:
                fields = {f: getattr(row, f) for f in STATE_FIELDS}
                MemberState.objects.filter(pk=row.pk).update(**fields)
        new = [r for r in rows if r.pk not in self.persisted]
        MemberState.objects.bulk_create(new, ignore_conflicts=True)
        self.persisted.update(r.pk for r in new)

    def _row(self, pk: int, now) -> MemberState:
        state = self.states[pk]
        return MemberState(
            member_id=pk,
            seen_at=now,
            changed_at=self.changed_at.get(pk) or now,
            **{f: state[f] for f in STATE_FIELDS[:7]},
        )

    # --- every second ------------------------------------------------------------------------
    def _tick(self) -> None:
        now = timezone.now()
        if self._load_members():
            # members registered since: apply the records already read to them too
            urgent: dict[int, list] = {}
            for (host_id, instance), record in list(self.latest.items()):
                self._apply_record(host_id, instance, record, now, urgent)
            for host_id, reason in list(self.lost.items()):
                self._mark_lost(host_id, reason, now, urgent)
            for pk in list(self.dirty):
                urgent.setdefault(pk, [])
            self.dirty = set()
            self._write(urgent, now)
        self._follow_hosts()
        dirty, self.dirty = self.dirty, set()
        if dirty:
            self._write({pk: [] for pk in dirty}, now)
        else:
            with transaction.atomic():
                lease.fence(self.holder, self.epoch, self.lease_s)
        self._record_job_events(now)
        self._evaluate_alerts()
        if time.monotonic() >= self.next_sample:
            self.next_sample = time.monotonic() + settings.MONITOR_SAMPLE_S
            self._sample(now)

    def _load_members(self) -> bool:
        """Refresh the registered members; True when some are new (or were removed)."""
        rows = {m.pk: m for m in Member.objects.select_related("mirror")}
        grew = set(rows) - set(self.members)
        self.members = rows
        for pk in set(self.states) - set(rows):
            self.states.pop(pk, None)
            self.persisted.discard(pk)
        return bool(grew)

    def _follow_hosts(self) -> None:
        """One follower per registered host with a way to authenticate to its agent."""
        wanted = {}
        for host in Host.objects.all():
            try:
                key = (host.address, host.agent_port, host.credential)
            except SecretUnreadable as exc:  # its key is gone: skip it, say so once
                if host.pk not in self.unreadable:
                    log.warning("collector: not following host %s: %s", host.name, exc)
                    self.unreadable.add(host.pk)
                continue
            self.unreadable.discard(host.pk)
            wanted[host.pk] = (key, host)
        for pk in list(self.followers):
            key, follower = self.followers[pk]
            if pk not in wanted or wanted[pk][0] != key:
                follower.stop()
                del self.followers[pk]
        for pk, (key, host) in wanted.items():
            if pk in self.followers:
                continue
            client = agent_client_for(host, timeout=settings.PORTAL_AGENT_TIMEOUT_S)
            if client is None:
                continue
            follower = Follower(pk, host.name, client, self.queue, settings.MONITOR_RECONNECT_MAX_S)
            self.followers[pk] = (key, follower)
            follower.start()

    def _record_job_events(self, now) -> None:
        """A job's start and end in its mirror's history, each once (even across takeovers:
        an event already written for that job and state is not written again)."""
        since = self.job_watermark
        jobs = list(
            Job.objects.filter(Q(started_at__gte=since) | Q(finished_at__gte=since))
            .select_related("mirror")
            .order_by("id")
        )
        self.job_watermark = now - timedelta(seconds=2 * TICK_S)  # rows may commit late
        if not jobs:
            return
        done = set(
            Event.objects.filter(kind=Event.JOB, job__in=jobs).values_list("job_id", "after")
        )
        written = []
        with transaction.atomic():
            lease.fence(self.holder, self.epoch, self.lease_s)
            for job in jobs:
                for state, at in ((Job.RUNNING, job.started_at), (job.state, job.finished_at)):
                    if at is None or (job.pk, state) in done or state == Job.QUEUED:
                        continue
                    done.add((job.pk, state))
                    text = f"Job {job.pk} {job.kind} {state}"
                    if job.error and state == Job.FAILED:
                        text += f": {job.error[:150]}"
                    written.append(
                        add_event(job.mirror, Event.JOB, text, after=state, job=job, at=at)
                    )
        self._publish({e.mirror_id for e in written if e.mirror_id}, written)

    def _evaluate_alerts(self) -> None:
        try:
            from monitor.alerts import evaluate_alerts

            with transaction.atomic():
                lease.fence(self.holder, self.epoch, self.lease_s)
                changed = evaluate_alerts()
        except (lease.LeaseLost, DatabaseError):
            raise
        except Exception:  # a broken rule must not stop the monitoring itself
            log.exception("collector: the alert rules failed")
            return
        if changed:
            self._publish(set(changed), [])

    def _sample(self, now) -> None:
        rows = []
        for pk, state in self.states.items():
            if pk not in self.members or not state["agent_reachable"]:
                continue
            figures = state["record"].get("incoming_journal_figures") or {}
            rows.append(
                Sample(
                    member_id=pk,
                    at=now,
                    transfer_lag_s=state["transfer_lag_s"],
                    dejournal_lag_s=state["dejournal_lag_s"],
                    network_kb_s=figures.get("network_kb_s"),
                    journal_kb_s=figures.get("journal_kb_s"),
                )
            )
        keep = now - timedelta(seconds=settings.MONITOR_SAMPLE_KEEP_S)
        with transaction.atomic():
            lease.fence(self.holder, self.epoch, self.lease_s)
            Sample.objects.bulk_create(rows)
            Sample.objects.filter(at__lt=keep).delete()

    # --- publishing --------------------------------------------------------------------------
    def _publish(self, mirror_ids: set[int], events: list[Event]) -> None:
        if not publish.can_deliver():  # nobody could listen: do not build the messages
            return
        for mirror in Mirror.objects.filter(pk__in=mirror_ids):
            group = publish.mirror_group(mirror.pk)
            publish.send([group], {"type": "status", "status": mirror_status(mirror)})
            publish.send(
                [publish.FLEET_GROUP],
                {"type": "fleet_row", "row": fleet_row(mirror)},
                mirror_id=mirror.pk,
            )
        for event in events:
            if event.mirror_id:
                payload = {"type": "event", "event": EventSerializer(event).data}
                publish.send([publish.mirror_group(event.mirror_id)], payload)


def start_embedded_collector() -> Collector:
    """The collector on a thread of the portal process (the embedded default)."""
    collector = Collector()
    thread = threading.Thread(target=collector.run, name="monitor-collector", daemon=True)
    thread.start()
    atexit.register(collector.stop)
    return collector
