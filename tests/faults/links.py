"""Links that the failover tests can cut: a TCP proxy of our own (the kernel here has no netem).

A LinkProxy listens on a loopback port and forwards every connection to a target address.  It
runs on an asyncio loop in a background thread, so a synchronous test drives it with plain
calls; each call has taken effect when it returns.  Point a member at `proxy.address` instead of
the real address and the link between them is the proxy's to break:

    cut(mode="partition")  silence both ways, as a real partition: nothing more is read from
                           either socket, so the peers see neither data nor a close, their own
                           writes land in the kernel's socket buffers until those fill (as
                           unacknowledged data stays in a sender's buffer), and new connections
                           are accepted but never reach the target.  At heal() every connection
                           that was cut is reset (RST both ways) and whatever it held is dropped:
                           the bytes lost in a partition would leave the peers' framing corrupt,
                           and a partition that outlasts TCP's retransmissions ends with the
                           connection timed out.  New connections flow at once.
    cut(mode="stall")      the same silence, but nothing is lost: at heal() every connection
                           resumes where it stopped (bytes held in the kernel and in the proxy are
                           delivered in order, closes that came meanwhile are passed on) and the
                           connections accepted during the stall reach the target then: a long
                           stall, as TCP's retransmissions make of a short partition.
    heal()                 forward again (and accept again after refuse()).
    reset()                every open connection closed with an RST (SO_LINGER 0), both sides.
    refuse()               the listener is closed, so new connections are refused by the
                           kernel (ECONNREFUSED) while the open ones carry on; heal() listens
                           again on the same port.
    delay(ms, jitter_ms)   a delay line each way: every chunk read is released `ms` (plus up to
                           `jitter_ms`) later, in order.  delay(0) removes it.

The same cut/heal/reset work on one connection (`proxy.connections()`).  The proxy buffers at
most `cap` bytes per direction of a connection (its delay line, and a destination's write buffer)
and stops reading beyond that; counters say what it forwarded, held and dropped (`stats()`).

`Links` names the links of a test ("A->B data", "B->arbiter") on one shared loop, and cuts or
heals several of them as ONE network event: all of them change in the same turn of the loop,
so no byte crosses one link after another was cut (issue 13: single network events producing
multiple losses are processed as one event).  Every call is recorded in `links.events`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PARTITION, STALL = "partition", "stall"
MODES = (PARTITION, STALL)
DEFAULT_CAP = 1 << 20  # bytes a connection may hold per direction before the proxy stops reading
CALL_TIMEOUT = 10.0
_EOF = object()  # a close passed on in order behind the data (FIN)
_RST = object()  # a reset passed on in order behind the data


def parse_target(target) -> tuple[str, int]:
    """("host", port), "host:port", or anything with .host and .port (engine Address)."""
    if isinstance(target, tuple):
        return str(target[0]), int(target[1])
    if isinstance(target, str):
        host, _, port = target.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)
    return str(target.host), int(target.port)


class ProxyLoop:
    """An asyncio loop in a daemon thread; the proxies of one Links registry share one."""

    def __init__(self, name: str = "link-proxy"):
        self.loop = asyncio.SelectorEventLoop()  # known pause/resume semantics, never uvloop
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait(CALL_TIMEOUT)
        self.closed = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable, *args):
        """fn(*args) on the loop thread, in one turn of the loop; its result or its exception."""
        if self.in_loop():
            return fn(*args)
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run():
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(CALL_TIMEOUT)

    def run(self, coro):
        """A coroutine on the loop, waited for from another thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(CALL_TIMEOUT)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class ConnectionStats:
    id: int
    peer: str
    state: str  # "connecting", "open", "cut (partition)", "cut (stall)", "closing"
    bytes_to_target: int = 0
    bytes_to_client: int = 0
    held_to_target: int = 0  # read from the client, not yet written to the target
    held_to_client: int = 0


@dataclass
class LinkStats:
    """A proxy's counters since it started."""

    connections: int = 0  # accepted
    open: int = 0  # accepted and not yet closed on both sides
    failed: int = 0  # the target refused or could not be reached
    resets: int = 0  # connections reset by reset() or at the heal of a partition
    bytes_to_target: int = 0
    bytes_to_client: int = 0
    bytes_dropped: int = 0  # held by the proxy when a connection was reset
    held: int = 0  # bytes held by the proxy now (both directions, every connection)
    cut: str | None = None  # the proxy's cut mode, None when it forwards
    refusing: bool = False
    delay_ms: float = 0.0


@dataclass
class NetworkEvent:
    """One call that changed links: a cut of several links is one event."""

    at: float  # time.monotonic()
    action: str  # cut, heal, reset, refuse, delay
    links: tuple[str, ...]
    mode: str | None = None
    detail: dict = field(default_factory=dict)


class Healing:
    """What cut() and refuse() return: used as a context manager, heals at exit."""

    def __init__(self, heal: Callable[[], None]):
        self._heal = heal

    def __enter__(self) -> Healing:
        return self

    def __exit__(self, *exc) -> None:
        self._heal()


# -- one proxied connection ---------------------------------------------------------------


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: the client's, or the one to the target."""

    def __init__(self, conn: _Conn, role: str):
        self.conn = conn
        self.role = role
        self.transport: asyncio.Transport | None = None
        self.write_paused = False  # its write buffer is over the cap: stop reading the other
        self.lost = False
        self.lost_exc: BaseException | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=self.conn.proxy.cap)
        self.conn.side_made(self)

    def data_received(self, data: bytes) -> None:
        self.conn.data(self, data)

    def eof_received(self) -> bool:
        self.conn.eof(self)
        return True  # half-close: the other way may go on

    def connection_lost(self, exc) -> None:
        self.conn.lost(self, exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.conn.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.conn.update_reading()


class _Direction:
    """Bytes read from one side, on their way to the other: a FIFO delay line."""

    def __init__(self, conn: _Conn, src: str, dst: str):
        self.conn = conn
        self.src, self.dst = src, dst
        self.queue: deque = deque()  # (release time, bytes | _EOF | _RST)
        self.held = 0
        self.forwarded = 0
        self.last_release = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False  # an _EOF or _RST went through

    def push(self, item) -> None:
        proxy = self.conn.proxy
        loop = proxy.loop.loop
        at = loop.time() + proxy.delay_s
        if proxy.jitter_s:
            at += random.uniform(0, proxy.jitter_s)
        at = max(at, self.last_release)  # FIFO: never released before what came earlier
        self.last_release = at
        self.queue.append((at, item))
        if isinstance(item, bytes):
            self.held += len(item)
        if self.timer is None:
            self.pump()

    def pump(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn = self.conn
        side = conn.side(self.dst)
        if conn.mode is not None or conn.closed or side is None or side.transport is None:
            return  # frozen: resumed by heal() or when the target connects
        loop = conn.proxy.loop.loop
        now = loop.time()
        while self.queue:
            at, item = self.queue[0]
            if at > now:
                self.timer = loop.call_at(at, self.pump)
                break
            self.queue.popleft()
            if isinstance(item, bytes):
                self.held -= len(item)
                if side.lost:  # written to a closed socket: TCP answers with an RST
                    conn.reset(count=False)
                    return
                self.forwarded += len(item)
                conn.proxy.count(self.dst, len(item))
                side.transport.write(item)
            else:
                self.finished = True
                conn.pass_close(side, item)
                break
        conn.update_reading()

    def drop(self) -> int:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        dropped = self.held
        self.queue.clear()
        self.held = 0
        return dropped


class _Conn:
    """A client connection and its connection to the target, forwarded both ways."""

    def __init__(self, proxy: LinkProxy, cid: int):
        self.proxy = proxy
        self.id = cid
        self.peer = "?"
        self.client = _Side(self, "client")
        self.target: _Side | None = None
        self.mode: str | None = None  # the connection's cut
        self.closed = False  # reset, or both ways done: nothing more is forwarded
        self.connecting: asyncio.Task | None = None
        self.to_target = _Direction(self, "client", "target")
        self.to_client = _Direction(self, "target", "client")
        self.done = False  # both sockets gone: no longer counted open
        self.was_reset = False

    def side(self, role: str) -> _Side | None:
        return self.client if role == "client" else self.target

    def direction_from(self, side: _Side) -> _Direction:
        return self.to_target if side.role == "client" else self.to_client

    # -- events ----------------------------------------------------------------------------
    def side_made(self, side: _Side) -> None:
        if side.role == "client":
            peer = side.transport.get_extra_info("peername")
            self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
            self.proxy.accepted(self)  # may cut this connection (a cut proxy)
            if self.mode is None:
                self.connect()
        else:
            self.to_target.pump()
        self.update_reading()

    def connect(self) -> None:
        if self.connecting is not None or self.closed:
            return
        self.connecting = self.proxy.loop.loop.create_task(self._connect())
        self.connecting.add_done_callback(lambda _: self._check_done())

    async def _connect(self) -> None:
        host, port = self.proxy.target
        loop = self.proxy.loop.loop
        try:
            await loop.create_connection(lambda: self._target_side(), host, port)
        except OSError:
            self.proxy.stats_.failed += 1
            self.reset(count=False)  # the client sees a reset where a direct try was refused

    def _target_side(self) -> _Side:
        self.target = _Side(self, "target")
        return self.target

    def data(self, side: _Side, data: bytes) -> None:
        if not self.closed:
            self.direction_from(side).push(data)
            self.update_reading()

    def eof(self, side: _Side) -> None:
        if not self.closed:
            self.direction_from(side).push(_EOF)

    def lost(self, side: _Side, exc) -> None:
        side.lost, side.lost_exc = True, exc
        direction = self.direction_from(side)
        last = direction.queue[-1][1] if direction.queue else None
        if not self.closed and not direction.finished and last is not _EOF and last is not _RST:
            # a socket gone without its FIN first (an RST, a failed write) is passed on as an
            # RST; one gone after its FIN has nothing more to say
            direction.push(_RST if exc is not None else _EOF)
        self._check_done()

    def pass_close(self, side: _Side, item) -> None:
        """A close reached `side` in order: a FIN (half-close), or an RST."""
        if item is _RST:
            self.reset(count=False)
            return
        if not side.lost and side.transport is not None:
            if side.transport.can_write_eof():
                side.transport.write_eof()
            else:
                side.transport.close()
        if self.to_target.finished and self.to_client.finished:
            self.close_sockets()

    def close_sockets(self) -> None:
        self.closed = True
        for side in (self.client, self.target):
            if side is not None and side.transport is not None and not side.lost:
                side.transport.close()  # after the write buffer is flushed
        self._check_done()

    def _check_done(self) -> None:
        if self.done or not self.client.lost:
            return
        if self.target is None:
            if self.connecting is not None and not self.connecting.done():
                return  # the connection to the target is still under way
        elif not self.target.lost:
            return
        self.done = True
        self.proxy.retired(self)

    # -- reading, cuts ---------------------------------------------------------------------
    def update_reading(self) -> None:
        for side, direction, other in (
            (self.client, self.to_target, self.target),
            (self.target, self.to_client, self.client),
        ):
            if side is None or side.transport is None or side.lost:
                continue
            stop = (
                self.mode is not None
                or self.closed
                or direction.held >= self.proxy.cap
                or (other is not None and other.write_paused)
            )
            if stop:
                side.transport.pause_reading()
            else:
                side.transport.resume_reading()

    def cut(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"cut mode {mode!r}: one of {', '.join(MODES)}")
        if self.closed:
            return
        self.mode = mode
        for direction in (self.to_target, self.to_client):
            if direction.timer is not None:
                direction.timer.cancel()
                direction.timer = None
        self.update_reading()

    def heal(self) -> None:
        mode, self.mode = self.mode, None
        if mode == PARTITION:
            self.reset()
            return
        if self.closed:
            return
        if self.target is None:
            self.connect()
        for direction in (self.to_target, self.to_client):
            direction.pump()
        self.update_reading()

    def reset(self, count: bool = True) -> None:
        """RST both ways (SO_LINGER 0), dropping whatever is held."""
        if self.was_reset:
            return
        self.was_reset = self.closed = True
        live = [s for s in (self.client, self.target) if s and s.transport and not s.lost]
        if count and live:
            self.proxy.stats_.resets += 1
        self.proxy.stats_.bytes_dropped += self.to_target.drop() + self.to_client.drop()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        for side in live:
            sock = side.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            side.transport.abort()

    def stats(self) -> ConnectionStats:
        if self.closed:
            state = "closing"
        elif self.mode is not None:
            state = f"cut ({self.mode})"
        elif self.target is None or self.target.transport is None:
            state = "connecting"
        else:
            state = "open"
        return ConnectionStats(
            self.id,
            self.peer,
            state,
            self.to_target.forwarded,
            self.to_client.forwarded,
            self.to_target.held,
            self.to_client.held,
        )


class Connection:
    """A handle on one proxied connection, for a test thread: cut, heal, reset, stats."""

    def __init__(self, conn: _Conn):
        self._conn = conn
        self.id = conn.id
        self.peer = conn.peer

    def _call(self, fn, *args):
        return self._conn.proxy.loop.call(fn, *args)

    def cut(self, mode: str = PARTITION) -> Healing:
        self._call(self._conn.cut, mode)
        return Healing(self.heal)

    def heal(self) -> None:
        self._call(self._conn.heal)

    def reset(self) -> None:
        self._call(self._conn.reset)

    def stats(self) -> ConnectionStats:
        return self._call(self._conn.stats)

    def __repr__(self) -> str:
        return f"<Connection {self.id} from {self.peer}>"


# -- the proxy -------------------------------------------------------------------------------


class LinkProxy:
    """A TCP proxy from a loopback port to `target` that tests can cut (see the module doc).

    LinkProxy(target) listens on a free port (engine/cluster/ports.py) at once; `address` is
    "127.0.0.1:PORT", to be given where the real address would be.  Close it (or use it as a
    context manager); a proxy made by Links is closed with its registry.
    """

    def __init__(
        self,
        target,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        cap: int = DEFAULT_CAP,
        loop: ProxyLoop | None = None,
    ):
        if port is None:
            from engine.cluster.ports import free_ports

            port = free_ports(1)[0]
        self.target = parse_target(target)
        self.name = name or f"->{self.target[0]}:{self.target[1]}"
        self.host, self.port = host, port
        self.cap = cap
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.mode: str | None = None
        self.refusing = False
        self.stats_ = LinkStats()
        self.events: list[NetworkEvent] = []
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
        self._lsock: socket.socket | None = None
        self._own_loop = loop is None
        self.loop = loop or ProxyLoop(f"link-proxy {self.name}")
        self.closed = False
        try:
            self.loop.run(self._listen())
        except BaseException:
            if self._own_loop:
                self.loop.close()
            raise

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<LinkProxy {self.name} {self.address} -> {self.target[0]}:{self.target[1]}>"

    def __enter__(self) -> LinkProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- on the loop thread ------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def _listen(self) -> None:
        await self._serve(self._bind())  # listening from the bind on: the kernel queues them

    def _new_client_side(self) -> _Side:
        conn = _Conn(self, next(self._ids))
        return conn.client

    def accepted(self, conn: _Conn) -> None:
        self._conns[conn.id] = conn
        self.stats_.connections += 1
        self.stats_.open += 1
        if self.mode is not None:
            conn.cut(self.mode)

    def retired(self, conn: _Conn) -> None:
        if self._conns.pop(conn.id, None) is not None:
            self.stats_.open -= 1

    def count(self, dst: str, n: int) -> None:
        if dst == "target":
            self.stats_.bytes_to_target += n
        else:
            self.stats_.bytes_to_client += n

    def _record(self, action: str, mode: str | None = None, **detail) -> None:
        self.events.append(NetworkEvent(time.monotonic(), action, (self.name,), mode, detail))

    def cut_now(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"cut mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        for conn in list(self._conns.values()):
            conn.cut(mode)
        self._record("cut", mode)

    def heal_now(self) -> None:
        self.mode = None
        for conn in list(self._conns.values()):
            conn.heal()
        if self.refusing and not self.closed:
            sock = self._bind()  # accepting from this moment; the server takes them in turn
            self.refusing = False
            self.loop.loop.create_task(self._serve(sock))
        self._record("heal")

    async def _serve(self, sock: socket.socket) -> None:
        self._lsock = sock
        self._server = await self.loop.loop.create_server(self._new_client_side, sock=sock)

    def _take_queued(self) -> None:
        """Take the connections the kernel has completed but the server not yet accepted, so
        that closing the listener does not reset them."""
        while self._lsock is not None:
            try:
                sock, _ = self._lsock.accept()
            except OSError:  # BlockingIOError: none left
                return
            sock.setblocking(False)
            self.loop.loop.create_task(
                self.loop.loop.connect_accepted_socket(self._new_client_side, sock=sock)
            )

    def reset_now(self) -> None:
        for conn in list(self._conns.values()):
            conn.reset()
        self._record("reset")

    def refuse_now(self) -> None:
        if not self.refusing and self._server is not None:
            self.refusing = True
            self._take_queued()
            self._server.close()  # the listening socket only: open connections carry on
            self._server = self._lsock = None
        self._record("refuse")

    def delay_now(self, ms: float, jitter_ms: float = 0.0) -> None:
        if ms < 0 or jitter_ms < 0:
            raise ValueError("delay and jitter are durations: 0 or more milliseconds")
        self.delay_s, self.jitter_s = ms / 1000.0, jitter_ms / 1000.0
        self._record("delay", ms=ms, jitter_ms=jitter_ms)

    def _stats(self) -> LinkStats:
        s = LinkStats(**vars(self.stats_))
        s.held = sum(c.to_target.held + c.to_client.held for c in self._conns.values())
        s.cut, s.refusing, s.delay_ms = self.mode, self.refusing, self.delay_s * 1000
        return s

    def close_now(self) -> None:
        self.closed = True
        if self._server is not None:
            self._server.close()
            self._server = self._lsock = None
        for conn in list(self._conns.values()):
            conn.reset(count=False)

    # -- from any thread -----------------------------------------------------------------------
    def cut(self, mode: str = PARTITION) -> Healing:
        """Stop forwarding, both ways, on every connection and on new ones (module doc)."""
        self.loop.call(self.cut_now, mode)
        return Healing(self.heal)

    def heal(self) -> None:
        """Forward again: a partition's connections are reset, a stall's resume; accept
        again after refuse()."""
        self.loop.call(self.heal_now)

    def reset(self) -> None:
        """Close every open connection with an RST, both sides."""
        self.loop.call(self.reset_now)

    def refuse(self) -> Healing:
        """Refuse new connections (the kernel answers RST to a SYN) until heal()."""
        self.loop.call(self.refuse_now)
        return Healing(self.heal)

    def delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Hold every chunk `ms` (+ up to `jitter_ms`) each way, in order; 0 removes it."""
        self.loop.call(self.delay_now, ms, jitter_ms)

    def stats(self) -> LinkStats:
        return self.loop.call(self._stats)

    def connections(self) -> list[Connection]:
        """The open connections, oldest first."""
        return self.loop.call(lambda: [Connection(c) for c in self._conns.values() if not c.closed])

    def wait_for(
        self, predicate: Callable[[LinkStats], object], timeout: float = 10.0, what: str = ""
    ) -> LinkStats:
        """Poll stats() until predicate(stats) is truthy; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: timed out after {timeout}s waiting for {what or predicate}: "
                    f"{stats}"
                )
            time.sleep(0.01)

    def close(self) -> None:
        if self.closed or self.loop.closed:
            return
        self.loop.call(self.close_now)
        if self._own_loop:
            time.sleep(0.01)  # let the aborted sockets close on the loop
            self.loop.close()


# -- a registry of named links ----------------------------------------------------------------


class Links:
    """Named LinkProxy links on one loop; several cut or healed as one network event.

    with Links() as links:
        data = links.add("B->A data", target=a_private)     # a LinkProxy
        arb = links.add("B->arbiter", target=arbiter)
        with links.cut("B->A data", "B->arbiter"):          # one event, healed at exit
            ...
    """

    def __init__(self):
        self.loop = ProxyLoop("links")
        self._links: dict[str, LinkProxy] = {}
        self.events: list[NetworkEvent] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, name: str, target, **kw) -> LinkProxy:
        if name in self._links:
            raise ValueError(f"link {name!r} exists already")
        proxy = LinkProxy(target, name=name, loop=self.loop, **kw)
        self._links[name] = proxy
        return proxy

    def __getitem__(self, name: str) -> LinkProxy:
        return self._links[name]

    def __iter__(self):
        return iter(self._links.values())

    def names(self) -> list[str]:
        return list(self._links)

    def _select(self, names: Iterable[str]) -> list[LinkProxy]:
        names = list(names) or list(self._links)
        unknown = [n for n in names if n not in self._links]
        if unknown:
            raise KeyError(f"no link named {', '.join(map(repr, unknown))}")
        return [self._links[n] for n in names]

    def _event(self, action: str, names, fn, mode=None, **detail) -> None:
        proxies = self._select(names)

        def all_at_once():  # one turn of the loop: nothing is forwarded in between
            for proxy in proxies:
                fn(proxy)

        with self._lock:
            self.loop.call(all_at_once)
            event = NetworkEvent(
                time.monotonic(), action, tuple(p.name for p in proxies), mode, detail
            )
            self.events.append(event)

    def cut(self, *names: str, mode: str = PARTITION) -> Healing:
        """Cut the named links (all without names) as one event; heal them at a with's end."""
        if mode not in MODES:
            raise ValueError(f"cut mode {mode!r}: one of {', '.join(MODES)}")
        self._event("cut", names, lambda p: p.cut_now(mode), mode)
        chosen = names or tuple(self._links)
        return Healing(lambda: self.heal(*chosen))

    def heal(self, *names: str) -> None:
        self._event("heal", names, LinkProxy.heal_now)

    def reset(self, *names: str) -> None:
        self._event("reset", names, LinkProxy.reset_now)

    def refuse(self, *names: str) -> Healing:
        self._event("refuse", names, LinkProxy.refuse_now)
        chosen = names or tuple(self._links)
        return Healing(lambda: self.heal(*chosen))

    def delay(self, ms: float, *names: str, jitter_ms: float = 0.0) -> None:
        self._event(
            "delay", names, lambda p: p.delay_now(ms, jitter_ms), ms=ms, jitter_ms=jitter_ms
        )

    def stats(self) -> dict[str, LinkStats]:
        return self.loop.call(lambda: {n: p._stats() for n, p in self._links.items()})

    def close(self) -> None:
        if self.loop.closed:
            return
        self.loop.call(lambda: [p.close_now() for p in self._links.values()])
        time.sleep(0.01)
        self.loop.close()
