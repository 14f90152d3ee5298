"""A synthetic agent for bench/monitor.py: many agents' status streams (GET /v1/status/stream,
engine/agent/stream.py) from one small aiohttp process, so a collector can follow 200 members
on a machine that could not run 200 real engine instances.

Not a benchmark (the Makefile's bench loop runs only bench/[!_]*.py).

    python bench/_status_feed.py SPEC.json      # prints "ready" on stdout once listening

SPEC: {"control_port": P, "mode": "flip" | "detail",
       "hosts": [{"port": P, "credential": C,
                  "instances": [{"name", "mirror", "member", "member_type", "role"}, ...]}]}

Each host port speaks the agent's protocol: `Authorization: Bearer <credential>` checked (401
otherwise, as engine/agent/auth.py), then `event: snapshot` (seq 1, a new stream id) with every
instance's flat record (the keys of engine/agent/watch.py), then `event: instance` patches
{"changed": {key: value}} with seq + 1 each, and ": keep-alive" comments when idle.

Nothing changes until the control port is told to: POST /start {"seconds": S, "rate_hz": R}
makes every instance change R times a second for S seconds, instance i of n at offset i/n of
each period (spread evenly), then stop. GET /stats -> {"sent", "running", "subscribers",
"snapshots", "late_ms_max"}. What a change is (mode):

- flip:   one significant change that is exactly one history event per change: the primary
          (role "primary") alternates its failover mode (Agent / Arbiter Controlled), the backup
          its status (Backup / Synchronizing), an async its dejournaling ("Caught up" /
          "Warning! Dejournaling is stopped.").
- detail: only `detail` changes, to the wall time of sending ("sent <time.time()>"); the
          collector treats it as significant (monitor/states.py) and publishes at once, so a
          websocket viewer can time the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time

from aiohttp import web

HEARTBEAT_S = 10.0
ARBITER_BOTH = "Both failover members are connected to the arbiter"
TYPE_LABELS = {
    "failover": "Failover",
    "dr": "Disaster Recovery",
    "ro_reporting": "Read-Only Reporting",
    "rw_reporting": "Read-Write Reporting",
}
STOPPED = "Warning! Dejournaling is stopped."


def record(inst: dict, port: int, index: int) -> dict:
    """A flat instance record as engine/agent/watch.py makes one for a member that is up."""
    role = inst["role"]
    primary = role == "primary"
    rec = {
        "name": inst["name"],
        "superserver": f"127.0.0.1:{port + 1000 + index}",
        "mirror": inst["mirror"],
        "state": "up",
        "detail": "answering",
        "pid": 100000 + index,
        "role": role,
        "certificate": None,
        "member": inst["member"],
        "type": TYPE_LABELS[inst["member_type"]],
        "status": {"primary": "Primary", "backup": "Backup"}.get(role, "Connected"),
        "journal_transfer": "N/A" if primary else "Active" if role == "backup" else "Caught up",
        "dejournaling": "N/A" if primary else "Caught up",
        "journal_transfer_latency_s": None if primary else 0.0,
        "dejournal_latency_s": None if primary else 0.0,
        "incoming_journal_rate": None if primary else "12 KB/s (1s interval)",
        "incoming_journal_figures": None,
        "journal_end": [1, 4096],
        "databases": [{"name": "USER", "status": "Normal" if primary else "Dejournaling"}],
        "missing_mirrored_databases": [],
        "primary": None if primary else inst["mirror"] + "-primary",
        "codec": None,
        "members": None,
        "waiting_reason": None,
        "pending_members": [],
        "dn_updates": [],
        "mirror_version": 1,
        "mirrors": None,
        "failover_mode": "Agent Controlled" if inst["member_type"] == "failover" else None,
        "arbiter_connection": ARBITER_BOTH if inst["member_type"] == "failover" else None,
    }
    return rec


def flip(rec: dict) -> dict:
    """The next significant change of `rec` (mode flip): exactly one history event."""
    if rec["role"] == "primary":
        mode = rec["failover_mode"]
        return {
            "failover_mode": "Arbiter Controlled"
            if mode == "Agent Controlled"
            else "Agent Controlled"
        }
    if rec["role"] == "backup":
        return {"status": "Synchronizing" if rec["status"] == "Backup" else "Backup"}
    return {"dejournaling": STOPPED if rec["dejournaling"] == "Caught up" else "Caught up"}


class Subscriber:
    def __init__(self, host: Host):
        host.streams += 1
        self.stream = f"{host.epoch}-{host.streams}"
        self.seq = 0
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def event(self, kind: str, body: dict) -> None:
        self.seq += 1
        data = json.dumps({"seq": self.seq, "stream": self.stream, "type": kind, **body})
        self.queue.put_nowait(f"id: {self.seq}\nevent: {kind}\ndata: {data}\n\n".encode())


class Host:
    """One agent: its records and its subscribers."""

    def __init__(self, spec: dict, feed: Feed):
        self.port, self.credential, self.feed = spec["port"], spec["credential"], feed
        self.epoch = secrets.token_hex(4)
        self.streams = 0
        self.records = {
            inst["name"]: record(inst, self.port, i) for i, inst in enumerate(spec["instances"])
        }
        self.subscribers: set[Subscriber] = set()

    def change(self, name: str, changed: dict) -> None:
        self.records[name].update(changed)
        body = {"time": round(time.time(), 3), "name": name, "changed": changed}
        for sub in self.subscribers:
            sub.event("instance", body)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.credential:
            body = {"error": {"code": "wrong_credential", "message": "bad credential"}}
            return web.json_response(body, status=401)
        sub = Subscriber(self)
        snapshot = {
            "time": round(time.time(), 3),
            "interval_ms": 20,
            "agent": {"epoch": self.epoch, "listen": f"127.0.0.1:{self.port}"},
            "instances": self.records,
        }
        sub.event("snapshot", snapshot)
        self.subscribers.add(sub)
        self.feed.snapshots += 1
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        resp.force_close()
        try:
            await resp.prepare(request)
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    item = b": keep-alive\n\n"
                chunks = [item]
                while not sub.queue.empty():
                    chunks.append(sub.queue.get_nowait())
                await resp.write(b"".join(chunks))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.subscribers.discard(sub)
        return resp


class Feed:
    def __init__(self, spec: dict):
        self.mode = spec.get("mode", "flip")
        self.control_port = spec["control_port"]
        self.hosts = [Host(h, self) for h in spec["hosts"]]
        self.sent = 0
        self.snapshots = 0
        self.late_ms_max = 0.0
        self.task: asyncio.Task | None = None

    def stats(self) -> dict:
        return {
            "sent": self.sent,
            "running": self.task is not None and not self.task.done(),
            "subscribers": sum(len(h.subscribers) for h in self.hosts),
            "snapshots": self.snapshots,
            "late_ms_max": round(self.late_ms_max, 1),
        }

    async def run_changes(self, seconds: float, rate_hz: float) -> None:
        """Every instance changes rate_hz times a second for `seconds`, spread evenly."""
        order = [(h, name) for h in self.hosts for name in h.records]
        # interleave the hosts, so consecutive changes come from different agents
        order.sort(key=lambda hn: (list(hn[0].records).index(hn[1]), self.hosts.index(hn[0])))
        period = 1.0 / rate_hz
        step = period / len(order)
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        for k in range(round(seconds * rate_hz)):
            for i, (host, name) in enumerate(order):
                due = start + k * period + i * step
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.late_ms_max = max(self.late_ms_max, -delay * 1000)
                if self.mode == "detail":
                    changed = {"detail": f"sent {time.time():.6f}"}
                else:
                    changed = flip(host.records[name])
                host.change(name, changed)
                self.sent += 1

    async def control_start(self, request: web.Request) -> web.Response:
        if self.task is not None and not self.task.done():
            return web.json_response({"error": "already running"}, status=409)
        body = await request.json()
        self.task = asyncio.create_task(self.run_changes(body["seconds"], body["rate_hz"]))
        return web.json_response(self.stats())

    async def control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def serve(self) -> None:
        runners = []
        for host in self.hosts:
            app = web.Application()
            app.router.add_get("/v1/status/stream", host.stream)
            runners.append((web.AppRunner(app, access_log=None), host.port))
        control = web.Application()
        control.router.add_post("/start", self.control_start)
        control.router.add_get("/stats", self.control_stats)
        runners.append((web.AppRunner(control, access_log=None), self.control_port))
        for runner, port in runners:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()  # until terminated


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Feed(spec).serve())
    os._exit(0)  # open streams need not be closed politely


if __name__ == "__main__":
    main()
