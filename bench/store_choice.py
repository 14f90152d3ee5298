"""Store choice: SQLite vs LMDB for one mirrored database, on the operations the engine does.

Both candidates hold the same thing engine/storage/store.py needs: memcmp-ordered keys from
engine.storage.collation.encode_key mapping to encode_value bytes, plus an applied-position record
written in the same transaction as each applied batch.  Measured:

- apply:  batches of 1,000 SETs of random keys with 100-byte values, one transaction per batch
          (the dejournaling path; LMDB putmulti vs SQLite executemany), records/s
- commit: one SET per transaction (the primary's path for a single client write), ops/s
- get:    point reads of random existing keys, ops/s
- scan:   range scans of 100 consecutive nodes under one subscript prefix, rows/s

Durability setting for both: the journal is the durability point, so neither store fsyncs per
commit (SQLite WAL + synchronous=NORMAL; LMDB sync=False, metasync=False).  The LMDB row is run
twice: plain, and with writemap=True (the mode engine/storage/store.py uses).

Run: .venv/bin/python bench/store_choice.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time

import lmdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from engine.storage.collation import encode_key, encode_value  # noqa: E402

POS_KEY = b"applied"


class LmdbCandidate:
    name = "lmdb"
    writemap = False

    def __init__(self, path):
        self.env = lmdb.open(
            path,
            map_size=1 << 32,
            max_dbs=2,
            sync=False,
            metasync=False,
            readahead=False,
            writemap=self.writemap,
        )
        self.data = self.env.open_db(b"data")
        self.meta = self.env.open_db(b"meta")

    def apply(self, items, pos):
        with self.env.begin(write=True) as txn:
            txn.cursor(self.data).putmulti(items)
            txn.put(POS_KEY, pos, db=self.meta)

    def commit_one(self, k, v):
        with self.env.begin(write=True) as txn:
            txn.put(k, v, db=self.data)

    def get(self, k):
        with self.env.begin() as txn:
            return txn.get(k, db=self.data)

    def scan(self, prefix, n):
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(self.data)
            if cur.set_range(prefix):
                for k, v in cur:
                    if not k.startswith(prefix) or len(out) >= n:
                        break
                    out.append((k, v))
        return out

    def close(self):
        self.env.close()


class LmdbWritemapCandidate(LmdbCandidate):
    """What engine/storage/store.py ended up using: writes straight into the map."""

    name = "lmdb writemap"
    writemap = True


class SqliteCandidate:
    name = "sqlite"

    def __init__(self, path):
        os.makedirs(path, exist_ok=True)
        self.db = sqlite3.connect(os.path.join(path, "db.sqlite"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS data (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k BLOB PRIMARY KEY, v BLOB)")

    def apply(self, items, pos):
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO data VALUES (?, ?)", items)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (POS_KEY, pos))
        self.db.execute("COMMIT")

    def commit_one(self, k, v):
        self.db.execute("INSERT OR REPLACE INTO data VALUES (?, ?)", (k, v))

    def get(self, k):
        row = self.db.execute("SELECT v FROM data WHERE k = ?", (k,)).fetchone()
        return row[0] if row else None

    def scan(self, prefix, n):
        # keys under prefix are exactly [prefix, prefix + 0xff) because no encoded subscript
        # starts with 0xff
        return self.db.execute(
            "SELECT k, v FROM data WHERE k >= ? AND k < ? ORDER BY k LIMIT ?",
            (prefix, prefix + b"\xff", n),
        ).fetchall()

    def close(self):
        self.db.close()


def run(candidate_cls, n_records, n_reads):
    tmp = tempfile.mkdtemp(prefix="store-choice-")
    rng = random.Random(7)
    try:
        c = candidate_cls(os.path.join(tmp, "db"))
        value = encode_value("x" * 99)
        ids = [rng.randrange(10**9) for _ in range(n_records)]
        items = [(encode_key("acct", (i, "name")), value) for i in ids]
        t0 = time.perf_counter()
        for b in range(0, len(items), 1000):
            c.apply(items[b : b + 1000], str(b).encode())
        apply_s = time.perf_counter() - t0

        n_commit = max(1000, n_reads // 10)
        t0 = time.perf_counter()
        for k, v in items[:n_commit]:
            c.commit_one(k, v)
        commit_s = time.perf_counter() - t0

        probe = [items[rng.randrange(len(items))][0] for _ in range(n_reads)]
        t0 = time.perf_counter()
        for k in probe:
            if c.get(k) is None:
                raise AssertionError("missing key")
        get_s = time.perf_counter() - t0

        # A scan region: 100 children of one node.
        scan_items = [(encode_key("hist", (7, j)), value) for j in range(100)]
        c.apply(scan_items, b"end")
        prefix = encode_key("hist", (7,))
        n_scans = max(100, n_reads // 100)
        t0 = time.perf_counter()
        rows = 0
        for _ in range(n_scans):
            rows += len(c.scan(prefix, 100))
        scan_s = time.perf_counter() - t0
        c.close()
        return {
            "name": c.name,
            "apply_records_per_s": round(n_records / apply_s),
            "commit_ops_per_s": round(n_commit / commit_s),
            "get_ops_per_s": round(n_reads / get_s),
            "scan_rows_per_s": round(rows / scan_s),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    n_records, n_reads = (50_000, 20_000) if args.quick else (400_000, 200_000)
    results = [
        run(cls, n_records, n_reads)
        for cls in (LmdbCandidate, LmdbWritemapCandidate, SqliteCandidate)
    ]
    if args.json:
        print(json.dumps({"benchmark": "store_choice", "results": results}))
        return
    cols = ["name", "apply_records_per_s", "commit_ops_per_s", "get_ops_per_s", "scan_rows_per_s"]
    print("  ".join(f"{c:>20}" for c in cols))
    for r in results:
        print("  ".join(f"{r[c]:>20}" for c in cols))


if __name__ == "__main__":
    main()
