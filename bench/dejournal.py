"""Dejournaling rate: journal bytes in, records decoded, checked and applied to LMDB stores.

Load: SETs of random keys (^acct(<random id>,"name")) with 100-byte values, encoded as real
journal records and cut into 256 KiB chunks the way a backup receives them.  Each timed row
includes decoding every record (CRC and position checks) and applying it through
engine.storage.dejournal.Dejournaler into engine.storage.store.Store
(one LMDB transaction per chunk and
database, applied position recorded):

- 1 db:               every record for one database
- 4 dbs parallel:     records spread over four databases, parallel=True, 4 workers
- 4 dbs serial:       same load, parallel=False (to show what the threads buy)
- 1 db via receive:   the backup's live path: Journal.receive (checks, writes its own journal
                      copy without fsync) + apply
- 1 db from files:    catch-up path: JournalReader.batches_from over journal files + apply

Target: >= 100,000 records/s for one database.
Run: .venv/bin/python bench/dejournal.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from engine.storage.collation import encode_key, encode_value  # noqa: E402
from engine.storage.dejournal import Dejournaler  # noqa: E402
from engine.storage.journal import Entry, Journal, JournalReader  # noqa: E402
from engine.storage.journal_codec import (  # noqa: E402
    FILE_HEADER_SIZE,
    OP_SET,
    decode_records,
    encode_entry,
    encode_file_header,
)
from engine.storage.store import Store  # noqa: E402

CHUNK = 256 * 1024


def make_chunks(n, dbs, seed=1):
    """[(start_offset, bytes)] of journal records in one file, cut at record boundaries."""
    rng = random.Random(seed)
    value = encode_value("v" * 99)
    chunks, buf, start, off = [], bytearray(), FILE_HEADER_SIZE, FILE_HEADER_SIZE
    ts = time.time()
    for i in range(n):
        key = encode_key("acct", (rng.randrange(10**12), "name"))
        rec = encode_entry(1, off, ts, i, dbs[i % len(dbs)], OP_SET, key, value)
        buf += rec
        off += len(rec)
        if len(buf) >= CHUNK:
            chunks.append((start, bytes(buf)))
            buf, start = bytearray(), off
    if buf:
        chunks.append((start, bytes(buf)))
    return chunks


def timed_apply(tmp, name, n, dbs, parallel):
    chunks = make_chunks(n, dbs)
    stores = {db: Store.open(os.path.join(tmp, name, db)) for db in dbs}
    dj = Dejournaler(stores, parallel=parallel, workers=max(1, len(dbs)))
    try:
        t0 = time.perf_counter()
        for start, data in chunks:
            dj.apply(decode_records(data, expect=(1, start)))
        elapsed = time.perf_counter() - t0
        assert sum(s.count() for s in stores.values()) > n * 0.99
        return elapsed
    finally:
        dj.close()
        for s in stores.values():
            s.close()


def timed_receive(tmp, n):
    """The backup's live path: Journal.receive (checks + write to its own journal file, no
    fsync, as acknowledged on receipt) then dejournal, chunk by chunk."""
    chunks = make_chunks(n, ["DB1"])
    journal = Journal(os.path.join(tmp, "receive", "journal"), "BENCH")
    store = Store.open(os.path.join(tmp, "receive", "DB1"))
    dj = Dejournaler({"DB1": store})

    async def run():
        await journal.receive(1, 0, encode_file_header(1, 20260101))
        t0 = time.perf_counter()
        for start, data in chunks:
            dj.apply(await journal.receive(1, start, data))
        return time.perf_counter() - t0

    try:
        elapsed = asyncio.run(run())
        assert store.count() > n * 0.99
        return elapsed
    finally:
        dj.close()
        journal.close()
        store.close()


def timed_catch_up(tmp, n):
    jdir = os.path.join(tmp, "files", "journal")
    journal = Journal(jdir, "BENCH", max_file_bytes=32 << 20, fsync=False)
    rng = random.Random(2)
    for b in range(0, n, 1000):
        journal.commit_sync(
            [
                Entry(i, "DB1", "SET", "acct", (rng.randrange(10**12), "name"), "v" * 99)
                for i in range(b, min(n, b + 1000))
            ]
        )
    journal.close()
    store = Store.open(os.path.join(tmp, "files", "DB1"))
    dj = Dejournaler({"DB1": store})
    try:
        t0 = time.perf_counter()
        for batch in JournalReader(jdir, "BENCH").batches_from(chunk=CHUNK):
            dj.apply(batch)
        elapsed = time.perf_counter() - t0
        assert store.count() > n * 0.99
        return elapsed
    finally:
        dj.close()
        store.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else 500_000
    four = ["DB1", "DB2", "DB3", "DB4"]
    tmp = tempfile.mkdtemp(prefix="bench-dejournal-")
    results = []
    try:
        for name, dbs, parallel in [
            ("1 db", ["DB1"], False),
            ("4 dbs parallel", four, True),
            ("4 dbs serial", four, False),
        ]:
            s = timed_apply(tmp, name.replace(" ", "_"), n, dbs, parallel)
            results.append({"name": name, "records": n, "seconds": round(s, 3),
                            "records_per_s": round(n / s)})  # fmt: skip
        s = timed_receive(tmp, n)
        results.append({"name": "1 db via receive", "records": n, "seconds": round(s, 3),
                        "records_per_s": round(n / s)})  # fmt: skip
        s = timed_catch_up(tmp, n)
        results.append({"name": "1 db from files", "records": n, "seconds": round(s, 3),
                        "records_per_s": round(n / s)})  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"benchmark": "dejournal", "results": results}))
        return
    print(f"{'load':<18}{'records':>10}{'seconds':>10}{'records/s':>12}")
    for r in results:
        print(f"{r['name']:<18}{r['records']:>10}{r['seconds']:>10}{r['records_per_s']:>12}")
    print(f"target >= 100,000 records/s for one database: "
          f"{'met' if results[0]['records_per_s'] >= 100_000 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
