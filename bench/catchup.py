"""Catch-up of a database copy that is N journal records behind the primary.

    .venv/bin/python bench/catchup.py [--quick] [--json] [--records N]

A mirror of two real members on loopback: A (failover, the primary) and D (DR async).
While D's copy of USER is held back, A takes N SETs (1,000,000; 100,000 with --quick) of
distinct keys in random order with 100-byte values, written through engine.client.app with many
requests in flight; the bench waits until D has received all of that journal, then times
how long D takes to apply it:

- catchup action:    USER dismounted on D while A writes; `mount` (Needs Catchup), then
                     `catchup {names: [USER], wait: true}`, timed until the reply (the copy
                     is Dejournaling again).  The records are replayed from D's journal
                     files (engine/member/dbops.py: replay).
- dejournal restart: dejournaling stopped on D (`dejournal_stop`) while A writes; D keeps
                     the received records in memory (guide §5.9); timed from
                     `dejournal_start` until D's applied position of USER equals A's
                     (polled every 10 ms).

Each row then checks that D's USER has the same digest as A's (not timed).  One run per
row.  The members and the writing client share this machine's cores, so other load moves
every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time

from _common import (  # first: puts the repository root on sys.path, for engine
    cleanup_on_sigterm,
    mirror,
    stderr_log,
    wait_journal_received,
)

from engine.client.app import AsyncClient, Client

DB = "USER"
VALUE = "v" * 100
WRITERS = 500  # SETs in flight (group commit on the primary)
LONG = 3600.0  # client timeout for requests that wait for a whole catch-up


log = stderr_log("catchup")


@contextlib.contextmanager
def clients():
    """A running primary A and DR async D; yields (client on A, client on D)."""
    with (
        mirror("bench-catchup-", {"A": "failover", "D": "dr"}) as (cfg, _),
        Client([str(cfg.member("A").superserver)], timeout=LONG) as a,
        Client([str(cfg.member("D").superserver)], follow_primary=False, timeout=LONG) as d,
    ):
        yield a, d


async def _write(address: str, tag: str, n: int) -> None:
    keys = list(range(n))
    random.Random(n).shuffle(keys)  # distinct keys in random order, not B-tree appends
    async with AsyncClient([address], timeout=60) as c:
        todo = iter(keys)

        async def writer():
            for i in todo:
                await c.set(DB, "Bench", (tag, i), VALUE)

        await asyncio.gather(*(writer() for _ in range(WRITERS)))


def write_behind(a: Client, d: Client, tag: str, n: int) -> float:
    """N SETs on the primary; returns once D holds all of that journal.  Seconds writing."""
    t0 = time.perf_counter()
    asyncio.run(_write(a.address, tag, n))
    seconds = time.perf_counter() - t0
    log(f"{tag}: wrote {n:,} records in {seconds:.1f} s; waiting for D to receive them")
    wait_journal_received(a, d, "D", timeout=LONG)
    return seconds


def applied(client: Client) -> list | None:
    return client.admin("positions")[DB]


def catchup_action(a: Client, d: Client, n: int) -> tuple[float, float]:
    d.admin("dismount", DB)
    write_s = write_behind(a, d, "catchup", n)
    status = d.admin("mount", DB)["status"]
    if status != "Needs Catchup":
        raise RuntimeError(f"mounted {DB} on D is {status!r}, expected 'Needs Catchup'")
    t0 = time.perf_counter()
    d.admin("catchup", {"names": [DB], "wait": True})
    seconds = time.perf_counter() - t0
    rows = {r["name"]: r for r in d.status()["databases"]}
    if rows[DB]["status"] != "Dejournaling" or applied(d) != applied(a):
        raise RuntimeError(f"catch-up did not bring {DB} up to date: {rows[DB]}")
    return seconds, write_s


def dejournal_restart(a: Client, d: Client, n: int) -> tuple[float, float]:
    d.admin("dejournal_stop")
    write_s = write_behind(a, d, "restart", n)
    want = applied(a)
    if applied(d) == want:
        raise RuntimeError("D applied the records although dejournaling was stopped")
    t0 = time.perf_counter()
    d.admin("dejournal_start")
    while applied(d) != want:
        if time.perf_counter() - t0 > LONG:
            raise RuntimeError(f"D did not apply the held records within {LONG:.0f} s")
        time.sleep(0.01)
    return time.perf_counter() - t0, write_s


def run(n: int) -> list[dict]:
    results = []
    with clients() as (a, d):
        for name, measure in (
            ("catchup action (dismounted copy, from journal files)", catchup_action),
            ("dejournal restart (held records)", dejournal_restart),
        ):
            seconds, write_s = measure(a, d, n)
            identical = a.admin("digest", DB) == d.admin("digest", DB)
            log(f"{name}: {seconds:.2f} s; D's copy identical to A's: {identical}")
            results.append(
                {
                    "name": name,
                    "records": n,
                    "seconds": round(seconds, 3),
                    "records_per_s": round(n / seconds),
                    "identical": identical,
                    "write_s": round(write_s, 1),
                }
            )
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 records (well under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--records", type=int, help="records behind (1,000,000; quick 100,000)")
    args = ap.parse_args()
    cleanup_on_sigterm()
    n = args.records or (100_000 if args.quick else 1_000_000)
    results = run(n)
    if args.json:
        print(json.dumps({"benchmark": "catchup", "results": results}))
        return 0
    print(f"{'name':<54} {'records':>10} {'seconds':>8} {'records/s':>10} {'identical':>9}")
    for r in results:
        print(
            f"{r['name']:<54} {r['records']:>10,} {r['seconds']:>8.3f} "
            f"{r['records_per_s']:>10,} {r['identical']!s:>9}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
