"""Limits on the portal's HTTP listener: uvicorn's HTTP protocol with deadlines and a cap.

uvicorn keeps a connection for as long as its peer stays silent: one that never sends a whole
request head, or announces a body and never sends it, is held with no line in the log (only a
kept-alive connection between requests is timed). So any client could hold the portal's
descriptors and memory for free. This protocol adds, as the agent's listener has
(docs/hardening.md, "Portal listener limits"):

- a head deadline: the request head is whole within PORTAL_HTTP_HEADER_TIMEOUT_MS of connecting,
  or of the first byte of a later request on a kept-alive connection;
- a body deadline: the body is whole within PORTAL_HTTP_BODY_TIMEOUT_MS of its head, or the
  client gets a 408 and the connection is closed;
- a head size: an unfinished request head beyond PORTAL_HTTP_MAX_HEAD_BYTES gets a 431 and
  the connection is closed (the parser would keep all of it in memory);
- caps: beyond PORTAL_HTTP_MAX_CONNECTIONS open connections (websockets count), or
  PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER from one address, a new one is closed as soon as it is
  accepted.

Only one timer runs at a time, and none while a handler runs with its whole request in hand:
a slow view and a websocket are never cut. Every refusal is logged (logger `portal.listener`)
naming the peer and the setting, through the rate-limited log the engine's listeners use.

Serve with `uvicorn --http portal.listener:LimitedHttpProtocol` (scripts/run-portal, Procfile).
"""

import asyncio
import logging

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from engine.wire.limits import RateLimitedLog

log = logging.getLogger("portal.listener")
refusals = RateLimitedLog(log)

HEAD_PHASES = ("first head", "head")


def _answer(status: bytes, text: bytes) -> bytes:
    """A whole plain-text answer that closes the connection."""
    return b"".join(
        [
            b"HTTP/1.1 %s\r\n" % status,
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(text),
            b"connection: close\r\n\r\n",
            text,
        ]
    )


REQUEST_TIMEOUT = _answer(b"408 Request Timeout", b"The request body did not arrive in time.\n")
HEAD_TOO_LARGE = _answer(
    b"431 Request Header Fields Too Large", b"The request head is too large.\n"
)


def _host(protocol) -> str:
    client = getattr(protocol, "client", None)  # websocket protocols have one too
    return client[0] if client else ""


def _peer(client) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown peer"


class LimitedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a head deadline, a body deadline and a connection cap."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timer: asyncio.TimerHandle | None = None
        self.phase = ""  # what the running timer waits for: "first head", "head", "body"
        self.body_bytes = 0
        self.head_bytes = 0  # of the request head being received
        self.heard = False  # any byte at all from the peer

    # The connection
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        refusal = self._over_a_cap()
        if refusal is not None:
            self.connections.discard(self)
            self._refuse(*refusal)
            transport.abort()
            return
        self._arm("first head", settings.PORTAL_HTTP_HEADER_TIMEOUT_S)

    def _over_a_cap(self) -> tuple[str, str, str] | None:
        limit = settings.PORTAL_HTTP_MAX_CONNECTIONS
        if len(self.connections) > limit:
            return (
                "max_connections",
                f"too many connections: {limit} open",
                f"PORTAL_HTTP_MAX_CONNECTIONS={limit}",
            )
        per_peer = settings.PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER
        host = _host(self)
        # one pass over the open connections, and only once there are more than one peer may hold
        if (
            host
            and len(self.connections) > per_peer
            and sum(1 for c in self.connections if _host(c) == host) > per_peer
        ):
            return (
                "max_connections_per_peer",
                f"too many connections from {host}: {per_peer} open",
                f"PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER={per_peer}",
            )
        return None

    def data_received(self, data: bytes) -> None:
        self.heard = True
        if self.timer is None and self.cycle is not None and self.cycle.response_complete:
            # uvicorn stops its keep-alive timer at any byte, and the parser skips blank lines
            # between requests without a callback: time them as the head of the next request
            self._arm("head", settings.PORTAL_HTTP_HEADER_TIMEOUT_S)
        in_head = self.timer is not None and self.phase in HEAD_PHASES
        if in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        # the parser keeps an unfinished head whole in memory: bound it
        limit = settings.PORTAL_HTTP_MAX_HEAD_BYTES
        still_in_head = self.timer is not None and self.phase in HEAD_PHASES
        if (
            in_head
            and still_in_head
            and self.head_bytes > limit
            and not self.transport.is_closing()
        ):
            self._disarm()
            self._refuse(
                "head_too_large",
                f"a request head still unfinished after {self.head_bytes} bytes",
                f"PORTAL_HTTP_MAX_HEAD_BYTES={limit}",
            )
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
        if refusals.suppressed:  # the lines a flood left out, counted, once the bucket allows
            refusals.flush()

    # The parser's callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.timer is None:  # a later request on a kept-alive connection
            self._arm("head", settings.PORTAL_HTTP_HEADER_TIMEOUT_S)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self.body_bytes = 0
            self._arm("body", settings.PORTAL_HTTP_BODY_TIMEOUT_S)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # Timers
    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        if phase in HEAD_PHASES:
            self.head_bytes = 0
        self.phase = phase
        self.timer = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, seconds: float) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        head_limit = f"PORTAL_HTTP_HEADER_TIMEOUT_MS={round(seconds * 1000)}"
        if self.phase == "body" and self.pipeline:
            # queued behind a request still being answered, with reading paused by uvicorn
            # meanwhile: its body cannot come in yet, whatever the client does
            self._arm("body", seconds)
            return
        if self.phase == "body":
            scope = self.cycle.scope if self.cycle else {}
            request = f"{scope.get('method', '?')} {scope.get('path', '?')}"
            self._refuse(
                "body_timeout",
                f"a request body not finished {seconds:.1f} s after its head "
                f"({request}, {self.body_bytes} bytes in)",
                f"PORTAL_HTTP_BODY_TIMEOUT_MS={round(seconds * 1000)}",
            )
            if self.cycle is not None and not self.cycle.response_started:
                self.transport.write(REQUEST_TIMEOUT)
                self.transport.close()  # the handler reading the body hears a disconnect
                return
        elif self.phase == "head":
            self._refuse(
                "header_timeout",
                f"a request head not finished {seconds:.1f} s after its first byte",
                head_limit,
            )
        elif not self.heard:
            # Browsers open spare connections they may never use: nothing sent is no attack.
            self._refuse(
                "silent", f"nothing sent {seconds:.1f} s after connecting", head_limit, logging.INFO
            )
        else:
            self._refuse(
                "header_timeout",
                f"no whole request head {seconds:.1f} s after connecting",
                head_limit,
            )
        self.transport.abort()  # not close(): a peer that does not read could hold a flush

    def _refuse(self, kind: str, why: str, limit: str, level: int = logging.WARNING) -> None:
        verb = "refused" if kind.startswith("max_connections") else "closed"
        refusals.emit(
            kind,
            level,
            f"portal listener: {verb} {_peer(self.client)}: {why} [limit {limit}]",
            f"portal listener: {verb} [limit {limit.split('=')[0]}]",
        )
