"""Where one write's time goes: a profile of the path at one client (issue 15).

    .venv/bin/python bench/write_path.py [--quick] [--json] [--writes N] [--no-backup]

One client writes N keys, one at a time, to a mirror of a primary and an Active backup on this
machine.  The members run with ENGINE_TRACE_FILE set (engine/wire/trace.py): each notes when a
write reaches each step, on the host's one monotonic clock, so the steps of a write line up
across the three processes:

    client sends ─> p.request  the primary's session has parsed the request
                ─> p.flush    the Writer starts the batch (the next loop iteration)
                ─> p.written  pwrite done; next the bytes go to the data channel
                ─> p.synced   fdatasync done
                   b.received the backup has read the journal frame
                   b.acked    the backup has written it to its journal and sent the ack
                   p.acked    the primary has read the ack
                ─> p.answered the write is answered (synced and acked)
                ─> client has the answer

Printed: per step, the median and p99 in milliseconds over the writes (a step missing from a
write, such as an ack read before the fsync ended, is left out of that step's figures), and the
step's median over the slowest 1% of writes, which says what the tail is made of.  The
members, the client and everything else on the machine share its cores: other load moves every
figure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import mirror, percentile, stderr_log  # first: puts the repo root on sys.path

log = stderr_log("write_path")
VALUE = "v" * 100
# (name, from step, to step): "client.sent" / "client.answered" are the client's own notes
STEPS = [
    ("client -> primary parsed", "client.sent", "p.request"),
    ("parsed -> batch started", "p.request", "p.flush"),
    ("batch -> encoded and written (pwrite)", "p.flush", "p.written"),
    ("written -> synced (ship, fdatasync)", "p.written", "p.synced"),
    ("written -> backup read it", "p.written", "b.received"),
    ("backup read -> backup wrote and acked", "b.received", "b.acked"),
    ("backup acked -> primary read the ack", "b.acked", "p.acked"),
    ("synced and acked -> answered", "p.synced", "p.answered"),
    ("answered -> client has it", "p.answered", "client.answered"),
    ("whole write", "client.sent", "client.answered"),
]


async def write_many(address: str, n: int) -> list[tuple[int, int]]:
    from engine.client.app import AsyncClient

    client = AsyncClient([address])
    await client.connect()
    for i in range(200):  # warm up: connections, caches, the backup Active
        await client.set("USER", "Path", (i,), VALUE)
    spans = []
    for i in range(n):
        t0 = time.monotonic_ns()
        await client.set("USER", "Path", (i,), VALUE)
        spans.append((t0, time.monotonic_ns()))
    await client.close()
    return spans


def read_traces(directory: Path) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for path in directory.glob("trace.*"):
        for line in path.read_text().splitlines():
            step, ns = line.split()
            steps.setdefault(step, []).append(int(ns))
    for times in steps.values():
        times.sort()
    return steps


def first_within(times: list[int], start: int, end: int) -> int | None:
    i = bisect.bisect_left(times, start)
    return times[i] if i < len(times) and times[i] <= end else None


def profile(spans: list[tuple[int, int]], steps: dict[str, list[int]]) -> list[dict]:
    """Each step's p50 and p99 over all writes, and its p50 over the slowest 1% of writes
    (the whole write at or above its p99): what the tail is made of."""
    whole = sorted(t1 - t0 for t0, t1 in spans)
    slow_from = whole[min(len(whole) - 1, int(len(whole) * 0.99))]
    results = []
    for name, a, b in STEPS:
        durations, slowest = [], []
        for t0, t1 in spans:
            marks = {"client.sent": t0, "client.answered": t1}
            ta = marks.get(a) or first_within(steps.get(a, []), t0, t1)
            tb = marks.get(b) or first_within(steps.get(b, []), t0, t1)
            if ta is not None and tb is not None and tb >= ta:
                durations.append((tb - ta) / 1e6)
                if t1 - t0 >= slow_from:
                    slowest.append((tb - ta) / 1e6)
        if durations:
            results.append(
                {
                    "name": name,
                    "writes": len(durations),
                    "p50_ms": round(percentile(durations, 50), 4),
                    "p99_ms": round(percentile(durations, 99), 4),
                    "slowest_1pct_p50_ms": round(percentile(slowest, 50), 4) if slowest else None,
                }
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 writes")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--writes", type=int, default=None, help="writes measured (5000)")
    parser.add_argument("--no-backup", action="store_true", help="a lone primary")
    args = parser.parse_args()
    n = args.writes or (500 if args.quick else 5000)
    directory = Path(tempfile.mkdtemp(prefix="bench-write-path-"))
    os.environ["ENGINE_TRACE_FILE"] = str(directory / "trace")  # the members inherit it
    members = {"A": "failover"} if args.no_backup else {"A": "failover", "B": "failover"}
    with mirror("bench-write-path-", members) as (cfg, _):
        address = str(cfg.first_primary.superserver)
        if not args.no_backup:
            from replication import wait_backup_active

            wait_backup_active(address)
        log(f"{n} writes at one client")
        spans = asyncio.run(write_many(address, n))
    # the members wrote their traces as they stopped
    results = profile(spans, read_traces(directory))
    if args.json:
        print(json.dumps({"benchmark": "write_path", "results": results}))
    else:
        print(f"{'step':42} {'writes':>7} {'p50 ms':>8} {'p99 ms':>8} {'slowest 1%: p50':>16}")
        for r in results:
            slow = r["slowest_1pct_p50_ms"]
            print(
                f"{r['name']:42} {r['writes']:>7} {r['p50_ms']:>8.4f} {r['p99_ms']:>8.4f}"
                f" {'-' if slow is None else format(slow, '.4f'):>16}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
