"""Database download between members vs a plain copy of the same database file.

    .venv/bin/python bench/download.py [--quick] [--json] [--size-mb MB] [--value-bytes B]
                                       [--repeat N]

A mirror of two real members on loopback: A (failover, the primary) and R (read-only
reporting async).  The bench creates the mirrored database BIG on A and fills it through
engine.client.app (pipelined SETs of `--value-bytes` random bytes) until its LMDB file holds
`--size-mb` MiB (1024; 64 with --quick).  R receives the journal but holds no copy of BIG
(a reporting async creates its copies on request); `download_database BIG` on R then copies
it from A (engine/member/download.py: A streams an LMDB snapshot of BIG through splice(2)
to a one-time port, R writes it as its new store) and catches it up from R's own journal.
Timed from the admin request until R's status shows BIG `Dejournaling`.

The baseline copies the same bytes of A's database with the kernel's file copy
(os.sendfile, what shutil.copyfile uses on Linux): the in-use part of data.mdb (the file is
sparse; its apparent size is the 16 GiB map) plus lock.mdb, into a fresh file on the same
file system.  Every figure is in MiB of A's database file per second, so `ratio` =
download / file copy is the ratio of their times.  Target: ratio >= 0.8.

A second, durable baseline does the same copy and then fsyncs the copied files and the
directory (`ratio_vs_durable_copy` = download / durable copy).  The download fsyncs its copy
before the member counts it (engine/storage/durable.py: no journal could bring back pages of a
copy that an OS crash lost), so this is the like-for-like figure.  The page-cache copy stops
when the bytes are in memory: its time depends on whether the kernel starts writeback under it,
and its ratio swung from 0.43 to 6.2 between runs here; both fsynced figures end with the bytes
on disk and are bounded by the disk, so their ratio is the stable one.

Page cache: warm for every copy.  BIG was just written and A keeps data.mdb mapped, so its
pages are in memory for the download's reads and for the file copies alike, and os.sync()
before each copy writes earlier dirty pages out so no copy pays for another's.  Each figure is
the median of --repeat runs (3), the three copies taking turns; R's copy is removed in between;
`seconds_each` lists every run.  Copies fill fresh page-cache pages, which on a VM come at very
different speeds from one second to the next (this 2-core VM: a 1 GiB warm file copy took
anywhere from 0.4 to 5 s), so look at the spread before trusting a ratio.

Values are 3,000 bytes by default (--value-bytes); the download copies the database file,
so its speed does not depend on them, only the time to fill the database does.  The
members, the filling client and the copies share this machine's cores, so other load moves
every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import lmdb
from _common import (  # first: puts the repository root on sys.path, for engine
    cleanup_on_sigterm,
    mirror,
    stderr_log,
    wait_journal_received,
)

from engine.client.app import AsyncClient, Client

DB = "BIG"
MIB = 1 << 20
FILL_WORKERS = 64  # SETs in flight while filling (group commit on the primary)
FILL_STEP_MIB = 8  # payload of the first slice of the fill


log = stderr_log("download")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def db_dir(cfg, member: str) -> Path:
    return Path(cfg.member(member).data_dir) / "db" / DB


def used_bytes(path: Path) -> int:
    """Bytes of data.mdb in use (LMDB allocates pages from the front of the file)."""
    env = lmdb.open(str(path), readonly=True, max_dbs=2, lock=True)
    try:
        return (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    finally:
        env.close()


# -- filling --------------------------------------------------------------------------


async def _fill_rows(address: str, first: int, count: int, blobs: list[bytes]) -> None:
    async with AsyncClient([address], timeout=60) as c:
        todo = iter(range(first, first + count))

        async def worker():
            for i in todo:
                await c.set(DB, "Blob", (i,), blobs[i % len(blobs)])

        await asyncio.gather(*(worker() for _ in range(FILL_WORKERS)))


def fill(cfg, size_bytes: int, value_bytes: int) -> dict:
    """Fill BIG on A until its database file holds size_bytes (rounded up to a row)."""
    primary = str(cfg.member("A").superserver)
    with Client([primary]) as c:
        c.admin("create_database", DB)
    blobs = [os.urandom(value_bytes) for _ in range(64)]
    # a first slice shows how many file bytes a row takes; the rest is sized from it
    step = max(1, min(FILL_STEP_MIB * MIB, size_bytes // 8) // value_bytes)
    rows, t0 = 0, time.perf_counter()
    while (used := used_bytes(db_dir(cfg, "A"))) < size_bytes:
        if rows:
            per_row = used / rows
            step = max(1, min(int((size_bytes - used) / per_row) + 1, 8 * step))
        asyncio.run(_fill_rows(primary, rows, step, blobs))
        rows += step
        log(f"filled {rows:,} rows, database file {used_bytes(db_dir(cfg, 'A')) / MIB:,.0f} MiB")
    seconds = time.perf_counter() - t0
    return {"rows": rows, "fill_s": round(seconds, 1)}


# -- the two copies -------------------------------------------------------------------


def file_copy(src: Path, dst: Path, nbytes: int, durable: bool = False) -> float:
    """Copy lock.mdb and the first nbytes of data.mdb; seconds taken.  durable: then fsync
    both copied files and the directory, as the download does with its copy."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    t0 = time.perf_counter()
    shutil.copyfile(src / "lock.mdb", dst / "lock.mdb")
    with open(src / "data.mdb", "rb") as fin, open(dst / "data.mdb", "wb") as fout:
        offset = 0
        while offset < nbytes:
            sent = os.sendfile(fout.fileno(), fin.fileno(), offset, min(64 * MIB, nbytes - offset))
            if sent == 0:
                raise RuntimeError(f"data.mdb ended at {offset} bytes, expected {nbytes}")
            offset += sent
        if durable:
            os.fsync(fout.fileno())
    if durable:
        for path in (dst / "lock.mdb", dst, dst.parent):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    seconds = time.perf_counter() - t0
    shutil.rmtree(dst, ignore_errors=True)
    return seconds


def db_row(client: Client) -> dict:
    rows = {r["name"]: r for r in client.status()["databases"]}
    return rows.get(DB, {})


def download(cfg, timeout: float = 1800.0) -> float:
    """download_database on R, until its copy is Dejournaling; seconds taken."""
    with Client([str(cfg.member("R").superserver)], follow_primary=False) as r:
        if db_row(r):  # a copy from an earlier run: drop it (the data stays local) and delete
            r.admin("remove_database", DB)
            shutil.rmtree(db_dir(cfg, "R"))
        t0 = time.perf_counter()
        r.admin("download_database", DB)
        deadline = t0 + timeout
        while True:
            row = db_row(r)
            if row.get("status") == "Dejournaling":
                return time.perf_counter() - t0
            if row.get("status") == "Needs Download" or time.perf_counter() > deadline:
                raise RuntimeError(f"download of {DB} failed: {row}")
            time.sleep(0.02)


def same_content(cfg) -> bool:
    with (
        Client([str(cfg.member("A").superserver)]) as a,
        Client([str(cfg.member("R").superserver)], follow_primary=False, timeout=300) as r,
    ):
        return a.admin("digest", DB) == r.admin("digest", DB)


# -- main -----------------------------------------------------------------------------


def run(size_mib: int, value_bytes: int, repeat: int) -> list[dict]:
    with mirror("bench-download-", {"A": "failover", "R": "ro_reporting"}) as (cfg, _):
        log(f"filling {DB} on A to {size_mib} MiB with {value_bytes}-byte values")
        filled = fill(cfg, size_mib * MIB, value_bytes)
        # R holds all of A's journal before the downloads, so they have the link to themselves
        with (
            Client([str(cfg.member("A").superserver)]) as a,
            Client([str(cfg.member("R").superserver)], follow_primary=False) as r,
        ):
            wait_journal_received(a, r, "R", timeout=600.0)
        src = db_dir(cfg, "A")
        nbytes = used_bytes(src)
        db_mib = nbytes / MIB
        copies, durable_copies, downloads = [], [], []
        for i in range(repeat):
            # the fill's (and the previous run's) dirty pages go to disk first, so no copy
            # pays for them; sync keeps the page cache warm
            os.sync()
            copies.append(file_copy(src, src.parent.parent / "filecopy", nbytes))
            log(f"run {i + 1}/{repeat}: file copy {copies[-1]:.2f} s")
            os.sync()
            durable_copies.append(
                file_copy(src, src.parent.parent / "filecopy", nbytes, durable=True)
            )
            log(f"run {i + 1}/{repeat}: file copy + fsync {durable_copies[-1]:.2f} s")
            os.sync()
            downloads.append(download(cfg))
            log(f"run {i + 1}/{repeat}: download {downloads[-1]:.2f} s")
            if i == 0:
                identical = same_content(cfg)
                log(f"R's copy identical to A's: {identical}")
    copy_s, durable_s, down_s = median(copies), median(durable_copies), median(downloads)
    common = {"db_mb": round(db_mib, 1), "rows": filled["rows"], "runs": repeat}
    return [
        {
            "name": "file copy (sendfile), page cache warm",
            **common,
            "seconds": round(copy_s, 3),
            "mb_per_s": round(db_mib / copy_s, 1),
            "seconds_each": [round(x, 3) for x in copies],
        },
        {
            "name": "file copy (sendfile) + fsync, durable",
            **common,
            "seconds": round(durable_s, 3),
            "mb_per_s": round(db_mib / durable_s, 1),
            "seconds_each": [round(x, 3) for x in durable_copies],
        },
        {
            "name": "download_database over loopback, page cache warm",
            **common,
            "value_bytes": value_bytes,
            "seconds": round(down_s, 3),
            "mb_per_s": round(db_mib / down_s, 1),
            "seconds_each": [round(x, 3) for x in downloads],
            "rows_per_s": round(filled["rows"] / down_s),
            "identical": identical,
            "fill_s": filled["fill_s"],
        },
        {
            "name": "ratio download/file copy (target >= 0.8)",
            "ratio": round(copy_s / down_s, 3),
            "ratio_vs_durable_copy": round(durable_s / down_s, 3),
        },
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 64 MiB database (well under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--size-mb", type=int, help="database file size in MiB (1024; quick 64)")
    ap.add_argument(
        "--value-bytes", type=int, default=3000, help="value size (above ~3,300 the download fails)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure, the median is kept")
    args = ap.parse_args()
    cleanup_on_sigterm()
    size_mib = args.size_mb or (64 if args.quick else 1024)
    results = run(size_mib, args.value_bytes, max(1, args.repeat))
    if args.json:
        print(json.dumps({"benchmark": "download", "results": results}))
        return 0
    print(f"{'name':<52} {'MiB':>7} {'seconds':>8} {'MiB/s':>8} {'ratio':>6}")
    for r in results:
        if "ratio" in r:
            print(f"{r['name']:<52} {'':>7} {'':>8} {'':>8} {r['ratio']:>6}")
            print(f"{'ratio download/durable copy':<52} {'':>7} {'':>8} {'':>8} "
                  f"{r['ratio_vs_durable_copy']:>6}")  # fmt: skip
        else:
            print(f"{r['name']:<52} {r['db_mb']:>7} {r['seconds']:>8.3f} {r['mb_per_s']:>8}")
        if "seconds_each" in r:
            print(f"{'':<4}runs: {', '.join(f'{x:.3f}' for x in r['seconds_each'])} s")
    down = results[2]
    print(
        f"{down['rows']:,} rows of {down['value_bytes']} bytes, {down['rows_per_s']:,} rows/s; "
        f"R's copy identical to A's: {down['identical']}; median of {down['runs']} runs; "
        "page cache warm; the download fsyncs its copy, like the durable baseline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
