"""One TCP connection to a member: frame parsing, pipelining and error replies.

Both listeners (superserver and mirror private address) use this class.  A
connection whose first frame is DC_HELLO becomes a data channel and is handed to
the primary's replicator; every other connection is an application session.

Pipelining: requests are read as fast as they arrive; each gets a reply slot in
arrival order, and slots are flushed strictly in order as their results become
ready, so many requests can be in flight on one connection.

Limits: a connection of a listener with ConnectionLimits (engine/wire/limits.py; the
superserver's, from the instance's settings) is admitted by them or refused at once, tells
them what each read left buffered, and is closed by them when a cap or a timer bites — with
the reason in an error frame (request id 0) and in the log, rate-limited.  The limits close a
connection through its `limit_close`: the sweeper for a timer, and the total cap for the
connections it evicts while another connection's bytes are being taken (the largest holders
of unfinished frames, engine/wire/limits.py).  The limits are
passed in, or for the superserver found as `superserver_limits` on the owner (the instance,
or the membership of a member run from a mirror file).

Authentication: when the instance requires it (engine/member/app_auth.py, decided as the
connection is made), a connection is served only PING, INFO, STATUS, the data channel's
hello, the open admin actions and the authentication itself until it authenticates with an
application credential or the admin token; anything else gets `unauthorized` "authentication
required", and the connection is closed if it has not authenticated within the handshake
timeout.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import TYPE_CHECKING

from engine.member import app_auth
from engine.member.admin_auth import split_admin_args
from engine.wire import app_credentials as ac
from engine.wire.protocol import (
    APP_REQUESTS,
    BadFrame,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    MsgType,
    RequestError,
    describe_truncation,
    error_frame,
    ok_frame,
    unpack,
)
from engine.wire.serving import accepted

if TYPE_CHECKING:
    from engine.member.membership import Membership
    from engine.wire.limits import ConnectionLimits

log = logging.getLogger("engine.member.session")
MAX_IN_FLIGHT = 10_000  # requests awaiting their reply on one connection
TLS_HANDSHAKE_RECORD = b"\x16\x03"  # what a TLS client sends first
# Reads pipelined behind a write on the same connection wait for that write.
DEFERRED_READS = frozenset({MsgType.GET, MsgType.ORDER, MsgType.QUERY})


class Connection(asyncio.Protocol):
    def __init__(
        self,
        instance: Membership,
        listener: str,
        max_frame: int,
        limits: ConnectionLimits | None = None,
    ):
        self.instance = instance
        if limits is None and listener == "superserver":
            limits = getattr(instance, "superserver_limits", None)
        self.limits = limits
        self.listener = listener
        self.decoder = FrameDecoder(max_frame)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.txn: list | None = None  # buffered writes of an open transaction
        self.data_link = None  # set when this connection becomes a data channel
        self._slots: deque[list] = deque()  # [bytes | None] in request order
        self._barrier: asyncio.Future | None = None  # the latest write still in flight
        self._reading_paused = False
        self._writing_paused = False
        self.closed = False
        self.limit_closed = False  # closed by the limits (which logged why)
        self.auth = app_auth.current()
        self.auth_required = False  # decided when the connection is made
        self.user: str | None = None  # the credential it authenticated with, or "admin"
        self.auth_nonce: tuple[str, str] | None = None  # (name, server nonce) of a challenge
        self._auth_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = accepted(transport)
        if self.limits is not None:
            refusal = self.limits.admit(self, self.peer)
            if refusal is not None:  # counted and logged by the limits
                transport.write(error_frame(0, ErrorCode.UNAVAILABLE, refusal))
                transport.close()
                self.closed = self.limit_closed = True
                return
        self.instance.sessions.add(self)
        if self.auth.required(self.instance):
            self.auth_required = True
            limits = self.limits
            wait = limits.settings.handshake_timeout_s if limits is not None else 10.0
            self._auth_timer = asyncio.get_running_loop().call_later(wait, self._auth_expired)

    def _auth_expired(self) -> None:
        self._auth_timer = None
        if self.closed or self.user is not None or self.data_link is not None:
            return
        self.auth.warn(
            "authentication timeout",
            f"peer {self.peer}: closed: not authenticated within the handshake timeout",
        )
        if self.transport is not None:
            self.transport.write(
                error_frame(0, ErrorCode.UNAUTHORIZED, "authentication required: timed out")
            )
        self.close()

    def auth_done(self) -> None:
        """Authenticated (engine/member/app_auth.py): no more waiting for it."""
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.auth_done()
        self.instance.sessions.discard(self)
        if self.limits is not None:
            self.limits.release(self)
        trunc = describe_truncation(self.decoder)
        if trunc and not self.limit_closed:  # a close by the limits is logged already
            self._warn("truncated frame", f"peer {self.peer}: {trunc}")
        if self.data_link is not None:
            self.data_link.connection_lost()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            reason = exc.reason
            if data.startswith(TLS_HANDSHAKE_RECORD):  # say why, for whoever reads the log
                reason += f" (a TLS client hello: this {self.listener} listener speaks plain TCP)"
            self.reject_stream(reason, exc.req_id)
            return
        if self.limits is not None:
            decoder = self.decoder
            reason = self.limits.received(self, decoder.pending, decoder.expected, len(frames))
            if reason is not None:
                self.limit_close(reason)
                return
        for frame in frames:
            if self.closed:
                return
            if isinstance(frame, BadFrame):
                self._warn("rejected frame", f"peer {self.peer}: rejected frame: {frame.reason}")
                self.reply_now(error_frame(frame.req_id, ErrorCode.PROTOCOL, frame.reason))
                continue
            if self.data_link is not None:
                self.data_link.on_frame(frame)
            elif frame.type == MsgType.DC_HELLO:
                self.instance.accept_data_channel(self, frame)
                if self.data_link is not None:
                    self.auth_done()  # the data channel authenticates its own way
                    if self.limits is not None:
                        self.limits.exempt(self)  # the data channel has its own liveness
            else:
                self.handle_request(frame)

    def _warn(self, kind: str, text: str) -> None:
        """A warning about this peer: rate-limited per kind on a listener with limits."""
        if self.limits is not None:
            self.limits.warn(kind, f"{self.listener} listener, {text}")
        else:
            log.warning("%s listener, %s", self.listener, text)

    # -- the limits' interface (engine/wire/limits.py) -------------------------------
    def in_flight(self) -> bool:
        """Requests of this peer still awaiting their reply: then it waits for us."""
        return bool(self._slots)

    def limit_close(self, reason: str) -> None:
        """A limit bit (counted and logged by the limits): say why, and close at once."""
        if self.limits is not None:
            self.limits.release(self)  # its buffer no longer counts against the total
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(error_frame(0, ErrorCode.PROTOCOL, reason))
            if transport.get_write_buffer_size():
                transport.abort()  # a peer that does not read must not keep it open
            else:
                transport.close()
        self.closed = self.limit_closed = True

    # -- replies ----------------------------------------------------------
    def reject_stream(
        self, reason: str, req_id: int = 0, quiet: bool = False, code: str = ErrorCode.PROTOCOL
    ) -> None:
        """Unrecoverable input: reply with the reason, log it (unless quiet: already logged),
        and close this connection only."""
        if not quiet:
            self._warn("closing connection", f"peer {self.peer}: closing connection: {reason}")
        if self.transport is not None and not self.closed:
            self.transport.write(error_frame(req_id, code, reason))
            self.transport.close()
        self.closed = True

    def reply_now(self, data: bytes) -> None:
        """Reply to a request that completes synchronously (keeps pipelined order)."""
        if self._slots:
            self._slots.append([data])
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def reply_later(self, req_id: int, fut: asyncio.Future) -> None:
        slot: list = [None]
        self._slots.append(slot)
        if len(self._slots) > MAX_IN_FLIGHT and not self._reading_paused:
            # a client may pipeline freely, but not without bound: stop reading until
            # the replies catch up
            self._pause_reading()

        def done(f: asyncio.Future) -> None:
            slot[0] = self._result_frame(req_id, f)
            self._flush()

        fut.add_done_callback(done)

    def _result_frame(self, req_id: int, fut: asyncio.Future) -> bytes:
        if fut.cancelled():
            return error_frame(req_id, ErrorCode.UNAVAILABLE, "request cancelled (member stopping)")
        exc = fut.exception()
        if exc is None:
            try:
                return ok_frame(req_id, fut.result())
            except (TypeError, ValueError) as bad:
                # an answer that cannot be encoded must not leave the slot (and every later
                # reply on this connection) waiting forever
                exc = bad
        if isinstance(exc, RequestError):
            return error_frame(req_id, exc.code, exc.message, **exc.extra)
        log.error("request %d from %s failed: %r", req_id, self.peer, exc)
        return error_frame(req_id, ErrorCode.INTERNAL, f"internal error: {exc}")

    def _flush(self) -> None:
        slots = self._slots
        out = []
        while slots and slots[0][0] is not None:
            out.append(slots.popleft()[0])
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))
        if self._reading_paused and len(slots) < MAX_IN_FLIGHT // 2 and not self._writing_paused:
            self._resume_reading()

    # -- back-pressure ----------------------------------------------------
    def pause_writing(self) -> None:
        # The peer does not read its replies: stop reading its requests meanwhile.  Not on
        # a data channel, whose acks must keep flowing while journal is queued to it.
        if self.data_link is None:
            self._writing_paused = True
            self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if len(self._slots) < MAX_IN_FLIGHT // 2:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.closed and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.closed and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- requests ---------------------------------------------------------
    def handle_request(self, frame: Frame) -> None:
        req_id = frame.req_id
        if frame.type not in APP_REQUESTS:
            reason = (
                f"message type {MsgType(frame.type).name} is not a request this listener serves"
            )
            self._warn("not a request", f"peer {self.peer}: {reason}")
            self.reply_now(error_frame(req_id, ErrorCode.PROTOCOL, reason))
            return
        try:
            args = unpack(frame.body)
            if args is None:
                args = []
            if not isinstance(args, list):
                raise RequestError(
                    ErrorCode.BAD_REQUEST, "request body must be an array of arguments"
                )
            if frame.type == MsgType.ADMIN or (self.auth_required and self.user is None):
                answer = self._authorize(frame.type, args)
                if answer is not None:
                    self.reply_now(ok_frame(req_id, answer[0]))
                    return
            barrier = self._barrier
            if barrier is not None and not barrier.done() and frame.type in DEFERRED_READS:
                self.reply_later(req_id, self._after(barrier, frame.type, args))
                return
            result = self.instance.handle(self, frame.type, args)
        except ValueError as exc:
            log.warning(
                "%s listener, peer %s: bad request %d: %s", self.listener, self.peer, req_id, exc
            )
            self.reply_now(error_frame(req_id, ErrorCode.BAD_REQUEST, str(exc)))
            return
        except RequestError as exc:
            self.reply_now(error_frame(req_id, exc.code, exc.message, **exc.extra))
            return
        except Exception as exc:  # keep serving whatever a handler did wrong
            log.exception("request %d from %s failed", req_id, self.peer)
            self.reply_now(error_frame(req_id, ErrorCode.INTERNAL, f"internal error: {exc}"))
            return
        if isinstance(result, asyncio.Future):
            self.reply_later(req_id, result)
            self._barrier = result
        else:
            self.reply_now(ok_frame(req_id, result))

    def _authorize(self, mtype: int, args: list) -> tuple | None:
        """The authentication's part of a request: (result,) when it answers it itself (the
        handshake, credential actions); raises RequestError when it refuses it; None to go
        on."""
        action = arg = token = None
        if mtype == MsgType.ADMIN:
            action, arg, token = split_admin_args(args)
            if not isinstance(action, str):  # a list or a map is unhashable: a 500 otherwise
                raise RequestError(ErrorCode.BAD_REQUEST, "an admin action is named by a string")
            auth = self.auth
            admin_token = getattr(self.instance, "admin_token", None)
            if action == ac.CHALLENGE_ACTION:
                return (auth.challenge(self, arg),)
            if action == ac.AUTH_ACTION:
                return (auth.authenticate(self, arg, token, admin_token),)
            if action in app_auth.CREDENTIAL_ACTIONS:
                return (auth.credential_action(self.instance, self, action, arg, token),)
            if (
                self.user is None
                and isinstance(token, str)
                and admin_token
                and hmac.compare_digest(token.encode(), admin_token.encode())
            ):
                auth.accept(self, app_auth.ADMIN_USER)  # the agent's and operators' tools
        if self.auth_required and self.user is None and not app_auth.is_pre_auth(mtype, action):
            what = MsgType(mtype).name + (f" {action!r}" if action is not None else "")
            raise self.auth.refuse(self, what)
        return None

    def _after(self, barrier: asyncio.Future, mtype: int, args: list) -> asyncio.Future:
        """Run a read once the connection's earlier writes are durable (read your writes)."""
        fut = asyncio.get_running_loop().create_future()

        def run(_):
            try:
                fut.set_result(self.instance.handle(self, mtype, args))
            except ValueError as exc:
                fut.set_exception(RequestError(ErrorCode.BAD_REQUEST, str(exc)))
            except Exception as exc:
                fut.set_exception(exc)

        barrier.add_done_callback(run)
        return fut

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True
