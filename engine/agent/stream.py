"""The agent's status stream: GET /v1/status/stream, as server-sent events.

One poller per agent (StatusHub) asks every local instance for INFO + STATUS each
`stream_interval_ms` (engine/agent/watch.py), diffs each instance's flat record with the
previous one and hands the change to every subscriber.  The poller runs only while
somebody subscribes; the first subscriber waits for one full round so its snapshot is
current.

Events (SSE `event:` name = the JSON's "type"; `id:` = seq):
    snapshot  {"seq", "stream", "type", "time", "interval_ms", "agent", "instances": {name: record}}
    instance  {"seq", "stream", "type", "time", "name", "changed": {key: new value}}
    agent     {"seq", "stream", "type", "time", "changed": {key: new value}}
    goodbye   {"seq", "stream", "type", "time", "code", "reason"}   then the agent closes
A change is a patch of the record's top-level keys: apply it with record.update(changed);
a key's value is replaced whole (the `databases` list included).  `seq` starts at 1 with
the snapshot and grows by one per event on this connection; `stream` is new for every
connection, so a reconnect starts a new numbering with a new snapshot (Last-Event-ID is
ignored: there is no replay, a client always resyncs from the snapshot).  An idle stream
gets an SSE comment (": keep-alive") every `stream_heartbeat_ms`.

Slow subscribers: each has a bounded queue (`stream_queue` events).  The poller never
waits for a subscriber; one whose queue overflows is cut off: its queue is emptied, it is
sent a goodbye with code "overflow" and its connection is closed (aborted if even the
goodbye cannot be written within GOODBYE_S), so it reconnects and resyncs.

At most `max_streams` subscribers at once: one more is answered 503 too_many_streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import socket
import time

from aiohttp import web

from engine.agent.certificates import certificate_summary
from engine.agent.config import AgentConfig
from engine.agent.errors import CONFIG, api_error
from engine.agent.watch import CERT_RECHECK_S, InstanceWatch

log = logging.getLogger("engine.agent.server")

HUB = web.AppKey("status_hub", object)
GOODBYE_S = 2.0
# A subscriber that stops reading is noticed after this much unsent data (kernel send
# buffer + our transport backlog) rather than after megabytes of autotuned buffers.
SEND_BUFFER = 32 * 1024
BACKLOG_BYTES = 32 * 1024


class Subscriber:
    def __init__(self, stream_id: str, maxsize: int):
        self.stream = stream_id
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
        self.seq = 0
        self.closing: str | None = None  # why the stream ends; set once
        self.transport: asyncio.BaseTransport | None = None
        self.abort_timer: asyncio.TimerHandle | None = None

    def _event(self, kind: str, rest: str) -> bytes:
        """One SSE event; `rest` is the event's JSON object without its opening brace."""
        self.seq += 1
        data = f'{{"seq":{self.seq},"stream":"{self.stream}",{rest}'
        return f"id: {self.seq}\nevent: {kind}\ndata: {data}\n\n".encode()

    def offer(self, kind: str, rest: str) -> bool:
        """Queue an event without waiting; False (and the subscriber cut off) on overflow."""
        if self.closing is not None:
            return False
        try:
            self.queue.put_nowait(self._event(kind, rest))
        except asyncio.QueueFull:
            self.cut("overflow", f"subscriber fell {self.queue.maxsize} events behind; resync")
            return False
        return True

    def cut(self, code: str, reason: str) -> None:
        """End this stream: send a goodbye, close.  What is queued goes first on a shutdown
        (so the sequence has no gap); it is dropped on an overflow, or when the goodbye
        would not fit behind it."""
        if self.closing is not None:
            return
        self.closing = code
        if code == "overflow" or self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
        self.queue.put_nowait(self._event("goodbye", _rest("goodbye", code=code, reason=reason)))
        if self.transport is not None:
            # a subscriber that does not read cannot receive the goodbye either
            self.abort_timer = asyncio.get_running_loop().call_later(
                GOODBYE_S, self.transport.abort
            )
        log.info("status stream %s ends (%s): %s", self.stream, code, reason)


def _rest(kind: str, **fields) -> str:
    # default=str: a value an instance sends that JSON cannot hold must not stop the stream
    body = json.dumps({"type": kind, "time": round(time.time(), 3), **fields}, default=str)
    return body[1:]


class StatusHub:
    """The one poller of an agent and its subscribers."""

    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.epoch = secrets.token_hex(4)  # differs for every agent run
        self.counter = itertools.count(1)
        self.subscribers: set[Subscriber] = set()
        self.records: dict[str, dict] = {}
        self.agent: dict = {}
        self.tasks: list[asyncio.Task] = []
        self.ready: asyncio.Event | None = None
        self.joining = 0
        self.closed = False
        self.cut_off = 0  # subscribers disconnected for falling behind
        self.refused = 0  # subscribers refused for max_streams
        self.generation = 0  # one per start of the poller

    def stats(self) -> dict:
        return {
            "subscribers": len(self.subscribers),
            "polling": bool(self.tasks),
            "interval_ms": round(self.cfg.stream_interval_s * 1000),
            "cut_off": self.cut_off,
            "max_streams": self.cfg.max_streams,
            "refused": self.refused,
        }

    # -- subscribers ---------------------------------------------------------------
    async def subscribe(self) -> Subscriber:
        if self.closed:
            raise api_error(503, "stopping", "the agent is stopping")
        # a stream is a request that never ends, which no timer of the listener cuts
        # (engine/agent/limits.py), so their number is bounded here; those still joining
        # count too, or a burst of them would get past it
        if len(self.subscribers) + self.joining >= self.cfg.max_streams:
            self.refused += 1
            raise api_error(
                503,
                "too_many_streams",
                f"this agent serves at most {self.cfg.max_streams} status streams at once "
                "[limit max_streams]; try again later",
                {"Retry-After": "5"},
            )
        self.joining += 1
        try:
            if not self.tasks:
                self._start()
            await self.ready.wait()
        finally:
            self.joining -= 1
        if self.closed:
            raise api_error(503, "stopping", "the agent is stopping")
        sub = Subscriber(f"{self.epoch}-{next(self.counter)}", self.cfg.stream_queue)
        # no await between the snapshot and joining the set: no change falls in between
        sub.offer(
            "snapshot",
            _rest(
                "snapshot",
                interval_ms=round(self.cfg.stream_interval_s * 1000),
                agent=self.agent,
                instances=self.records,
            ),
        )
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers and not self.joining:
            self._stop()

    def _publish(self, kind: str, **fields) -> None:
        rest = _rest(kind, **fields)
        for sub in list(self.subscribers):
            if not sub.offer(kind, rest):
                self.subscribers.discard(sub)
                self.cut_off += 1
        if not self.subscribers and not self.joining:
            self._stop()

    async def close(self, reason: str = "the agent is stopping") -> None:
        self.closed = True
        for sub in list(self.subscribers):
            sub.cut("shutdown", reason)
        self.subscribers.clear()
        tasks = self._stop()
        if self.ready is not None:
            self.ready.set()  # nobody waits for a round that will not come
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the poller ------------------------------------------------------------------
    def _start(self) -> None:
        self.ready = asyncio.Event()
        self.records = {}
        self.agent = self._agent_record()
        self.generation += 1
        watches = [InstanceWatch(e, self.cfg.probe_timeout_s) for e in self.cfg.instances]
        pending = {w.entry.name for w in watches}
        self.tasks = [asyncio.create_task(self._watch_agent())]
        self.tasks += [
            asyncio.create_task(self._watch(w, pending, self.generation)) for w in watches
        ]
        if not pending:
            self.ready.set()
        log.info("status poller started (%d instances)", len(watches))

    def _stop(self) -> list[asyncio.Task]:
        tasks, self.tasks = self.tasks, []
        self.generation += 1
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("status poller stopped")
        return tasks

    async def _watch(self, watch: InstanceWatch, pending: set[str], generation: int) -> None:
        loop = asyncio.get_running_loop()
        name = watch.entry.name
        try:
            while True:
                started = loop.time()
                try:
                    record = await watch.poll()
                except Exception:  # a bug must not stop the other instances' records
                    log.exception("status poll of instance %s failed", name)
                    record = None
                if generation != self.generation:
                    # stopped, and maybe started again, while polling (a cancellation can be
                    # lost when the poll finishes at that moment): this round is not ours
                    return
                if record is not None:
                    self._update(name, record)
                pending.discard(name)
                if not pending:
                    self.ready.set()
                await asyncio.sleep(max(0.0, self.cfg.stream_interval_s - (loop.time() - started)))
        finally:
            await watch.close()

    def _update(self, name: str, record: dict) -> None:
        old = self.records.get(name)
        self.records[name] = record
        if old is not None:
            changed = {k: v for k, v in record.items() if old.get(k) != v}
            if changed:
                self._publish("instance", name=name, changed=changed)

    def _agent_record(self) -> dict:
        return {
            "epoch": self.epoch,
            "listen": str(self.cfg.listen),
            "certificate": certificate_summary(self.cfg.cert),
        }

    async def _watch_agent(self) -> None:
        """The agent's own record (its certificate may be renewed on disk)."""
        while True:
            await asyncio.sleep(CERT_RECHECK_S)
            record = self._agent_record()
            changed = {k: v for k, v in record.items() if self.agent.get(k) != v}
            if changed:
                self.agent = record
                self._publish("agent", changed=changed)


def _small_send_buffer(request: web.Request) -> None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


async def _backlog_below(transport: asyncio.BaseTransport, limit: int, stop=None) -> None:
    """Wait until at most `limit` bytes wait to be sent (or `stop()` is true)."""
    while transport.get_write_buffer_size() > limit and not (stop and stop()):
        await asyncio.sleep(0.02)


async def status_stream(request: web.Request) -> web.StreamResponse:
    hub: StatusHub = request.app[HUB]
    cfg: AgentConfig = request.app[CONFIG]
    sub = await hub.subscribe()
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Stream-Id": sub.stream,
        }
    )
    resp.force_close()  # a stream is the connection's last response
    try:
        _small_send_buffer(request)
        await resp.prepare(request)
        transport = request.transport
        if transport is None:
            return resp  # gone before the first byte
        sub.transport = transport
        if sub.closing is not None and sub.abort_timer is None:
            sub.abort_timer = asyncio.get_running_loop().call_later(GOODBYE_S, transport.abort)
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), cfg.stream_heartbeat_s)
            except TimeoutError:
                item = b": keep-alive\n\n"
            chunks = [item]
            while not sub.queue.empty():  # what piled up goes out in one write
                chunks.append(sub.queue.get_nowait())
            await resp.write(b"".join(chunks))
            if sub.closing is not None and sub.queue.empty():
                break  # the goodbye is written
            # aiohttp waits for the socket only every 64 KB written; wait here instead, so
            # a subscriber that stops reading stops taking events and its queue shows it
            await _backlog_below(transport, BACKLOG_BYTES, lambda: sub.closing is not None)
        await resp.write_eof()
        try:
            # the goodbye (and the end of the response) gets GOODBYE_S to leave; a
            # subscriber that does not read would otherwise hold the connection forever
            await asyncio.wait_for(_backlog_below(transport, 0), GOODBYE_S)
        except TimeoutError:
            transport.abort()
    except ConnectionError:
        pass  # the subscriber went away, or was cut off and aborted
    finally:
        hub.unsubscribe(sub)
        if sub.abort_timer is not None:
            sub.abort_timer.cancel()
    return resp
