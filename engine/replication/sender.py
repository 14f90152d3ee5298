"""Primary side of replication: the Replicator, which keeps the links and the Active state.

A member opens a data channel (DC_HELLO with its journal end position); the handshake
(engine/replication/handshake.py) decides whether and from where it may start, and makes its
link (engine/replication/member_link.py: catch-up from the journal files, then live
streaming).  The Replicator hands every batch the journal appends to each live link
(Journal.on_append) before its fsync completes, so shipping overlaps the local fsync.

The backup is synchronous: once caught up and acknowledged it becomes Active, and a
client write is answered only when the Active backup has acknowledged its end position
(Writer asks when_acknowledged()).  If no ack arrives within the QoS timeout (checked every
QoS/2, so the effective window is QoS/2..QoS as in guide §4.15) the primary revokes
Active, disconnects the backup and is in trouble (guide §3.3.5.1): nothing new is committed
and no waiting write is answered until the backup says hello again or 2 x QoS pass; then it
carries on without an Active backup, and the backup catches up.
The timers (the QoS watchdog, the heartbeats) read qos_timeout_ms afresh on every round and
never sleep longer than TIMER_SLICE at a time, so a lowered QoS takes effect within one new
interval, however long the old one was.

Only acknowledgements a link has checked (MemberLink.check_ack: never beyond what was sent on
it, never backwards) reach on_ack; an impossible one closes the link and counts for nothing
(neither durability nor the Active flag).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.replication.gate import MembershipGate
from engine.replication.handshake import Handshake
from engine.replication.member_link import CATCHUP_STALL_S, MemberLink
from engine.storage.databases import CONTROL_MARK, Refused
from engine.storage.journal_codec import pos_wire
from engine.wire import trace
from engine.wire.protocol import ErrorCode, Frame, MsgType, RequestError, encode_frame

if TYPE_CHECKING:
    from engine.member.membership import Membership
    from engine.member.session import Connection

# MemberLink and CATCHUP_STALL_S live in member_link.py, and are still importable from here
__all__ = ["CATCHUP_STALL_S", "MemberLink", "Replicator", "TIMER_SLICE"]

log = logging.getLogger("engine.replication.sender")
# The longest a timer sleeps before it reads its setting again: a lowered qos_timeout_ms
# takes effect within this much (and within one new interval) whatever the old one was.
TIMER_SLICE = 0.25


class Replicator:
    """The primary's side of the data channel: the member links, the Active backup and the
    writes waiting for it, the trouble state, and the timers (QoS watchdog, heartbeats)."""

    def __init__(self, membership: Membership, gate: MembershipGate):
        self.membership = membership
        self.gate = gate
        self.links: dict[str, MemberLink] = {}
        self.active: MemberLink | None = None
        # (end position, callback, started) in position order: callback(None) once the
        # Active backup holds the end, callback(error) if it never will; called at once
        # (no future, no turn of the event loop: the reply is on a write's critical path)
        self._waiters: deque = deque()
        self._last_ack_progress = time.monotonic()
        # the trouble state (guide §3.3.5.1): after losing the Active backup the primary commits
        # nothing new and answers no waiting write until the backup says it knows it is no
        # longer Active (it says hello again) or the trouble timeout (2 x QoS) passes
        self.trouble_since: float | None = None
        self._trouble_over: asyncio.Future | None = None
        self._trouble_of: str | None = None  # the backup whose loss put it there
        # Arbiter Controlled (guide §3.3.5.2): the trouble timeout does not apply; only the
        # failover watch (engine/member/failover_watch.py) or the backup's hello ends it
        self.trouble_held: str | None = None
        self.disconnected: dict[str, float] = {}  # member -> time its link dropped
        self.beats = 0  # heartbeat rounds sent; a member's answer names the last it read
        self.handshake = Handshake(self)
        self._tasks: list[asyncio.Task] = []

    @property
    def qos(self) -> float:
        """The QoS timeout in seconds, read afresh from the mirror's settings every time."""
        return self.membership.cfg.qos_timeout_ms / 1000.0

    @qos.setter
    def qos(self, seconds: float) -> None:
        self.membership.cfg.qos_timeout_ms = round(seconds * 1000)

    @property
    def in_trouble(self) -> bool:
        return self.trouble_since is not None

    def after_trouble(self) -> asyncio.Future | None:
        """While in trouble, a future done when it ends (the Writer holds new commits on it)."""
        return self._trouble_over if self.in_trouble else None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watchdog(), name="qos-watchdog"))
        self._tasks.append(loop.create_task(self._trouble_timer(), name="trouble-timer"))
        self._tasks.append(loop.create_task(self._heartbeats(), name="heartbeats"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for link in list(self.links.values()):
            link.close()
        # writes still waiting for the backup were never acknowledged by it: a backup that
        # takes over may not have them, so they are not reported as committed
        self._fail_waiters(
            RequestError(
                ErrorCode.UNAVAILABLE,
                "the primary stopped before its backup acknowledged this write: whether the "
                "mirror has it is unknown",
            )
        )
        self._end_trouble("the primary stops")

    # -- journal hook --------------------------------------------------------
    def on_append(self, data: bytes, pos) -> None:
        # a control record (a database added, removed, ...) is not held for asyncs: an
        # operator's next step on them may depend on it
        urgent = CONTROL_MARK in data
        for link in self.links.values():
            if not link.closed:
                link.on_append(pos, data, urgent)

    # -- links ---------------------------------------------------------------
    def accept(self, conn: Connection, frame: Frame) -> None:
        """A member's DC_HELLO (engine/replication/handshake.py)."""
        self.handshake.accept(conn, frame)

    def member_says_hello(self, name: str, known) -> bool:
        """Member `name` said hello and passed the handshake's identity checks (before its
        journal position is checked, whatever that check decides).  `known`: who was primary
        at which term, as it says.  A later term than this primary's means it missed a
        takeover: it stands down (False: refuse the member).  Otherwise, if the member is the
        backup whose loss put the primary in trouble, the trouble is over."""
        if self.membership.stand_down_if_later(known, name):
            return False
        if self.in_trouble and name == self._trouble_of:
            # its hello says it knows it is no longer Active (it starts from Synchronizing)
            self._end_trouble(f"backup {name} reconnected, no longer Active")
        return True

    def add_link(self, link: MemberLink) -> None:
        """The member's new data channel, in place of its old one if it still has one."""
        old = self.links.get(link.name)
        if old is not None:
            self.drop(old, "replaced by a new connection")
            old.close()
        self.links[link.name] = link
        self.disconnected.pop(link.name, None)

    def member_leaves(self, link: MemberLink) -> None:
        log.warning("member %s leaves the mirror", link.name)
        if self.membership.cfg.dynamic:
            self.gate.remove_member(link.name)
        link.close()

    def member_asks_demotion(self, link: MemberLink) -> None:
        """A backup asks to become a DR async (guide §5.6, "Demote to DR Member" on the
        backup): as this primary's own demote_member, refused the same way."""
        if not link.is_backup:
            # only a failover member has something to be demoted from; said once per link, so
            # that a member sending it again and again cannot fill the log
            if not link.demotion_refused:
                link.demotion_refused = True
                log.warning("member %s (%s) asked to be demoted: refused", link.name, link.type)
            return
        log.warning("member %s asks to be demoted to DR async", link.name)
        try:
            self.membership.admin("demote_member", {"member": link.name})
        except Refused as exc:
            log.warning("demotion of %s refused: %s", link.name, exc)
        except Exception:  # the link goes on: the member can ask again
            log.exception("demotion of %s failed", link.name)

    def drop(self, link: MemberLink, reason: str) -> None:
        if self.links.get(link.name) is link:
            del self.links[link.name]
            self.disconnected[link.name] = time.time()
            log.info("member %s disconnected: %s", link.name, reason)
            self.membership.link_changed()
        if self.active is link:
            member = self.membership.cfg.find(link.name)
            if member is not None and not member.is_failover:
                # demoted (engine/member/failover_ops.py): no longer a backup to wait for
                self.active = None
                self._release_waiters()
                log.warning("backup %s demoted: the primary no longer waits for it", link.name)
            else:
                self.revoke(f"disconnected ({reason})")

    # -- journal purge ----------------------------------------------------------
    def purge_journal(self) -> dict:
        """Remove journal files that neither a member nor a local replay can need: every
        configured member must be connected, and files from the oldest one still being
        read (a member's acked position, a store's applied position) on are kept."""
        membership = self.membership
        dismounted = [e.name for e in membership.catalog.entries.values() if not e.mounted]
        if dismounted:
            raise ValueError(
                f"cannot purge: database(s) {', '.join(dismounted)} dismounted; mounting "
                "replays the journal written meanwhile"
            )
        others = [m.name for m in membership.cfg.members if m.name != membership.member.name]
        missing = [n for n in others if n not in self.links or not self.links[n].live]
        if missing:
            raise ValueError(
                f"cannot purge: member(s) {', '.join(missing)} not connected and caught up; "
                "they may still need the journal files"
            )
        for store in membership.stores.values():
            store.sync()  # after this, a replay starts from the stores' applied positions
        needed = [membership.journal.end_position.file_seq]
        needed += [link.acked.file_seq for link in self.links.values() if link.acked is not None]
        needed += [
            s.applied_position.file_seq for s in membership.stores.values() if s.applied_position
        ]
        keep = min(needed)
        removed = membership.journal.purge(keep)
        log.info("journal purged before file %d: %s", keep, ", ".join(removed) or "nothing")
        return {"removed": removed, "kept_from_seq": keep}

    # -- acknowledgements and Active ------------------------------------------
    def on_ack(self, link: MemberLink, pos) -> None:
        """A checked acknowledgement (MemberLink.check_ack) from a link still open."""
        link.last_ack_at = time.time()
        if pos is None:
            return  # a member that holds no journal yet acknowledges nothing
        link.acked = pos
        if not link.is_backup:
            return
        if self.active is None:
            # Caught up = everything shipped before live streaming began is acknowledged.
            # (Not "acked == journal end": under steady load the end moves on forever.)
            if link.live and (link.live_from is None or pos >= link.live_from):
                self.active = link
                self._end_trouble(f"backup {link.name} is Active again")
                log.info("backup %s is Active", link.name)
                self._heartbeat(link)  # tell the backup now, not at the next heartbeat
            return
        if self.active is link:
            waiters = self._waiters
            progressed = False
            if trace.ENABLED:
                trace.mark("p.acked")
            while waiters and waiters[0][0] <= pos:
                waiters.popleft()[1](None)
                progressed = True
            if progressed:
                self._last_ack_progress = time.monotonic()

    def when_acknowledged(self, end, callback: Callable[[Exception | None], None]) -> None:
        """callback(None) once the Active backup holds the journal up to `end` (now, if there
        is none or it already does), or callback(error) if the primary stops first."""
        if self.active is None or end is None:
            callback(None)
            return
        if self.active.acked is not None and self.active.acked >= end:
            callback(None)
            return
        if not self._waiters:
            self._last_ack_progress = time.monotonic()
        self._waiters.append((end, callback, time.monotonic()))

    def _fail_waiters(self, exc: Exception) -> None:
        while self._waiters:
            self._waiters.popleft()[1](exc)

    def _release_waiters(self) -> None:
        while self._waiters:
            self._waiters.popleft()[1](None)

    def revoke(self, reason: str) -> None:
        """The Active backup is lost: the primary is in trouble (guide §3.3.5.1).  The writes
        waiting for that backup stay unanswered, and nothing new is committed, until the
        trouble ends: the backup may be taking over with what it acknowledged, and then
        those writes were never durable in the mirror."""
        link = self.active
        if link is None:
            return
        self.active = None
        log.warning("backup %s: Active status revoked: %s", link.name, reason)
        if self.trouble_since is None:
            self.trouble_since = time.time()
            self._trouble_over = asyncio.get_running_loop().create_future()
            self._trouble_of = link.name
            log.warning(
                "primary in trouble: no new commits until backup %s says it is no longer Active "
                "or %d ms (2 x QoS) pass",
                link.name,
                2 * self.membership.cfg.qos_timeout_ms,
            )

    def hold_trouble(self, why: str) -> None:
        """Be (or stay) in trouble with no timeout: the backup may be taking over."""
        if self.trouble_held is None:
            log.warning("primary in trouble with no timeout: %s", why)
        self.trouble_held = why
        if self.trouble_since is None:
            self.trouble_since = time.time()
            self._trouble_over = asyncio.get_running_loop().create_future()

    def release_trouble(self, why: str) -> None:
        """The held trouble is over (the backup is known not to take over)."""
        if self.trouble_held is not None:
            self.trouble_held = None
            self._end_trouble(why)

    def _end_trouble(self, why: str) -> None:
        if self.trouble_since is None:
            return
        self.trouble_held = None
        lasted = time.time() - self.trouble_since
        self.trouble_since = None
        log.warning("primary out of trouble after %.3f s: %s", lasted, why)
        if self.active is None:
            self._release_waiters()  # durable on the primary; no backup holds them now
        fut, self._trouble_over = self._trouble_over, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _trouble_timer(self) -> None:
        await self._every(lambda: TIMER_SLICE, self._check_trouble)

    def _check_trouble(self) -> None:
        # the timeout read afresh: a QoS lowered meanwhile shortens the trouble at once
        if self.trouble_held is not None:
            return
        if self.trouble_since is not None and time.time() - self.trouble_since >= 2 * self.qos:
            self._end_trouble("the trouble timeout (2 x QoS) passed")

    async def _every(self, period, action) -> None:
        """Run action() every period() seconds, period read afresh on every slice: a long
        period that is then shortened is cut short at once (never more than TIMER_SLICE)."""
        last = time.monotonic()
        while True:
            wait = last + period() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, TIMER_SLICE))
                continue
            last = time.monotonic()
            try:
                action()
            except Exception:  # a timer must outlive whatever went wrong in one round
                log.exception("%s failed", getattr(action, "__name__", "timer"))

    async def _watchdog(self) -> None:
        await self._every(lambda: self.qos / 2, self._check_qos)

    def _check_qos(self) -> None:
        link = self.active
        if link is None:
            return
        qos_ms = self.membership.cfg.qos_timeout_ms
        if self._waiters:
            waited = time.monotonic() - max(self._waiters[0][2], self._last_ack_progress)
            if waited >= self.qos / 2:
                self.revoke(f"no acknowledgement within the QoS timeout ({qos_ms} ms)")
                link.close()
        elif time.time() - link.last_ack_at >= self.qos:
            # idle: the backup acknowledges every heartbeat (QoS/4), so silence this long is a
            # lost link even with no write waiting (a partition closes nothing)
            self.revoke(f"nothing heard from it within the QoS timeout ({qos_ms} ms)")
            link.close()

    async def _heartbeats(self) -> None:
        await self._every(lambda: max(0.05, self.qos / 4), self._beat)

    def beat_now(self) -> int:
        """A heartbeat to every member at once: a "no failover" just set, or a failover mode
        being left, must reach the backup before the primary acts on it (guide §6.1.3,
        §3.3.5.2).  Returns the round's number, which the members' answers repeat."""
        self._beat()
        return self.beats

    def _beat(self) -> None:
        self.beats += 1
        for link in list(self.links.values()):
            if link.live and not link.closed:
                self._heartbeat(link)

    def _heartbeat(self, link: MemberLink) -> None:
        link.flush_held()  # the end it announces has been sent
        watch = self.membership.failover
        mode = watch.announced_mode if watch is not None else None
        end = pos_wire(self.membership.journal.end_position)
        no_failover = self.membership.fstate.no_failover
        body = [end, time.time(), self.active is link, no_failover, mode, self.beats]
        link.conn.write(encode_frame(MsgType.DC_HEARTBEAT, 0, body))
