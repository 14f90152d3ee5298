"""Primary side of replication: one MemberLink per connected backup/async.

A member opens a data channel (DC_HELLO with its journal end position).  The link first
ships catch-up from the journal files (JournalReader), then switches to live streaming:
every batch the journal appends is handed over (Journal.on_append) before its fsync
completes and written to each live link, so shipping overlaps the local fsync.

The backup is synchronous: once caught up and acknowledged it becomes Active, and a
client write is answered only when the Active backup has acknowledged its end position
(Writer asks ack_waiter()).  If no ack arrives within the QoS timeout (checked every
QoS/2, so the effective window is QoS/2..QoS as in guide §4.15) the primary revokes
Active, disconnects the backup and is in trouble (guide §3.3.5.1): nothing new is committed
and no waiting write is answered until the backup says hello again or 2 x QoS pass; then it
carries on without an Active backup, and the backup catches up.
The timers (the QoS watchdog, the heartbeats) read qos_timeout_ms afresh on every round and
never sleep longer than TIMER_SLICE at a time, so a lowered QoS takes effect within one new
interval, however long the old one was.

Acknowledgements are checked (MemberLink.check_ack): a member can only acknowledge journal
the primary has sent on that link, and its acknowledgements never go backwards.  An ack
outside that range cannot come from a member that follows the protocol; it closes the link
with a warning and counts for nothing (neither durability nor the Active flag).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING

from cryptography.x509.oid import NameOID

from engine.replication.compression import choose_codec, compress
from engine.replication.gate import JoinRefused, MembershipGate
from engine.storage.journal import list_files, tail_digest
from engine.storage.journal_codec import make_position, pos_from_wire, pos_wire
from engine.wire import mirror_secret, trace
from engine.wire.protocol import (
    ErrorCode,
    Frame,
    MsgType,
    RequestError,
    encode_frame,
    encode_raw_frame,
    error_frame,
    pack,
    unpack,
)
from engine.wire.tls import peer_certificate

if TYPE_CHECKING:
    from engine.member.membership import Membership
    from engine.member.session import Connection

log = logging.getLogger("engine.replication.sender")
CATCHUP_CHUNK = 1024 * 1024
HIGH_WATER = 8 * 1024 * 1024  # pause catch-up reads while this much is unsent
# The longest a timer sleeps before it reads its setting again: a lowered qos_timeout_ms
# takes effect within this much (and within one new interval) whatever the old one was.
TIMER_SLICE = 0.25
# How far an acknowledgement may go back from the link's previous one, in bytes of the same
# journal file: none.  Acks are cumulative (the member's journal end), they travel in order on
# one TCP connection, and a member's journal only grows during a session (a cut is made
# before its first ack), so a smaller ack than before means a confused or forged peer.
ACK_REGRESSION_TOLERANCE = 0
# How long catch-up may find no whole record where the journal has bytes (a position inside a
# record: never a real member's) before it gives up on the link.  Bytes being appended show up
# within milliseconds.
CATCHUP_STALL_S = 5.0


def _check_peer(conn: Connection, name: str) -> None:
    """With TLS the certificate, not the HELLO, says who connected: its CN must be the member."""
    ssl_object = conn.transport.get_extra_info("ssl_object") if conn.transport else None
    cert = peer_certificate(ssl_object) if ssl_object is not None else None
    if cert is None:
        raise ValueError("no client certificate on a mirror that requires TLS")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if name not in cns:
        raise ValueError(f"certificate {cert.subject.rfc4514_string()!r} is not member {name}'s")


class MemberLink:
    """One member's data channel as seen by the primary."""

    def __init__(
        self, rep: Replicator, conn: Connection, name: str, mtype: str, codec: str | None, position
    ):
        self.rep = rep
        self.conn = conn
        self.name = name
        self.type = mtype
        self.is_backup = mtype == "failover"
        self.codec = codec
        self.position = position  # where the member's journal ended when it connected
        self.acked = position
        self.sent_end = position  # the end of the journal sent on this link (or held before)
        self.pending: list | None = []  # live batches queued while catching up
        self.live_from = None  # journal position where live streaming took over
        self.connected_at = time.time()
        self.last_ack_at = time.time()
        self.member_status: dict = {}
        self.closed = False
        self.bytes_journal = 0
        self.bytes_network = 0
        self.task: asyncio.Task | None = None

    @property
    def live(self) -> bool:
        return self.pending is None

    def send(self, pos, data: bytes) -> None:
        payload = compress(self.codec, data) if self.codec else data
        self.bytes_journal += len(data)
        self.bytes_network += len(payload)
        body = pack(
            [
                pos.file_seq,
                pos.offset,
                len(data),
                self.codec,
                payload,
                time.time(),
                self.rep.active is self,
            ]
        )
        self.conn.write(encode_raw_frame(MsgType.DC_JOURNAL, 0, body))
        end = make_position(pos.file_seq, pos.offset + len(data))
        if self.sent_end is None or end > self.sent_end:
            self.sent_end = end

    def check_ack(self, pos) -> str | None:
        """Why an acknowledgement of `pos` is impossible on this link (None: it is possible).

        Possible: from the previous ack (at first the member's own journal end, as its hello
        said) up to the end of what this link has sent.  Anything else never reached this
        member from us, or contradicts what it acknowledged already.
        """
        if pos is None:
            # a member with no journal yet, before its first chunk: holds nothing
            return None if self.acked is None else f"no position, after acknowledging {self.acked}"
        sent = self.sent_end
        if sent is None:
            return f"{pos} acknowledged beyond the end sent: nothing was sent on this link"
        if pos > sent:
            return f"{pos} acknowledged beyond the end sent on this link ({sent})"
        prev = self.acked
        if prev is not None and pos < prev:
            same_file = pos.file_seq == prev.file_seq
            if not same_file or prev.offset - pos.offset > ACK_REGRESSION_TOLERANCE:
                return f"{pos} acknowledged backwards, after {prev}"
        return None

    def refuse_ack(self, frame: Frame, reason: str) -> None:
        """An impossible ack: log it, tell the peer, drop the link (revoking Active)."""
        log.warning(
            "data channel from %s (%s): impossible acknowledgement, closing the link: %s",
            self.name,
            self.conn.peer,
            reason,
        )
        self.conn.write(
            error_frame(frame.req_id, ErrorCode.PROTOCOL, f"impossible acknowledgement: {reason}")
        )
        self.rep.drop(self, "impossible acknowledgement")
        self.close()

    def on_append(self, pos, data: bytes) -> None:
        if self.pending is None:
            self.send(pos, data)
        else:
            self.pending.append((pos, data))

    def on_frame(self, frame: Frame) -> None:
        if self.closed:
            return  # frames read in the same batch as the one that closed the link
        try:
            args = unpack(frame.body)
            if frame.type == MsgType.DC_ACK:
                if not isinstance(args, list) or not args:
                    raise ValueError("DC_ACK body must be [position, status]")
                pos = pos_from_wire(args[0])
                reason = self.check_ack(pos)
                if reason is not None:
                    self.refuse_ack(frame, reason)
                    return
                if len(args) > 1 and isinstance(args[1], dict):
                    self.member_status = args[1]
                self.rep.on_ack(self, pos)
            elif frame.type == MsgType.DC_HEARTBEAT:
                self.last_ack_at = time.time()
            elif frame.type == MsgType.DC_LEAVE:
                self.rep.member_leaves(self)
            else:
                raise ValueError(f"unexpected message {MsgType(frame.type).name} on a data channel")
        except ValueError as exc:
            log.warning("data channel from %s (%s): %s", self.name, self.conn.peer, exc)
            self.conn.write(error_frame(frame.req_id, ErrorCode.PROTOCOL, str(exc)))

    def connection_lost(self) -> None:
        self.closed = True
        self.rep.drop(self, "connection closed")

    def close(self) -> None:
        self.closed = True
        self.conn.close()


class Replicator:
    def __init__(self, membership: Membership, gate: MembershipGate):
        self.membership = membership
        self.gate = gate
        self.links: dict[str, MemberLink] = {}
        self.active: MemberLink | None = None
        self._waiters: deque = deque()  # (end position, future, started) in position order
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
        self.refused: dict[str, str] = {}  # member -> why its last data channel was refused
        # connection -> (primary nonce, member nonce, name) of a challenge awaiting its proof
        self.challenges: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
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
        for link in self.links.values():
            if not link.closed:
                link.on_append(pos, data)

    # -- handshake -----------------------------------------------------------
    def accept(self, conn: Connection, frame: Frame) -> None:
        cfg = self.membership.cfg
        try:
            hello = unpack(frame.body)
            if not isinstance(hello, dict):
                raise ValueError("DC_HELLO body must be a map")
            if hello.get("mirror") != cfg.name:
                raise ValueError(
                    f"mirror {hello.get('mirror')!r} is not this member's mirror {cfg.name}"
                )
            name = str(hello.get("member"))
            proof = None
            if cfg.secret is not None and not cfg.tls:
                proof = self._check_secret(conn, frame, hello, name)
                if proof is None:
                    return  # challenged: the proof comes in a second hello
            member = cfg.find(name) or self.gate.register_join(conn, name, hello.get("join"))
            if member.name == self.membership.member.name:
                raise ValueError("a member cannot connect to itself")
            if cfg.dynamic:
                self.gate.check_identity(conn, member, hello)
            elif cfg.tls:
                _check_peer(conn, member.name)
            codecs = hello.get("codecs") or []
            if not isinstance(codecs, list):
                raise ValueError("codecs must be a list")
            position = pos_from_wire(hello.get("position"))
            if position is not None and (position.file_seq < 0 or position.offset < 0):
                raise ValueError(f"journal position {position} is negative")
        except JoinRefused as exc:
            # a member awaiting authorization asks twice a second: log each reason once
            reason = f"data channel refused: {exc}"
            quiet = self.refused.get(name) == reason
            if cfg.find(name) is not None:  # a stranger's names must not pile up here
                self.refused[name] = reason
            conn.reject_stream(reason, frame.req_id, quiet=quiet)
            return
        except RequestError as exc:  # a join the mirror cannot take (guide §3.1.2)
            conn.reject_stream(f"join refused: {exc.message}", frame.req_id)
            return
        except ValueError as exc:  # ConfigError is a ValueError
            conn.reject_stream(f"bad data channel handshake: {exc}", frame.req_id)
            return
        self.refused.pop(member.name, None)
        if self.in_trouble and member.name == self._trouble_of:
            # its hello says it knows it is no longer Active (it starts from Synchronizing)
            self._end_trouble(f"backup {member.name} reconnected, no longer Active")
        to_backup = member.is_failover
        mode = cfg.failover_compression if to_backup else cfg.async_compression
        ctype = cfg.failover_compression_type if to_backup else cfg.async_compression_type
        codec = choose_codec(mode, ctype, to_backup, cfg.tls, set(codecs))
        end = self.membership.journal.end_position
        cut = self._cut_for(position)
        if cut is not None:
            log.warning(
                "member %s has journal beyond ours (%s): it must cut at %s",
                member.name,
                position,
                cut,
            )
            position = cut
        elif position is not None and end is not None and position > end:
            conn.reject_stream(
                f"member journal position {position} is ahead of the primary's {end}", frame.req_id
            )
            return
        gap = self._gap_for(position)
        if gap is not None:
            conn.reject_stream(gap, frame.req_id)
            return
        if cut is None and not self._same_journal(position, hello.get("tail")):
            conn.reject_stream(
                f"data channel refused: member {member.name}'s journal before {position} is not "
                "the primary's: its data is inconsistent with the mirror; rebuild it (guide "
                "§5.7)",
                frame.req_id,
            )
            return
        old = self.links.get(member.name)
        if old is not None:
            self.drop(old, "replaced by a new connection")
            old.close()
        link = MemberLink(self, conn, member.name, member.type, codec, position)
        conn.data_link = link
        self.links[member.name] = link
        self.disconnected.pop(member.name, None)
        conn.write(
            encode_frame(
                MsgType.DC_WELCOME,
                frame.req_id,
                {
                    "primary": self.membership.member.name,
                    "term": self.membership.fstate.term,  # engine/failover/state.py
                    "codec": codec,
                    "end": pos_wire(end),
                    "qos_ms": cfg.qos_timeout_ms,
                    "cut": pos_wire(cut),
                    # what the journal before the cut holds here, for the member to compare
                    "cut_tail": self._tail(cut),
                    # the primary's mirrored databases (missing / Orphaned on the member)
                    "databases": self.membership.catalog.wire(),
                    "config": self.gate.config_wire() if cfg.dynamic else None,
                    "proof": proof,  # the primary's own proof of the mirror secret
                },
            )
        )
        log.info(
            "member %s (%s) connected from %s at %s, codec %s",
            member.name,
            member.type,
            conn.peer,
            position,
            codec,
        )
        link.task = asyncio.get_running_loop().create_task(
            self._catch_up(link), name=f"catchup-{member.name}"
        )

    def _check_secret(self, conn: Connection, frame: Frame, hello: dict, name: str):
        """Without TLS a member proves the mirror secret (engine/wire/mirror_secret.py) before
        anything in its hello counts, its name included.  None when a challenge was sent and
        the proof is awaited; else the primary's own proof, for DC_WELCOME."""
        cfg = self.membership.cfg
        try:
            member_nonce = mirror_secret.check_nonce(hello.get("nonce"))
        except mirror_secret.SecretError as exc:
            raise JoinRefused(
                f"member {name} did not begin the mirror secret handshake ({exc})"
            ) from None
        challenged = self.challenges.pop(conn, None)
        if challenged is None:
            primary_nonce = mirror_secret.new_nonce()
            self.challenges[conn] = (primary_nonce, member_nonce, name)
            conn.write(encode_frame(MsgType.DC_CHALLENGE, frame.req_id, {"nonce": primary_nonce}))
            return None
        primary_nonce, first_nonce, first_name = challenged
        expected = mirror_secret.member_proof(
            cfg.secret, cfg.name, name, member_nonce, primary_nonce
        )
        if (first_nonce, first_name) != (member_nonce, name) or not mirror_secret.same(
            expected, hello.get("proof")
        ):
            raise JoinRefused(f"member {name} did not prove the mirror secret")
        me = self.membership.member.name
        return mirror_secret.primary_proof(cfg.secret, cfg.name, me, member_nonce, primary_nonce)

    async def _catch_up(self, link: MemberLink) -> None:
        journal = self.membership.journal
        reader = self.membership.journal_reader()
        cursor = link.position if link.position is not None else reader.start_position()
        stalled = None  # since when no whole record was found at the cursor
        try:
            while not link.closed:
                target = link.pending[0][0] if link.pending else journal.end_position
                if target is None or cursor >= target:
                    break
                data, nxt = await asyncio.to_thread(reader.read_from, cursor, CATCHUP_CHUNK)
                if data or nxt != cursor:
                    stalled = None
                else:
                    stalled = stalled or time.monotonic()
                    if time.monotonic() - stalled > CATCHUP_STALL_S:
                        self._stalled(link, cursor)
                        return
                if data:
                    link.send(cursor, data)
                elif nxt == cursor:
                    await asyncio.sleep(0.001)  # bytes handed to us but not yet in the file
                cursor = nxt
                while not link.closed and link.conn.transport.get_write_buffer_size() > HIGH_WATER:
                    await asyncio.sleep(0.005)
            if link.closed:
                return
            for pos, data in link.pending:
                end = pos.__class__(pos.file_seq, pos.offset + len(data))
                if end <= cursor:
                    continue
                if pos < cursor:
                    data = data[cursor.offset - pos.offset :]
                    pos = cursor
                link.send(pos, data)
                cursor = end
            link.pending = None
            link.live_from = cursor
            log.info("member %s caught up to %s, now streaming live", link.name, cursor)
        except Exception:
            log.exception("catch-up of member %s failed", link.name)
            link.close()

    def _stalled(self, link: MemberLink, cursor) -> None:
        reason = (
            f"cannot catch up: no whole journal record at {cursor} within "
            f"{CATCHUP_STALL_S:g} s (a position inside a record?)"
        )
        log.warning("data channel from %s (%s): %s", link.name, link.conn.peer, reason)
        link.conn.write(error_frame(0, ErrorCode.PROTOCOL, reason))
        self.drop(link, "catch-up stalled")
        link.close()

    def _gap_for(self, position) -> str | None:
        """Why catch-up cannot start at `position`, a member's journal end: it lies in a
        journal file this primary does not have (purged, or never written).  None if it can."""
        if position is None:
            return None
        files = dict(list_files(self.membership.journal_dir, self.membership.cfg.name))
        if files and position.file_seq not in files:
            return (
                f"member journal position {position} is in journal file {position.file_seq}, "
                "which the primary does not have (purged?)"
            )
        return None

    def _tail(self, position) -> str | None:
        return tail_digest(self.membership.journal_dir, self.membership.cfg.name, position)

    def _same_journal(self, position, theirs) -> bool:
        """The member's journal just before its end holds what ours holds there (compared
        by content: equal lengths prove nothing after a failover, guide §3.3.2).  True when
        either side has nothing to compare."""
        ours = self._tail(position)
        return ours is None or not isinstance(theirs, str) or ours == theirs

    def _cut_for(self, position):
        """Where a member's journal must be cut to be a prefix of ours, or None if it is one
        (as far as lengths tell).  A member can hold bytes we lost: a batch is shipped just
        before it is written here, and kill -9 can fall in between."""
        if position is None:
            return None
        end = self.membership.journal.end_position
        seq, offset = position
        if seq == end.file_seq:
            return end if offset > end.offset else None
        if seq > end.file_seq:
            return None  # files we never had: refused as "ahead"
        files = dict(list_files(self.membership.journal_dir, self.membership.cfg.name))
        if seq not in files:
            return None  # purged here; nothing to compare with
        size = os.path.getsize(self.membership.journal_dir / files[seq])
        return position.__class__(seq, size) if offset > size else None

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
                fut = waiters.popleft()[1]
                if not fut.done():
                    fut.set_result(None)
                progressed = True
            if progressed:
                self._last_ack_progress = time.monotonic()

    def ack_waiter(self, end) -> asyncio.Future | None:
        if self.active is None or end is None:
            return None
        if self.active.acked is not None and self.active.acked >= end:
            return None
        fut = asyncio.get_running_loop().create_future()
        if not self._waiters:
            self._last_ack_progress = time.monotonic()
        self._waiters.append((end, fut, time.monotonic()))
        return fut

    def _fail_waiters(self, exc: Exception) -> None:
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(exc)

    def _release_waiters(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_result(None)

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

    def member_leaves(self, link: MemberLink) -> None:
        log.warning("member %s leaves the mirror", link.name)
        if self.membership.cfg.dynamic:
            self.gate.remove_member(link.name)
        link.close()

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

    def beat_now(self) -> None:
        """A heartbeat to every member at once: a "no failover" just set must reach the
        backup before the primary may stop (guide §6.1.3)."""
        self._beat()

    def _beat(self) -> None:
        for link in list(self.links.values()):
            if link.live and not link.closed:
                self._heartbeat(link)

    def _heartbeat(self, link: MemberLink) -> None:
        end = pos_wire(self.membership.journal.end_position)
        no_failover = self.membership.fstate.no_failover
        body = [end, time.time(), self.active is link, no_failover]
        link.conn.write(encode_frame(MsgType.DC_HEARTBEAT, 0, body))
