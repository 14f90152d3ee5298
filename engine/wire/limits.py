"""Limits of one listener: how many connections, how long each may wait, how much it may buffer.

A listener that serves frames (engine/wire/protocol.py) hands every connection to a
ConnectionLimits and tells it what arrived; the limits answer with a reason to close it,
or None.  What they bound (docs/hardening.md, "Application port (superserver)"):

    max_connections              connections open at once; one more is refused at once
    handshake_timeout_s          from connecting to the first whole frame
    idle_timeout_s               with nothing received and no request in flight
    frame_timeout_s              from a frame's first byte to its last (slow senders)
    max_buffered_per_connection  bytes of an unfinished frame one connection may hold
    max_buffered_total           the same, summed over every connection of the listener

Each has a default and a range (SETTINGS, LimitSettings.from_mapping).  Every refusal and
every close is counted (ConnectionLimits.counts) and logged through a token bucket per limit,
so a flood of hostile connections cannot flood the log: lines beyond the bucket are counted
and the count is logged with the next line, or on its own as soon as the bucket allows.
Every line names its limit as `[limit NAME=VALUE]`, and a count of lines not logged as
`(+N more not logged)`.

A connection object handed to the limits needs two methods: `in_flight()` (true while it owes
the peer a reply: then it is not idle, and a frame it stopped reading is not slow) and
`limit_close(message)` (reply with the reason and close).  Timers are checked by one sweeper
task per listener, running only while it has connections.

The total cap evicts: when the bytes a connection just sent would take the total over
max_buffered_total, the connections holding the most bytes of an unfinished frame are closed,
largest first, until it fits (`limit_close`, called by the limits themselves); the connection
whose bytes crossed the cap is closed instead only when it holds at least as much as any other.
So connections filling the cap with large half-sent frames cannot make a client sending an
ordinary frame the one cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields

from engine.wire.protocol import DEFAULT_MAX_FRAME, HEADER_SIZE

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# descriptors kept free for everything else an instance opens (stores, journal, data channel)
DESCRIPTOR_RESERVE = 256


class LimitError(ValueError):
    """A limit setting out of its range; the message names the setting."""


@dataclass(frozen=True)
class Limit:
    default: int | float
    low: int | float
    high: int | float
    unit: str  # "" (a count), "s" or "bytes"
    help: str


# every limit: default and range
SETTINGS: dict[str, Limit] = {
    "max_connections": Limit(
        1000, 1, 100_000, "", "connections open at once; one more is refused at once"
    ),
    "handshake_timeout_s": Limit(
        10.0, 0.1, 3600.0, "s", "from connecting to the first whole request"
    ),
    "idle_timeout_s": Limit(
        300.0, 0.1, 86_400.0, "s", "a connection that sends nothing (and waits for nothing)"
    ),
    "frame_timeout_s": Limit(60.0, 0.1, 3600.0, "s", "from a frame's first byte to its last"),
    "max_buffered_per_connection": Limit(
        DEFAULT_MAX_FRAME + HEADER_SIZE,
        KIB,
        DEFAULT_MAX_FRAME + HEADER_SIZE,
        "bytes",
        "bytes of an unfinished frame one connection may hold (header included)",
    ),
    "max_buffered_total": Limit(
        64 * MIB, KIB, 64 * GIB, "bytes", "bytes of unfinished frames over all connections"
    ),
}
_SUFFIXES = {"k": KIB, "kib": KIB, "m": MIB, "mib": MIB, "g": GIB, "gib": GIB}


def check_limit(key: str, value, where: str = "") -> int | float:
    """`value` of limit `key` (a number, or for byte limits text such as "64MiB"), checked."""
    name = f"{where}{key}"
    if key not in SETTINGS:
        raise LimitError(f"{name}: unknown limit (limits: {', '.join(SETTINGS)})")
    limit = SETTINGS[key]
    if isinstance(value, str):
        value = parse_value(limit, value, name)
    integral = isinstance(limit.default, int)
    ok_type = type(value) is int if integral else type(value) in (int, float)
    if not ok_type or not limit.low <= value <= limit.high:
        kind = "an integer" if integral else "a number of seconds"
        raise LimitError(f"{name}: must be {kind} from {limit.low} to {limit.high}, got {value!r}")
    return value if integral else float(value)


def parse_value(limit: Limit, text: str, name: str) -> int | float:
    raw = text.strip().lower().replace("_", "")
    try:
        if limit.unit == "bytes":
            digits = raw.rstrip("kmgib")
            scale = _SUFFIXES.get(raw[len(digits) :].strip(), 1 if digits == raw else 0)
            if not scale:
                raise ValueError(raw)
            return int(digits) * scale
        if isinstance(limit.default, int):
            return int(raw)
        return float(raw.removesuffix("s"))
    except ValueError:
        raise LimitError(f"{name}: {text!r} is not a valid value") from None


@dataclass(frozen=True)
class LimitSettings:
    max_connections: int = SETTINGS["max_connections"].default
    handshake_timeout_s: float = SETTINGS["handshake_timeout_s"].default
    idle_timeout_s: float = SETTINGS["idle_timeout_s"].default
    frame_timeout_s: float = SETTINGS["frame_timeout_s"].default
    max_buffered_per_connection: int = SETTINGS["max_buffered_per_connection"].default
    max_buffered_total: int = SETTINGS["max_buffered_total"].default

    @classmethod
    def from_mapping(cls, values: Mapping | None, where: str = "") -> LimitSettings:
        """Settings from `values` (missing ones take their default), each checked."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(SETTINGS))
        if unknown:
            check_limit(unknown[0], None, where)  # raises, naming it
        out = cls(**{k: check_limit(k, v, where) for k, v in values.items()})
        if out.max_buffered_total < out.max_buffered_per_connection:
            raise LimitError(
                f"{where}max_buffered_total ({out.max_buffered_total}) must be at least "
                f"max_buffered_per_connection ({out.max_buffered_per_connection})"
            )
        return out

    def changed(self) -> dict:
        """The settings that differ from their defaults."""
        values = asdict(self)
        return {f.name: values[f.name] for f in fields(self) if values[f.name] != f.default}


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; take() spends one if there is one."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimitedLog:
    """Log lines of each kind through its own token bucket; count the ones left out."""

    def __init__(
        self,
        logger: logging.Logger,
        rate: float = 1.0,
        burst: float = 20,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger, self.rate, self.burst, self.clock = logger, rate, burst, clock
        self.buckets: dict[str, TokenBucket] = {}
        self.suppressed: Counter[str] = Counter()
        self.levels: dict[str, int] = {}
        self.summaries: dict[str, str] = {}

    def emit(self, kind: str, level: int, message: str, summary: str = "") -> bool:
        """Log `message` unless kind's bucket is empty (then count it); True when logged.
        `summary` introduces the count of lines left out, when logged on its own."""
        bucket = self.buckets.get(kind)
        if bucket is None:
            bucket = self.buckets[kind] = TokenBucket(self.rate, self.burst, self.clock)
        self.levels[kind] = level
        self.summaries[kind] = summary or kind
        if not bucket.take():
            self.suppressed[kind] += 1
            return False
        left_out = self.suppressed.pop(kind, 0)
        if left_out:
            message += f" (+{left_out} more not logged)"
        self.logger.log(level, "%s", message)
        return True

    def flush(self, force: bool = False) -> None:
        """Log the counts of lines left out, as each kind's bucket allows (all with force)."""
        for kind in list(self.suppressed):
            if force or self.buckets[kind].take():
                n = self.suppressed.pop(kind)
                self.logger.log(
                    self.levels[kind], "%s (+%d more not logged)", self.summaries[kind], n
                )


@dataclass(slots=True)
class ConnState:
    peer: str
    opened: float
    last: float
    frame_started: float | None = None
    buffered: int = 0
    greeted: bool = False  # a whole frame arrived
    timed: bool = True  # false once it is a data channel, which has its own liveness


def _started(state: ConnState) -> float:
    return state.frame_started if state.frame_started is not None else float("inf")


class ConnectionLimits:
    """The limits of one listener and what its connections hold now."""

    def __init__(
        self,
        settings: LimitSettings | None = None,
        listener: str = "superserver",
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_rate: float = 1.0,
        log_burst: float = 20,
    ):
        self.settings = settings or LimitSettings()
        self.listener = listener
        self.clock = clock
        self.logger = logger or logging.getLogger("engine.wire.limits")
        self.log = RateLimitedLog(self.logger, log_rate, log_burst, clock)
        self.max_connections = self.settings.max_connections
        self.conns: dict[object, ConnState] = {}
        self.holding: dict[object, ConnState] = {}  # the connections with buffered bytes
        # the holders, largest first (then oldest frame), for eviction in O(log n): entries
        # (-buffered, frame start, seq, weak conn) pushed as they change, stale ones dropped
        # lazily; weak, so that a closed connection's buffers are not kept for the heap's sake
        self._largest: list[tuple[int, float, int, weakref.ref]] = []
        self._seq = itertools.count()
        self.buffered_total = 0
        self.counts: Counter[str] = Counter()  # refusals and closes, per limit
        self.sweeper: asyncio.Task | None = None

    # -- start-up -------------------------------------------------------------------
    def fit_descriptors(self, reserve: int = DESCRIPTOR_RESERVE) -> int:
        """Make room for max_connections open descriptors (raising the soft limit up to
        the hard one); when there is not, lower it to what fits and say so."""
        try:
            import resource
        except ImportError:  # pragma: no cover - not on Linux
            return self.max_connections
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = self.settings.max_connections + reserve
        if soft != resource.RLIM_INFINITY and soft < need:
            target = need if hard == resource.RLIM_INFINITY else min(need, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
        if soft != resource.RLIM_INFINITY and soft < need:
            self.max_connections = max(1, soft - reserve)
            self.logger.warning(
                "%s listener: max_connections %d lowered to %d: this process may open %d "
                "descriptors and keeps %d for the rest",
                self.listener,
                self.settings.max_connections,
                self.max_connections,
                soft,
                reserve,
            )
        return self.max_connections

    def describe(self) -> str:
        s = self.settings
        return (
            f"{self.listener} limits: {self.max_connections} connections, handshake "
            f"{s.handshake_timeout_s:g} s, idle {s.idle_timeout_s:g} s, frame "
            f"{s.frame_timeout_s:g} s, buffered {s.max_buffered_per_connection} bytes per "
            f"connection and {s.max_buffered_total} in all"
        )

    # -- connections ----------------------------------------------------------------
    def admit(self, conn: object, peer: str) -> str | None:
        """Take a new connection, or the reason to refuse it (counted and logged)."""
        if len(self.conns) >= self.max_connections:
            reason = (
                f"too many connections: {len(self.conns)} open "
                f"[limit max_connections={self.max_connections}]"
            )
            self._count(
                "max_connections",
                logging.WARNING,
                f"{self.listener} listener: refused {peer}: {reason}",
            )
            return reason
        now = self.clock()
        self.conns[conn] = ConnState(peer, now, now)
        self._ensure_sweeper()
        return None

    def release(self, conn: object) -> None:
        state = self.conns.pop(conn, None)
        if state is not None:
            self.buffered_total -= state.buffered
            self.holding.pop(conn, None)

    def exempt(self, conn: object) -> None:
        """No timers for this connection (a data channel: its links have their own)."""
        state = self.conns.get(conn)
        if state is not None:
            state.timed = False

    def received(self, conn: object, pending: int, expected: int | None, frames: int) -> str | None:
        """Bytes arrived: `pending` bytes of an unfinished frame are held now, of a frame
        `expected` bytes long (header included; None before its header is in) and `frames`
        frames were completed.  The reason to close the connection, or None.  When the total
        cap is crossed, other connections may be closed here (see _make_room)."""
        state = self.conns.get(conn)
        if state is None:
            return None
        s = self.settings
        now = state.last = self.clock()
        if frames:
            state.greeted = True
        if not pending:
            state.frame_started = None
        elif frames or state.frame_started is None:
            state.frame_started = now
        self.buffered_total += pending - state.buffered
        state.buffered = pending
        if pending:
            self.holding[conn] = state
            entry = (-pending, _started(state), next(self._seq), weakref.ref(conn))
            heapq.heappush(self._largest, entry)
            if len(self._largest) > 4 * len(self.holding) + 64:
                self._rebuild_largest()
        else:
            self.holding.pop(conn, None)
        cap = s.max_buffered_per_connection
        if expected is not None and expected > cap:
            return self._close(
                conn,
                "max_buffered_per_connection",
                f"a frame of {expected} bytes is larger than one connection may buffer "
                f"[limit max_buffered_per_connection={cap}]",
            )
        if pending > cap:
            return self._close(
                conn,
                "max_buffered_per_connection",
                f"{pending} bytes of an unfinished frame buffered "
                f"[limit max_buffered_per_connection={cap}]",
            )
        if self.buffered_total > s.max_buffered_total:
            return self._make_room(conn, state)
        return None

    def _make_room(self, conn: object, state: ConnState) -> str | None:
        """`conn`'s bytes took the total over its cap: close the connections holding the
        most bytes of an unfinished frame, largest first (the oldest frame first among
        equals), until the total fits, each with its reason (counted and logged).  `conn`
        itself is closed instead, and its reason returned, once no other holds more."""
        cap = self.settings.max_buffered_total
        while self.buffered_total > cap:
            total = self.buffered_total
            victim, held = self._largest_other(conn)
            if held is None or held.buffered <= state.buffered:
                return self._close(
                    conn,
                    "max_buffered_total",
                    f"{state.buffered} bytes of an unfinished frame, the most of any "
                    f"connection, and unfinished frames of all connections would hold {total} "
                    f"bytes [limit max_buffered_total={cap}]",
                )
            reason = (
                f"evicted: {held.buffered} bytes of an unfinished frame, the most of any "
                f"connection, when unfinished frames of all connections would hold {total} "
                f"bytes (crossed by {state.peer}) [limit max_buffered_total={cap}]"
            )
            self._close(victim, "max_buffered_total", reason)
            try:
                victim.limit_close(reason)
            except Exception:  # one broken connection must not stop the others
                self.logger.exception("%s listener: closing a connection", self.listener)
            self.release(victim)  # (limit_close released it; never pick it again)
        return None

    def _largest_other(self, conn: object) -> tuple[object | None, ConnState | None]:
        """The holder of the most buffered bytes other than `conn` (the oldest frame first
        among equals), or (None, None)."""
        heap, aside, found = self._largest, [], (None, None)
        while heap:
            neg, started, _, ref = heap[0]
            other = ref()
            st = self.holding.get(other) if other is not None else None
            if st is None or st.buffered != -neg or _started(st) != started:
                heapq.heappop(heap)  # stale: that connection holds something else now
            elif other is conn:
                aside.append(heapq.heappop(heap))
            else:
                found = (other, st)
                break
        for entry in aside:
            heapq.heappush(heap, entry)
        return found

    def _rebuild_largest(self) -> None:
        self._largest = [
            (-st.buffered, _started(st), next(self._seq), weakref.ref(c))
            for c, st in self.holding.items()
        ]
        heapq.heapify(self._largest)

    def expired(self, now: float | None = None) -> list[tuple[object, str]]:
        """The connections a timer closes now, with the reason (counted and logged)."""
        now = self.clock() if now is None else now
        s = self.settings
        out = []
        for conn, state in list(self.conns.items()):
            if not state.timed:
                continue
            if conn.in_flight():  # waiting for us: neither idle nor slow
                state.last = now
                if state.frame_started is not None:
                    state.frame_started = now
                continue
            reason = None
            if state.frame_started is not None and now - state.frame_started > s.frame_timeout_s:
                reason = (
                    "frame_timeout_s",
                    f"a frame not finished {now - state.frame_started:.1f} s after it began "
                    f"({state.buffered} bytes in) [limit frame_timeout_s={s.frame_timeout_s:g}]",
                )
            elif not state.greeted and now - state.opened > s.handshake_timeout_s:
                reason = (
                    "handshake_timeout_s",
                    f"no request {now - state.opened:.1f} s after connecting "
                    f"[limit handshake_timeout_s={s.handshake_timeout_s:g}]",
                )
            elif state.greeted and now - state.last > s.idle_timeout_s:
                reason = (
                    "idle_timeout_s",
                    f"idle for {now - state.last:.1f} s "
                    f"[limit idle_timeout_s={s.idle_timeout_s:g}]",
                )
            if reason is not None:
                out.append((conn, self._close(conn, *reason)))
        return out

    # -- counting and logging -------------------------------------------------------
    def _close(self, conn: object, limit: str, reason: str) -> str:
        state = self.conns.get(conn)
        peer = state.peer if state else "?"
        level = logging.INFO if limit == "idle_timeout_s" else logging.WARNING
        self._count(limit, level, f"{self.listener} listener: closed {peer}: {reason}")
        self.release(conn)
        return reason

    def _count(self, limit: str, level: int, line: str) -> None:
        self.counts[limit] += 1
        what = "refused" if limit == "max_connections" else "closed"
        self.log.emit(limit, level, line, f"{self.listener} listener: {what} [limit {limit}]")

    def warn(self, kind: str, line: str) -> None:
        """Another warning about a peer, through the same rate limit (per kind)."""
        self.log.emit(kind, logging.WARNING, line, f"{self.listener} listener: {kind}")

    def stats(self) -> dict:
        return {
            "connections": len(self.conns),
            "max_connections": self.max_connections,
            "buffered": self.buffered_total,
            "refused": self.counts["max_connections"],
            "closed": {k: v for k, v in self.counts.items() if k != "max_connections"},
        }

    # -- the sweeper ------------------------------------------------------------------
    @property
    def sweep_interval(self) -> float:
        s = self.settings
        shortest = min(s.handshake_timeout_s, s.idle_timeout_s, s.frame_timeout_s)
        return min(1.0, max(0.05, shortest / 4))

    def _ensure_sweeper(self) -> None:
        if self.sweeper is None or self.sweeper.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not in a loop: whoever holds these limits calls expired()
                return
            self.sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while self.conns:
            await asyncio.sleep(self.sweep_interval)
            for conn, reason in self.expired():
                try:
                    conn.limit_close(reason)
                except Exception:  # one broken connection must not stop the sweeper
                    self.logger.exception("%s listener: closing a connection", self.listener)
            self.log.flush()
        self.log.flush(force=True)  # nothing left open: every count is told now

    def close(self) -> None:
        """Stop the sweeper (the listener is closing); the counts not yet logged are logged."""
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.log.flush(force=True)
