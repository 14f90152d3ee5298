"""Agent status stream fan-out: time from a member change to the event at each subscriber.

    .venv/bin/python bench/agent.py [--quick] [--json] [--samples N] [--intervals MS,MS]

A mirror of three real members (failover A and B, DR async C) and one real agent process
(`python -m engine agent`) on loopback: plain HTTP with a bearer credential for each poll
interval, then mutual TLS (throwaway CA) at the shortest interval.  1, 10 and 50
subscribers follow GET /v1/status/stream (aiohttp client, all in this process).  Each
sample makes one change and times, per subscriber, the arrival of the event that shows it:

- write:     one SET on the primary; the event is A's `journal_end` patch.  Timed from
             just before the SET is sent (so the commit, with the backup's ack, is inside).
- dejournal: stop / start dejournaling on C (ADMIN); the event is C's `dejournaling`
             patch ("Warning! Dejournaling is stopped." / "Caught up").

The agent polls every instance each `stream_interval_ms`, so a change waits on average
half an interval (at most a whole one) before the agent even sees it: the poll interval
bounds the latency from below and is reported with each row.  Before each change the bench
waits a random fraction of the interval, so changes fall anywhere in the poll cycle.
Target: p99 <= 50 ms.  Subscribers, the members and the agent share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from _common import (  # first: puts the repository root on sys.path, for engine
    ROOT,
    free_ports,
    mirror,
    percentile,
    terminate,
)

from engine.client.app import AsyncClient
from engine.wire.admin_token import read_token
from engine.wire.tls import client_context, make_ca, make_cert

SUBSCRIBERS = (1, 10, 50)


# -- processes ------------------------------------------------------------------------


def make_pki(directory: Path) -> dict:
    ca = make_ca(directory)
    agent = make_cert(ca, directory, "agent-bench")
    portal = make_cert(ca, directory, "portal")
    return {"ca": ca.cert_path, "agent": agent, "portal": portal}


class AgentProc:
    def __init__(self, directory: Path, cfg, interval_ms: int, pki: dict | None = None):
        self.port = free_ports(1)[0]
        self.credential = secrets.token_urlsafe(24)
        self.pki = pki
        lines = [
            "[agent]",
            f'listen = "127.0.0.1:{self.port}"',
            f"stream_interval_ms = {interval_ms}",
            "",
        ]
        if pki is None:
            lines += ["[agent.auth]", f'credential = "{self.credential}"']
        else:
            lines += [
                "[agent.tls]",
                f'cert = "{pki["agent"].cert}"',
                f'key = "{pki["agent"].key}"',
                f'ca = "{pki["ca"]}"',
                'allowed_dns = ["CN=portal,O=Mirror Portal"]',
            ]
        for m in cfg.members:
            lines += [
                "",
                "[[instances]]",
                f'name = "{m.name}"',
                f'superserver = "{m.superserver}"',
                f'data_dir = "{m.data_dir}"',
                f'mirror = "{cfg.name}"',
            ]
        path = directory / f"agent-{interval_ms}{'-tls' if pki else ''}.toml"
        path.write_text("\n".join(lines) + "\n")
        self.log = path.with_suffix(".log")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "agent", "--config", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(ROOT),
            )
        deadline = time.monotonic() + 20
        while "agent listening" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    def ssl_context(self):
        if self.pki is None:
            return None
        portal = self.pki["portal"]
        return client_context(portal.cert, portal.key, self.pki["ca"])

    def stop(self) -> None:
        terminate(self.proc)


# -- subscribers ------------------------------------------------------------------------


class Probe:
    """What the current sample waits for: the first matching event at each subscriber."""

    def __init__(self, name: str, key: str, n: int):
        self.name, self.key = name, key
        self.marker = f'"name": "{name}"'.encode()
        self.started = time.perf_counter()
        self.latencies: dict[int, float] = {}
        self.n = n
        self.done = asyncio.Event()

    def seen(self, sub: int, event: dict, now: float) -> None:
        if sub in self.latencies or event.get("name") != self.name:
            return
        if self.key in event.get("changed", {}):
            self.latencies[sub] = (now - self.started) * 1000
            if len(self.latencies) == self.n:
                self.done.set()


class Fanout:
    def __init__(self, agent: AgentProc, n: int):
        self.url, self.n = agent.url, n
        self.ssl = agent.ssl_context()
        self.headers = {} if agent.pki else {"Authorization": f"Bearer {agent.credential}"}
        self.probe: Probe | None = None
        self.snapshots = 0
        self.gaps = 0
        self.tasks: list[asyncio.Task] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self.tasks = [asyncio.create_task(self._follow(i)) for i in range(self.n)]
        deadline = time.monotonic() + 30
        while self.snapshots < self.n:
            if time.monotonic() > deadline:
                raise RuntimeError("subscribers did not all get their snapshot")
            await asyncio.sleep(0.01)

    async def _follow(self, sub: int) -> None:
        # seq comes from the SSE id: line; only events that may be the awaited change are
        # parsed (50 subscribers share this one process, unlike real ones)
        seq = 0
        url = self.url + "/v1/status/stream"
        async with self.session.get(url, headers=self.headers, ssl=self.ssl or True) as r:
            r.raise_for_status()
            async for raw in r.content:
                if raw.startswith(b"id:"):
                    now = time.perf_counter()
                    n = int(raw[3:])
                    if n != seq + 1:
                        self.gaps += 1
                    seq = n
                elif raw.startswith(b"event: snapshot"):
                    self.snapshots += 1
                elif (
                    raw.startswith(b"data:") and self.probe is not None and self.probe.marker in raw
                ):
                    self.probe.seen(sub, json.loads(raw[5:]), now)

    async def measure(self, name: str, key: str, change) -> list[float]:
        self.probe = Probe(name, key, self.n)
        await change()
        await asyncio.wait_for(self.probe.done.wait(), 10)
        values = list(self.probe.latencies.values())
        self.probe = None
        return values

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await t
        await self.session.close()


async def run_row(agent: AgentProc, cfg, n: int, interval_ms: int, samples: int) -> list[dict]:
    fan = Fanout(agent, n)
    await fan.start()
    primary = AsyncClient(str(cfg.member("A").superserver))
    dr = AsyncClient(
        str(cfg.member("C").superserver),
        follow_primary=False,
        admin_token=read_token(cfg.member("C").data_dir),  # it stops / starts dejournaling
    )
    await primary.connect()
    await dr.connect()
    rng = random.Random(n)
    writes: list[float] = []
    dejournal: list[float] = []
    stopped = False
    try:
        for i in range(samples):
            await asyncio.sleep(rng.uniform(0, interval_ms / 1000))
            writes += await fan.measure(
                "A", "journal_end", lambda i=i: primary.set("USER", "Bench", (n, i), i)
            )
            await asyncio.sleep(rng.uniform(0, interval_ms / 1000))
            action = "dejournal_start" if stopped else "dejournal_stop"
            stopped = not stopped
            dejournal += await fan.measure("C", "dejournaling", lambda a=action: dr.admin(a))
    finally:
        if stopped:
            await dr.admin("dejournal_start")
        await primary.close()
        await dr.close()
        await fan.stop()
    rows = []
    for kind, values in (("write", writes), ("dejournal", dejournal)):
        rows.append(
            {
                "name": f"{kind} change, {n} subscriber{'s' if n > 1 else ''}, "
                f"poll {interval_ms} ms{', mTLS' if agent.pki else ''}",
                "tls": agent.pki is not None,
                "change": kind,
                "subscribers": n,
                "poll_interval_ms": interval_ms,
                "changes": samples,
                "events_timed": len(values),
                "p50_ms": round(percentile(values, 50), 2),
                "p99_ms": round(percentile(values, 99), 2),
                "max_ms": round(max(values), 2),
                "seq_gaps": fan.gaps,
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, one poll interval")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--samples", type=int, help="changes per row (default 100, quick 25)")
    ap.add_argument("--intervals", help="poll intervals in ms (default 20,100; quick 20)")
    args = ap.parse_args()
    samples = args.samples or (25 if args.quick else 100)
    intervals = [int(x) for x in (args.intervals or ("20" if args.quick else "20,100")).split(",")]
    members = {"A": "failover", "B": "failover", "C": "dr"}
    results: list[dict] = []
    with mirror("bench-agent-", members) as (cfg, directory):
        # each interval over plain HTTP (credential), then the shortest one over mutual TLS
        runs = [(i, None) for i in intervals] + [(min(intervals), make_pki(directory))]
        for interval, pki in runs:
            agent = AgentProc(directory, cfg, interval, pki)
            try:
                for n in SUBSCRIBERS:
                    results += asyncio.run(run_row(agent, cfg, n, interval, samples))
            finally:
                agent.stop()
    if args.json:
        print(json.dumps({"benchmark": "agent", "results": results}))
    else:
        head = "change / subscribers / poll interval"
        print(f"{head:<52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for r in results:
            print(f"{r['name']:<52} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}")
        print("target: p99 <= 50 ms (the poll interval bounds latency from below)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
