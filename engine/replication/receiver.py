"""Member side of replication (backup and asyncs): the data channel to the primary.

Connects to the primary's mirror private address (asyncs fall back to its superserver
address), says where its own journal ends, then receives journal bytes: each chunk is
written verbatim into the member's own journal file at the same file/offset (so
positions are identical on every member), acknowledged, and queued for dejournaling.
The backup acknowledges receipt of every chunk at once; the primary waits for that ack.
The session's silence watchdog reads qos_timeout_ms afresh and sleeps at most TIMER_SLICE at
a time, so a lowered QoS takes effect at once (engine/replication/sender.py does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from typing import TYPE_CHECKING

from engine import rules
from engine.replication.compression import decompress
from engine.replication.gate import JoinRefused, MembershipGate
from engine.storage.journal import tail_digest
from engine.storage.journal_codec import pos_from_wire, pos_wire
from engine.wire import mirror_secret, trace
from engine.wire.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    FrameError,
    MsgType,
    encode_frame,
    read_frame,
    unpack,
)
from engine.wire.tls import describe_ssl_error, peer_dn

if TYPE_CHECKING:
    from engine.member.config import Address, MemberConfig
    from engine.member.membership import Membership

log = logging.getLogger("engine.replica")
SYNC_INTERVAL = 0.05
# An async's copy is not part of any write's durability: it syncs less often, so that a dozen
# of them do not fill the disk's queue with flushes ahead of the primary's commit
# (docs/performance.md, fan-out)
ASYNC_SYNC_INTERVAL = 0.5
TIMER_SLICE = 0.25  # the longest the silence watchdog sleeps before reading its setting again


class NotThePrimary(Exception):
    """The member asked is not the primary (now): ask the next candidate."""


class ReplicaLink:
    def __init__(self, membership: Membership, gate: MembershipGate):
        self.membership = membership
        self.gate = gate
        self.connected = False
        self.caught_up_once = False
        self.active = False
        self.active_when_lost = False  # it was Active when its link to the primary was lost
        self.primary_no_failover = False  # the primary's "no failover", as last heard
        # the primary's failover mode as its last heartbeat announced it (this session; kept
        # after a break, for the takeover decision: engine/failover/modes.py)
        self.primary_mode: str | None = None
        self.disconnected_at: float | None = None
        self.primary_name: str | None = None
        self.primary_end = None
        self.primary_time: float | None = None
        self.last_block_time: float | None = None  # timestamp of the last record received
        self.received = membership.journal.end_position
        self.codec: str | None = None
        self.bytes_network = 0
        self.bytes_journal = 0
        self.stopped = False
        self._task: asyncio.Task | None = None
        self._sync_task: asyncio.Task | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ssl = membership.tls_client_context()
        self.candidate: MemberConfig | None = None  # the member asked (or followed) now
        self.refusal: str | None = None  # why the primary last refused this member
        self.refusals = 0  # data channels the primary refused since this process started

    @property
    def qos(self) -> float:
        """The QoS timeout in seconds, read afresh from the mirror's settings every time."""
        return self.membership.cfg.qos_timeout_ms / 1000.0

    @qos.setter
    def qos(self, seconds: float) -> None:
        self.membership.cfg.qos_timeout_ms = round(seconds * 1000)

    def silence_timeout(self) -> float:
        """How long the primary may say nothing before the link is given up: the backup must
        hear from it within QoS; asyncs are more patient."""
        if self.membership.member.is_failover:
            return self.qos
        return max(self.qos * 3, 10.0)

    @property
    def caught_up(self) -> bool:
        return (
            self.connected
            and self.primary_end is not None
            and self.received is not None
            and (self.received >= self.primary_end)
        )

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="replica")
        self._sync_task = loop.create_task(self._sync_loop(), name="journal-sync")

    async def _sync_loop(self) -> None:
        """Make received journal durable shortly after it arrives.  Acks do not wait for
        this (the backup acknowledges receipt, guide §3.3.2.1), but a restarted member should not
        have to fetch again what it already had."""
        every = SYNC_INTERVAL if self.membership.member.is_failover else ASYNC_SYNC_INTERVAL
        while True:
            await asyncio.sleep(every)
            if self.membership.rebuilding:
                continue
            try:
                await self.membership.journal.sync()
            except Exception:
                log.exception("journal sync failed")

    async def stop(self) -> None:
        self.stopped = True
        if self._sync_task is not None:
            self._sync_task.cancel()
        if self._writer is not None:
            self._writer.transport.abort()  # ends a session that missed its cancellation
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def refresh_tls(self) -> None:
        self._ssl = self.membership.tls_client_context()

    def reconnect(self) -> None:
        """Drop the data channel; the loop opens a new one (new TLS files or settings)."""
        self.refresh_tls()
        if self._writer is not None:
            self._writer.transport.abort()

    def ask_demotion(self) -> None:
        """Ask the primary to make this backup a DR async; the new configuration it sends
        back restarts this membership in that type."""
        self._writer.write(encode_frame(MsgType.DC_DEMOTE, 0, []))

    def leave(self) -> None:
        """Tell the primary this member leaves the mirror, then stop."""
        if self._writer is not None:
            self._writer.write(encode_frame(MsgType.DC_LEAVE, 0, []))
        self.stopped = True

    def candidates(self) -> list[tuple[MemberConfig, Address]]:
        """Where the primary may be: every member but this one, the one known as primary
        first, then the failover members (roles change by failover, so it is asked rather
        than assumed).  Asyncs last: a DR async promoted while no primary ran is primary
        before this member's configuration says so (docs/takeover.md "Promotion with no
        primary"); a member that is not the primary answers not_primary at once."""
        membership = self.membership
        known = membership.primary_member()
        failover = [m for m in membership.cfg.failover_members if m is not known]
        others = [m for m in membership.cfg.members if m is not known and not m.is_failover]
        members = [known, *failover, *others]
        out = []
        for m in members:
            if m.name == membership.member.name:
                continue
            if m.private:
                out.append((m, m.private))
            if not membership.member.is_failover and not membership.cfg.tls:
                out.append((m, m.superserver))  # asyncs fall back to the superserver address
        return out

    async def _run(self) -> None:
        delay = 0.05
        while not self.stopped:
            for member, addr in self.candidates():
                self.candidate = member
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(addr.host, addr.port, ssl=self._ssl), 2.0
                    )
                except (TimeoutError, OSError) as exc:  # ssl.SSLError is an OSError
                    if self._ssl is not None and not isinstance(exc, ConnectionRefusedError):
                        log.warning(
                            "TLS connection to %s failed: %s", addr, describe_ssl_error(exc)
                        )
                    continue
                delay = 0.05
                try:
                    await self._session(reader, writer)
                    if self.stopped:
                        return
                except NotThePrimary:
                    writer.close()
                    continue  # ask the next one
                except JoinRefused as exc:
                    self.refusals += 1
                    if self.refusal != str(exc):
                        log.warning("%s", exc)
                    self.refusal = str(exc)
                    delay = 0.5  # an operator's decision is awaited: ask twice a second
                except (
                    TimeoutError,
                    OSError,
                    asyncio.IncompleteReadError,
                    FrameError,
                    ValueError,
                ) as exc:
                    log.warning(
                        "data channel to primary at %s lost: %s", addr, exc or type(exc).__name__
                    )
                except Exception:
                    # e.g. a journal gap: log it and retry; the loop itself must never die
                    log.exception("data channel to primary at %s failed", addr)
                    delay = 1.0
                finally:
                    self._mark_disconnected()
                    writer.close()
                break
            await asyncio.sleep(delay * (1 + random.random() / 4))
            delay = min(delay * 2, 1.0)

    def _mark_disconnected(self) -> None:
        if self.connected:
            self.active_when_lost = self.active  # what a takeover decision needs to know
            self.membership.link_changed()
        if self.connected or self.disconnected_at is None:
            self.disconnected_at = time.time()
        self.connected = False
        self.active = False
        self._writer = None

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        membership = self.membership
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.gate.check_primary_dn(peer_dn(ssl_object))
        hello = {
            "mirror": membership.cfg.name,
            "member": membership.member.name,
            "type": membership.member.type,
            "codecs": membership.member.codecs,
            "position": pos_wire(membership.journal.end_position),
            # what its journal holds just before that, for the primary to compare
            "tail": tail_digest(
                membership.journal_dir, membership.cfg.name, membership.journal.end_position
            ),
            "version": PROTOCOL_VERSION,
            # who was primary at which term, as it knows: a primary that missed a later one
            # stands down rather than end its trouble on this hello (engine/replication/sender.py)
            "failover_state": membership.fstate.to_wire(),
        }
        if membership.cfg.dynamic:
            me = membership.member
            hello["join"] = {
                "type": me.type,
                "superserver": str(me.superserver),
                "private": None if me.private is None else str(me.private),
                "agent": me.agent,
                "agent_cert_sha256": me.agent_cert_sha256,
                "join_id": me.join_id,
            }
        hello["nonce"] = member_nonce = mirror_secret.new_nonce()
        writer.write(encode_frame(MsgType.DC_HELLO, 1, hello))
        frame = await asyncio.wait_for(read_frame(reader), max(self.qos, 2.0))
        if self.stopped:
            # stop() cancelled this task, but Python 3.11's wait_for loses a cancellation
            # that lands as the awaited call completes: never go on past a stop
            return
        body = unpack(frame.body)
        primary_nonce = None
        if frame.type == MsgType.DC_CHALLENGE:
            primary_nonce = self._answer_challenge(writer, hello, body)
            frame = await asyncio.wait_for(read_frame(reader), max(self.qos, 2.0))
            if self.stopped:
                return
            body = unpack(frame.body)
        if frame.type == MsgType.ERROR:
            message = body.get("message") if isinstance(body, dict) else body
            if isinstance(body, dict) and body.get("code") == ErrorCode.NOT_PRIMARY:
                raise NotThePrimary(str(message))
            if str(message).startswith(("data channel refused", "join refused")):
                raise JoinRefused(f"the primary refused this member: {message}")
            raise ValueError(f"primary refused the data channel: {message}")
        if frame.type != MsgType.DC_WELCOME or not isinstance(body, dict):
            raise ValueError(f"expected DC_WELCOME, got message type {frame.type}")
        self._check_primary_proof(body, member_nonce, primary_nonce)
        self.refusal = None
        if body.get("config"):
            self.gate.apply_config(body["config"])
            if membership.removed:
                raise JoinRefused("this member is no longer in the mirror")
        cut = pos_from_wire(body.get("cut"))
        if cut is not None:
            self._check_cut(cut, body.get("cut_tail"))
            await membership.cut_journal(cut)
        self.received = membership.journal.end_position
        self.primary_name = body.get("primary")
        term = body.get("term")
        if isinstance(term, int) and self.primary_name == self.candidate.name:
            membership.remember_primary(self.primary_name, term)
        self.primary_end = pos_from_wire(body.get("end"))
        dbs = body.get("databases")
        if isinstance(dbs, list):
            listed = {d["name"]: d for d in dbs if isinstance(d, dict)}
            membership.primary_databases(listed, self.primary_end)
        self.codec = body.get("codec")
        self.primary_time = time.time()
        self.caught_up_once = False
        self.primary_mode = None
        self.connected = True
        self._writer = writer
        log.info(
            "connected to primary %s, codec %s, primary end %s",
            self.primary_name,
            self.codec,
            self.primary_end,
        )
        self._check_caught_up()
        journal = membership.journal
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        # One watchdog per session rather than asyncio.wait_for around every read, which
        # costs a task per journal chunk on the ack path.
        watchdog = loop.create_task(self._watchdog(writer))
        try:
            await self._receive_loop(reader, writer, journal, loop)
        finally:
            watchdog.cancel()

    def _answer_challenge(self, writer: asyncio.StreamWriter, hello: dict, body) -> bytes:
        """The primary asks for the mirror secret (engine/wire/mirror_secret.py): the hello
        again, with this member's proof.  The primary's nonce, for checking its own proof."""
        cfg = self.membership.cfg
        if cfg.secret is None:
            raise JoinRefused(
                "the primary asks for the mirror secret, which this member was not given: "
                "join again with it (the primary's agent answers it)"
            )
        try:
            primary_nonce = mirror_secret.check_nonce(
                body.get("nonce") if isinstance(body, dict) else None
            )
        except mirror_secret.SecretError as exc:
            raise ValueError(f"a malformed challenge from the primary: {exc}") from None
        hello["proof"] = mirror_secret.member_proof(
            cfg.secret, cfg.name, self.membership.member.name, hello["nonce"], primary_nonce
        )
        writer.write(encode_frame(MsgType.DC_HELLO, 2, hello))
        return primary_nonce

    def _check_cut(self, cut, primary_tail) -> None:
        """Journal beyond the primary's is discarded only if what comes before it is the
        primary's (guide §6.2.3.4); otherwise this member's data is inconsistent with the
        mirror and it must be rebuilt (guide §5.7)."""
        membership = self.membership
        ours = tail_digest(membership.journal_dir, membership.cfg.name, cut)
        if ours is not None and isinstance(primary_tail, str) and ours != primary_tail:
            log.error(
                "this member's journal before %s differs from the primary's: it holds journal "
                "the mirror never had",
                cut,
            )
            raise JoinRefused(
                "this member's data is inconsistent with the mirror (its journal before "
                f"{cut} is not the primary's): rebuild this member (guide §5.7)"
            )

    def _check_primary_proof(self, welcome: dict, member_nonce: bytes, primary_nonce) -> None:
        """Journal is taken only from a primary that proved the mirror secret (without TLS;
        with TLS its certificate did)."""
        cfg = self.membership.cfg
        if cfg.secret is None or cfg.tls:
            return
        primary = str(welcome.get("primary"))
        if primary_nonce is not None:
            expected = mirror_secret.primary_proof(
                cfg.secret, cfg.name, primary, member_nonce, primary_nonce
            )
            if mirror_secret.same(expected, welcome.get("proof")):
                return
        raise JoinRefused(f"the primary ({primary}) did not prove the mirror secret")

    async def _watchdog(self, writer: asyncio.StreamWriter) -> None:
        """Checks every timeout/4, the timeout read afresh on every slice."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            timeout = self.silence_timeout()
            wait = last + timeout / 4 - loop.time()
            if wait > 0:
                await asyncio.sleep(min(wait, TIMER_SLICE))
                continue
            last = loop.time()
            if last - self._heard > timeout:
                log.warning("no message from the primary within %.1f s; reconnecting", timeout)
                writer.transport.abort()
                return

    async def _receive_loop(self, reader, writer, journal, loop) -> None:
        membership = self.membership
        while not self.stopped:
            frame = await read_frame(reader)
            self._heard = loop.time()
            args = unpack(frame.body)
            if frame.type == MsgType.DC_JOURNAL:
                if trace.ENABLED:
                    trace.mark("b.received")
                seq, off, raw_len, codec, payload, sent_at, active = args
                data = decompress(codec, payload) if codec else payload
                if len(data) != raw_len:
                    raise ValueError(
                        f"journal chunk at ({seq}, {off}) decompressed to {len(data)} bytes, "
                        f"not {raw_len}"
                    )
                pos = pos_from_wire([seq, off])
                records = await journal.receive(pos.file_seq, pos.offset, data, durable=False)
                self.received = journal.end_position
                self.bytes_network += len(payload)
                self.bytes_journal += raw_len
                # guide §5.1.1.1 measures "behind" from the journal's own timestamps
                self.last_block_time = records[-1].timestamp if records else sent_at
                self.active = bool(active)
                if self.primary_end is None or self.received > self.primary_end:
                    self.primary_end = self.received
                writer.write(encode_frame(MsgType.DC_ACK, 0, [pos_wire(self.received)]))
                if trace.ENABLED:
                    trace.mark("b.acked")
                membership.dejournal_feed(records, data, pos)
                self._check_caught_up()
            elif frame.type == MsgType.DC_HEARTBEAT:
                end, now, active, *more = args
                self.primary_no_failover = bool(more and more[0])  # the primary's flag
                self.primary_end = pos_from_wire(end)
                self.primary_time = now
                self.active = bool(active)
                self._check_caught_up()
                heard = {}
                if len(more) >= 3 and (more[1] is None or more[1] in rules.FAILOVER_MODES):
                    # repeated in the answer: the primary's proof that this member heard it
                    self.primary_mode = more[1]
                    heard = {"primary_mode": more[1], "beat": more[2]}
                ack = [pos_wire(self.received), heard] if heard else [pos_wire(self.received)]
                writer.write(encode_frame(MsgType.DC_ACK, 0, ack))
            elif frame.type == MsgType.DC_HANDOVER:
                self._handover(args)
                return
            elif frame.type == MsgType.DC_CONFIG:
                self.gate.apply_config(args)
                if membership.removed:
                    raise JoinRefused("the primary removed this member from the mirror")
            elif frame.type == MsgType.ERROR:
                raise ValueError(f"primary reported an error: {args}")
            else:
                raise ValueError(f"unexpected message type {frame.type} from the primary")

    def _handover(self, args) -> None:
        """The primary stops gracefully and asks this Active backup to take over (guide
        §3.3.2.2): only with the whole of its journal, else the request is not taken."""
        end, term = args
        end = pos_from_wire(end)
        who = self.primary_name
        if self.membership.stopping_started:
            log.warning("primary %s asked for a takeover; this member is stopping", who)
        elif self.membership.fstate.no_failover:
            log.warning("primary %s asked for a takeover; no failover is set here", who)
        elif not self.membership.member.is_failover or not self.active:
            log.warning("primary %s asked for a takeover; this member is not Active", who)
        elif self.received != end:
            log.warning(
                "primary %s asked for a takeover at journal end %s, but this member has %s",
                who,
                end,
                self.received,
            )
        else:
            self.membership.remember_primary(who, term)
            self.stopped = True  # never back to the old primary, which is stopping
            self.gate.take_over(f"primary {who} handed over on graceful shutdown")
            return
        raise ValueError("takeover request refused")

    def heard_ago(self) -> float | None:
        """Seconds since the primary last said anything on the data channel, or None."""
        if not self.connected:
            return None
        return asyncio.get_running_loop().time() - self._heard

    def _check_caught_up(self) -> None:
        if self.caught_up and not self.caught_up_once:
            self.caught_up_once = True
            self.disconnected_at = None
