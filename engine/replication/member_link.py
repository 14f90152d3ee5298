"""One member's data channel as the primary sees it (MemberLink): catch-up, then live.

The handshake (engine/replication/handshake.py) makes a link at the journal position where
the member starts.  The link first ships catch-up from the journal files (JournalReader), then
switches to live streaming: every batch the journal appends is handed over (Journal.on_append,
through the Replicator in engine/replication/sender.py) before its fsync completes and written
to each live link, so shipping overlaps the local fsync.

Acknowledgements are checked (MemberLink.check_ack): a member can only acknowledge journal
the primary has sent on that link, and its acknowledgements never go backwards.  An ack
outside that range cannot come from a member that follows the protocol; it closes the link
with a warning and counts for nothing (neither durability nor the Active flag).  What a
possible ack means (durability, Active, trouble: guide §3.3.5.1) is the Replicator's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import TYPE_CHECKING

from engine.replication.compression import compress
from engine.storage.journal_codec import make_position, pos_from_wire
from engine.wire.protocol import (
    ErrorCode,
    Frame,
    MsgType,
    encode_raw_frame,
    error_frame,
    pack,
    unpack,
)

if TYPE_CHECKING:
    from engine.member.session import Connection
    from engine.replication.sender import Replicator

log = logging.getLogger("engine.replication.sender")
CATCHUP_CHUNK = 1024 * 1024
HIGH_WATER = 8 * 1024 * 1024  # pause catch-up reads while this much is unsent
# How far an acknowledgement may go back from the link's previous one, in bytes of the same
# journal file: none.  Acks are cumulative (the member's journal end), they travel in order on
# one TCP connection, and a member's journal only grows during a session (a cut is made
# before its first ack), so a smaller ack than before means a confused or forged peer.
ACK_REGRESSION_TOLERANCE = 0
# How long catch-up may find no whole record where the journal has bytes (a position inside a
# record: never a real member's) before it gives up on the link.  Bytes being appended show up
# within milliseconds.
CATCHUP_STALL_S = 5.0
# Asyncs get live journal in chunks gathered for at most this long (or this big): one frame,
# one send and one ack per chunk instead of per batch.  Only the backup's copy decides when a
# write is done, so an async's lag grows by at most the hold and the writers' path does not
# pay a send per async per batch (docs/performance.md, fan-out).
ASYNC_HOLD_S = 0.02
ASYNC_HOLD_BYTES = 256 * 1024


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
        self.demotion_refused = False  # a DC_DEMOTE from a non-failover member, logged once
        self.codec = codec
        self.position = position  # where the member's journal ended when it connected
        self.acked = position
        self.sent_end = position  # the end of the journal sent on this link (or held before)
        self.pending: list | None = []  # live batches queued while catching up
        self.live_from = None  # journal position where live streaming took over
        self.connected_at = time.time()
        self.last_ack_at = time.time()
        # what the member said with its last answer to a heartbeat: the failover mode it heard
        # from this primary and that heartbeat's round (Replicator.beat_now)
        self.heard: dict = {}
        self.closed = False
        self.bytes_journal = 0
        self.bytes_network = 0
        self.task: asyncio.Task | None = None
        self._held: list[bytes] = []  # an async's live batches not yet sent, contiguous
        self._held_at = None  # the journal position of the first
        self._held_bytes = 0
        self._hold_timer: asyncio.TimerHandle | None = None
        # where in each hold period this link's chunk leaves: spread by name, stable
        self._hold_phase = zlib.crc32(name.encode()) % 1000 / 1000 * ASYNC_HOLD_S

    @property
    def live(self) -> bool:
        return self.pending is None

    # -- shipping journal ----------------------------------------------------
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

    def on_append(self, pos, data: bytes, urgent: bool = False) -> None:
        if self.pending is not None:
            self.pending.append((pos, data))
        elif self.is_backup:
            self.send(pos, data)
        else:
            self._hold(pos, data)
            if urgent:
                self.flush_held()

    def _hold(self, pos, data: bytes) -> None:
        start = self._held_at
        if start is not None and (
            pos.file_seq != start.file_seq or pos.offset != start.offset + self._held_bytes
        ):
            self.flush_held()  # a new journal file (or a gap): a chunk holds one run of bytes
        if self._held_at is None:
            self._held_at = pos
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= ASYNC_HOLD_BYTES:
            self.flush_held()
        elif self._hold_timer is None:
            loop = asyncio.get_running_loop()
            # each async flushes at its own phase of the hold period, so the chunks of many
            # asyncs do not all leave in the same turn of the loop (a stall for the writers)
            wait = ASYNC_HOLD_S - (loop.time() - self._hold_phase) % ASYNC_HOLD_S
            self._hold_timer = loop.call_later(wait, self.flush_held)

    def flush_held(self) -> None:
        """Send an async's held batches now, as one chunk."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self._held_at is None:
            return
        pos, data = self._held_at, b"".join(self._held)
        self._held, self._held_at, self._held_bytes = [], None, 0
        if not self.closed:
            self.send(pos, data)

    async def catch_up(self) -> None:
        """Ship the journal from the member's position up to where live streaming takes over
        (the first batch appended meanwhile), then the batches held in `pending`, then go live.
        Run as the link's task from the handshake."""
        journal = self.rep.membership.journal
        reader = self.rep.membership.journal_reader()
        cursor = self.position if self.position is not None else reader.start_position()
        stalled = None  # since when no whole record was found at the cursor
        try:
            while not self.closed:
                target = self.pending[0][0] if self.pending else journal.end_position
                if target is None or cursor >= target:
                    break
                data, nxt = await asyncio.to_thread(reader.read_from, cursor, CATCHUP_CHUNK)
                if data or nxt != cursor:
                    stalled = None
                else:
                    stalled = stalled or time.monotonic()
                    if time.monotonic() - stalled > CATCHUP_STALL_S:
                        self._stalled(cursor)
                        return
                if data:
                    self.send(cursor, data)
                elif nxt == cursor:
                    await asyncio.sleep(0.001)  # bytes handed to us but not yet in the file
                cursor = nxt
                while not self.closed and self.conn.transport.get_write_buffer_size() > HIGH_WATER:
                    await asyncio.sleep(0.005)
            if self.closed:
                return
            for pos, data in self.pending:
                end = pos.__class__(pos.file_seq, pos.offset + len(data))
                if end <= cursor:
                    continue
                if pos < cursor:
                    data = data[cursor.offset - pos.offset :]
                    pos = cursor
                self.send(pos, data)
                cursor = end
            self.pending = None
            self.live_from = cursor
            log.info("member %s caught up to %s, now streaming live", self.name, cursor)
        except Exception:
            log.exception("catch-up of member %s failed", self.name)
            self.close()

    def _stalled(self, cursor) -> None:
        reason = (
            f"cannot catch up: no whole journal record at {cursor} within "
            f"{CATCHUP_STALL_S:g} s (a position inside a record?)"
        )
        log.warning("data channel from %s (%s): %s", self.name, self.conn.peer, reason)
        self.conn.write(error_frame(0, ErrorCode.PROTOCOL, reason))
        self.rep.drop(self, "catch-up stalled")
        self.close()

    # -- what the member sends -------------------------------------------------
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

    def on_frame(self, frame: Frame) -> None:
        if self.closed:
            return  # frames read in the same batch as the one that closed the link
        try:
            args = unpack(frame.body)
            if frame.type == MsgType.DC_ACK:
                if not isinstance(args, list) or not args:
                    raise ValueError("DC_ACK body must be [position] or [position, heard]")
                pos = pos_from_wire(args[0])
                reason = self.check_ack(pos)
                if reason is not None:
                    self.refuse_ack(frame, reason)
                    return
                if len(args) > 1 and isinstance(args[1], dict):
                    self.heard = args[1]
                    self.rep.membership.link_changed()  # a mode switch may wait for this
                self.rep.on_ack(self, pos)
            elif frame.type == MsgType.DC_HEARTBEAT:
                self.last_ack_at = time.time()
            elif frame.type == MsgType.DC_LEAVE:
                self.rep.member_leaves(self)
            elif frame.type == MsgType.DC_DEMOTE:
                self.rep.member_asks_demotion(self)
            else:
                raise ValueError(f"unexpected message {MsgType(frame.type).name} on a data channel")
        except ValueError as exc:
            log.warning("data channel from %s (%s): %s", self.name, self.conn.peer, exc)
            self.conn.write(error_frame(frame.req_id, ErrorCode.PROTOCOL, str(exc)))

    # -- the end -------------------------------------------------------------
    def connection_lost(self) -> None:
        self.closed = True
        self.flush_held()  # drops them: the member catches up from its own end next time
        self.rep.drop(self, "connection closed")

    def close(self) -> None:
        self.closed = True
        self.flush_held()
        self.conn.close()
