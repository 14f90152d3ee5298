"""Limits of the agent's HTTP listener: how many connections, how long each may take.

Settings of the agent configuration (engine/agent/config.py), with their defaults:

    max_connections = 256       connections open at once, TLS handshakes included
    header_timeout_ms = 10000   from connecting (TLS handshake included), or from the first
                                byte of a later request, to the end of the request head
    idle_timeout_ms = 75000     a kept-alive connection between two requests
    body_timeout_ms = 30000     from the end of a request head to the last byte of its body
    max_streams = 64            status streams at once (engine/agent/stream.py)

A connection is in one phase at a time and only that phase's timer runs:

    connect   accepted: TLS handshake and first request head     header_timeout from accepting
    head      the first byte of a later request is in            header_timeout from that byte
    request   a handler runs and the body is still arriving      body_timeout from the head
              a handler runs and the body is in (a long
              operation, a status stream): nothing is timed
    idle      answered; nothing of the next request yet          idle_timeout from the answer

So a status stream, long-lived by design, is never cut by a timer; it counts as a connection
and against max_streams (a stream beyond it is a 503 too_many_streams, from the hub).

One connection beyond max_connections is closed as soon as it is accepted, without an
answer: a 503 would need, on a TLS agent, a whole handshake per refused connection (the
CPU a flood wants us to spend), and a client that has not sent its request yet does not
reliably read an answer before it (most report a reset connection either way).  The
AgentClient, the portal's, reports it as unreachable; the monitor retries.

Every refusal and close is counted (stats(), in /v1/health as `listener`) and logged on
logger engine.agent.server as `agent listener: refused|closed PEER: REASON [limit NAME=VALUE]`,
through engine/wire/limits.py's RateLimitedLog: a token bucket per limit (a burst of 20,
then one line a second), the lines left out counted and told as `(+N more not logged)`.
The other lines a peer can cause without authenticating, once per connection or request
(refused TLS handshakes, the HTTP parser's 400s, 401s), go through the same buckets
(AnonymousRefusals); a handshake a limit cut is told once, by the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from engine.agent.auth import TLSAcceptor
from engine.agent.config import AgentConfig
from engine.agent.errors import JSONErrorRequestHandler, for_log
from engine.wire.limits import ConnectionLimits, LimitSettings, RateLimitedLog

log = logging.getLogger("engine.agent.server")

CONNECT, HEAD, REQUEST, IDLE = "connect", "head", "request", "idle"
# Lines of other modules that a peer can cause without authenticating, one per connection or
# request: they go through the same buckets (AnonymousRefusals).  The templates are theirs.
TLS_REFUSED = "TLS handshake with %s refused: %s"  # auth.py TLSAcceptor
PARSER_REFUSED = "bad request from %s refused (%s): %s"  # errors.py, the HTTP parser's 400
API_REFUSED = "%s %s from %s%s refused: %s %s: %s"  # errors.py json_errors


@dataclass(slots=True, eq=False)
class Conn:
    peer: str
    transport: asyncio.BaseTransport  # the TLS one once the handshake is done
    since: float  # when the phase began
    phase: str = CONNECT
    request: web.BaseRequest | None = None
    handed: bool = False  # the HTTP protocol has it (after the TLS handshake, if any)
    closed: str | None = None  # the limit that closed it


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


class ListenerLimits:
    """The limits of the agent's listener and the connections it holds now."""

    def __init__(
        self,
        cfg: AgentConfig,
        clock: Callable[[], float] = time.monotonic,
        log_rate: float = 1.0,
        log_burst: float = 20,
    ):
        self.cfg = cfg
        self.clock = clock
        self.log = RateLimitedLog(log, log_rate, log_burst, clock)
        self.max_connections = cfg.max_connections
        self.conns: set[Conn] = set()
        self.counts: Counter[str] = Counter()
        self.sweeper: asyncio.Task | None = None
        self.quiet_tls: set[str] = set()  # peers cut in their handshake: already logged
        self.anonymous = AnonymousRefusals(self)

    def fit_descriptors(self) -> int:
        """Raise the descriptor limit for max_connections, or lower it (with a warning)."""
        probe = ConnectionLimits(
            LimitSettings(max_connections=self.cfg.max_connections), listener="agent", logger=log
        )
        self.max_connections = probe.fit_descriptors()
        return self.max_connections

    def describe(self) -> str:
        c = self.cfg
        return (
            f"agent limits: {self.max_connections} connections ({c.max_streams} status "
            f"streams), header {c.header_timeout_s:g} s, idle {c.idle_timeout_s:g} s, "
            f"body {c.body_timeout_s:g} s"
        )

    def install(self) -> None:
        log.addFilter(self.anonymous)

    def close(self) -> None:
        """The listener is closing: stop the sweeper, log the counts not logged yet."""
        log.removeFilter(self.anonymous)
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.log.flush(force=True)

    # -- connections ----------------------------------------------------------------
    def admit(self, transport: asyncio.BaseTransport) -> Conn | None:
        """A new connection's record, or None when it is refused (counted and logged)."""
        peer = _peer(transport)
        if len(self.conns) >= self.max_connections:
            self._count(
                "max_connections",
                logging.WARNING,
                f"agent listener: refused {peer}: too many connections: {len(self.conns)} "
                f"open [limit max_connections={self.max_connections}]",
            )
            return None
        conn = Conn(peer, transport, self.clock())
        self.conns.add(conn)
        if self.sweeper is None or self.sweeper.done():
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return conn

    def release(self, conn: Conn) -> None:
        self.conns.discard(conn)

    def data(self, conn: Conn) -> None:
        if conn.phase == IDLE:
            conn.phase, conn.since = HEAD, self.clock()

    def begin(self, conn: Conn, request: web.BaseRequest) -> None:
        conn.phase, conn.since, conn.request = REQUEST, self.clock(), request

    def end(self, conn: Conn) -> None:
        conn.phase, conn.since, conn.request = IDLE, self.clock(), None

    # -- timers ---------------------------------------------------------------------
    def expired(self, now: float | None = None) -> list[tuple[Conn, str, int, str]]:
        """(connection, limit, log level, reason) of every connection a timer ends now."""
        now = self.clock() if now is None else now
        c = self.cfg
        out = []
        for conn in list(self.conns):
            age = now - conn.since
            if conn.phase == CONNECT and age > c.header_timeout_s:
                what = "no whole request head" if conn.handed else "TLS handshake not finished"
                reason = f"{what} {age:.1f} s after connecting"
                out.append((conn, "header_timeout_ms", logging.WARNING, reason))
            elif conn.phase == HEAD and age > c.header_timeout_s:
                reason = f"a request head not finished {age:.1f} s after its first byte"
                out.append((conn, "header_timeout_ms", logging.WARNING, reason))
            elif conn.phase == IDLE and age > c.idle_timeout_s:
                out.append((conn, "idle_timeout_ms", logging.INFO, f"idle for {age:.1f} s"))
            elif (
                conn.phase == REQUEST
                and conn.request is not None
                and not conn.request.content.is_eof()
                and age > c.body_timeout_s
            ):
                got = conn.request.content.total_bytes
                reason = f"a request body not finished {age:.1f} s after its head ({got} bytes in)"
                out.append((conn, "body_timeout_ms", logging.WARNING, reason))
        return out

    def cut(self, conn: Conn, limit: str, level: int, reason: str) -> None:
        ms = round(getattr(self.cfg, limit.replace("_ms", "_s")) * 1000)
        self._count(
            limit, level, f"agent listener: closed {conn.peer}: {reason} [limit {limit}={ms}]"
        )
        conn.closed = limit
        self.release(conn)
        if not conn.handed:
            self.quiet_tls.add(conn.peer)
        # abort, not close: a peer that does not read would hold a close that flushes first
        conn.transport.abort()

    @property
    def sweep_interval(self) -> float:
        c = self.cfg
        shortest = min(c.header_timeout_s, c.idle_timeout_s, c.body_timeout_s)
        return min(1.0, max(0.05, shortest / 4))

    async def _sweep(self) -> None:
        while self.conns:
            await asyncio.sleep(self.sweep_interval)
            for conn, limit, level, reason in self.expired():
                try:
                    self.cut(conn, limit, level, reason)
                except Exception:  # one broken connection must not stop the sweeper
                    log.exception("agent listener: closing %s", conn.peer)
            self.log.flush()
        self.log.flush(force=True)  # nothing left open: every count is told now

    # -- counting and logging -------------------------------------------------------
    def _count(self, limit: str, level: int, line: str) -> None:
        self.counts[limit] += 1
        what = "refused" if limit == "max_connections" else "closed"
        self.log.emit(limit, level, line, f"agent listener: {what} [limit {limit}]")

    def stats(self) -> dict:
        return {
            "connections": len(self.conns),
            "max_connections": self.max_connections,
            "refused": self.counts["max_connections"],
            "closed": {k: v for k, v in self.counts.items() if k != "max_connections"},
        }


class AnonymousRefusals(logging.Filter):
    """The refusals any peer can cause before it is authenticated, through the limits' token
    buckets: refused TLS handshakes, the HTTP parser's 400s, and the API's refusals that
    name no caller (401, and 413 by Content-Length).  A refusal of an authenticated caller
    is never left out: it is the audit trail of what a known caller tried."""

    def __init__(self, limits: ListenerLimits):
        super().__init__()
        self.limits = limits

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == TLS_REFUSED and len(args) == 2:
            if args[0] in self.limits.quiet_tls:
                return False  # a limit cut this handshake and said so
            kind, summary = "tls_handshake", "TLS handshakes refused"
        elif record.msg == PARSER_REFUSED and len(args) == 3:
            kind, summary = "bad_request", "requests refused by the HTTP parser"
        elif record.msg == API_REFUSED and len(args) == 7 and not args[3]:
            kind = f"unauthenticated_{args[4]}"
            summary = f"requests refused before authentication ({args[4]})"
        else:
            return True
        self.limits.log.emit(kind, record.levelno, record.getMessage(), f"agent: {summary}")
        return False


LIMITS = web.AppKey("listener_limits", ListenerLimits)


class LimitedRequestHandler(JSONErrorRequestHandler):
    """aiohttp's HTTP protocol (with JSON errors) on a connection the limits know.
    `conn`: the record of a connection admitted before its TLS handshake."""

    def __init__(self, manager, *, limits: ListenerLimits, conn: Conn | None = None, **kw):
        super().__init__(manager, **kw)
        self.limits = limits
        self.limit_conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = self.limit_conn
        if conn is None:
            conn = self.limit_conn = self.limits.admit(transport)
            if conn is None:
                transport.abort()
                return
        conn.transport, conn.handed = transport, True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.limit_conn is None:
            return  # refused: aiohttp never had it
        self.limits.release(self.limit_conn)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.limit_conn is not None:
            self.limits.data(self.limit_conn)
        super().data_received(data)


class LimitedTLSAcceptor(TLSAcceptor):
    """TLSAcceptor on a connection the limits admit before its handshake, so handshakes in
    progress count and are timed too."""

    def __init__(self, http: Callable[[Conn], LimitedRequestHandler], context, stats, limits):
        super().__init__(None, context, stats)
        self.http = http
        self.limits = limits
        self.conn: Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = conn = self.limits.admit(transport)
        if conn is None:
            transport.abort()
            return
        self.factory = lambda: self.http(conn)
        super().connection_made(transport)

    async def _handshake(self, transport: asyncio.BaseTransport) -> None:
        try:
            await super()._handshake(transport)
        finally:
            if not self.conn.handed:  # refused or lost: the HTTP protocol never had it
                self.limits.release(self.conn)
            self.limits.quiet_tls.discard(self.conn.peer)


@web.middleware
async def track_requests(request: web.Request, handler):
    """Time a request's body and the idle time after it.  A handler whose connection a limit
    or the peer cut finds its body unreadable: nobody waits for an answer, and the cut was
    logged, so it ends quietly instead of as a 500 with a traceback."""
    protocol = request.protocol
    conn = getattr(protocol, "limit_conn", None)
    if conn is None:  # an app served without the limits (tests of the routes alone)
        return await handler(request)
    limits: ListenerLimits = protocol.limits
    limits.begin(conn, request)
    try:
        return await handler(request)
    except ConnectionError:
        transport = request.transport
        if conn.closed is None and transport is not None and not transport.is_closing():
            raise
        if conn.closed is None:
            limits.log.emit(
                "went_away",
                logging.INFO,
                f"agent listener: {conn.peer} went away during {request.method} "
                f"{for_log(request.rel_url, 200)} ({request.content.total_bytes} bytes of its "
                "body in)",
                "agent listener: peers that went away during a request",
            )
        return web.Response(status=408)  # not sent: the connection is gone
    finally:
        limits.end(conn)
