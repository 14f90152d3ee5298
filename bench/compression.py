"""Compression of journal data per codec: ratio and MB/s to compress and to decompress.

Data: batches of real encoded journal records (engine.storage.journal_codec) as the primary ships
them, generated to look like an application's journal: several globals (accounts, customers,
orders, audit trail, an index), subscripts mixing sequential ids, names and dates, values that
are delimited text records, numbers, timestamps and some opaque binary blobs (~10% random
bytes, which do not compress).  Batch sizes 16 KiB (a lightly loaded primary's group commit)
and 256 KiB (catch-up chunks).  Rows for the engine's codecs (the levels of
engine.replication.compression) plus zlib level 6 and zstd level 1 for comparison.

ratio = compressed / original (smaller is better).  MB/s are of original bytes, one core.
Run: .venv/bin/python bench/compression.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import zlib

import zstandard

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from engine.replication import compression  # noqa: E402
from engine.storage.journal_codec import FILE_HEADER_SIZE, encode_record  # noqa: E402

FIRST = ["Ann", "Bob", "Chen", "Dara", "Eve", "Farid", "Grace", "Hiro", "Ines", "Jon"]
LAST = ["Smith", "Garcia", "Nguyen", "Okafor", "Rossi", "Schmidt", "Tanaka", "Walsh"]
STREETS = ["Main St", "High St", "Oak Ave", "Station Rd", "Harbour Way", "Elm Ct"]
STATUS = ["NEW", "PAID", "SHIPPED", "CANCELLED", "RETURNED"]


def journal_batches(total_bytes: int, batch_bytes: int, seed: int = 3) -> list[bytes]:
    """Realistic journal data cut into batches of about batch_bytes."""
    rng = random.Random(seed)
    batches, buf = [], bytearray()
    off, ts, txid, order_id = FILE_HEADER_SIZE, 1_764_000_000.0, 1000, 500_000
    produced = 0
    while produced < total_bytes:
        txid += 1
        ts += rng.random() * 0.002
        cust = rng.randrange(1, 50_000)
        order_id += 1
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        date = f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        ops = [
            ("CUSTOMERS", "Customer", (cust,),
             f"{name}^{rng.randrange(1, 300)} {rng.choice(STREETS)}^{rng.randrange(10000, 99999)}"
             f"^{name.split()[0].lower()}@example.com^{date}"),
            ("ORDERS", "Orders", (order_id,),
             f"{cust}^{date}^{rng.choice(STATUS)}^{rng.randrange(1, 20)}^{rng.random() * 500:.2f}"),
            ("ORDERS", "Orders", (order_id, "line", rng.randrange(1, 6)),
             f"SKU{rng.randrange(10000):05d}^{rng.randrange(1, 9)}^{rng.random() * 90:.2f}"),
            ("ORDERS", "IdxCustOrder", (cust, order_id), ""),
            ("CUSTOMERS", "Account", (cust, "balance"), round(rng.uniform(-500, 5000), 2)),
            ("CUSTOMERS", "Account", (cust, "updated"), int(ts)),
            ("AUDIT", "Audit", (date, txid), f"user{rng.randrange(40)}^update^Orders({order_id})"),
        ]  # fmt: skip
        if rng.random() < 0.1:
            ops.append(("DOCS", "Blob", (order_id,), rng.randbytes(rng.randrange(100, 600))))
        if rng.random() < 0.03:
            ops.append(("ORDERS", "Orders", (order_id - rng.randrange(1, 500),), None))
        for db, g, subs, value in ops:
            op = "KILL" if value is None else "SET"
            rec = encode_record((1, off), ts, txid, db, op, g, subs, value)
            off += len(rec)
            buf += rec
            produced += len(rec)
            if len(buf) >= batch_bytes:
                batches.append(bytes(buf))
                buf = bytearray()
    if buf:
        batches.append(bytes(buf))
    return batches


def _codecs():
    z6 = zstandard.ZstdCompressor(level=1)
    zd = zstandard.ZstdDecompressor()
    return [
        (f"zlib (level {compression.ZLIB_LEVEL}, engine)",
         lambda d: compression.compress("zlib", d), lambda c: compression.decompress("zlib", c)),
        (f"zstd (level {compression.ZSTD_LEVEL}, engine)",
         lambda d: compression.compress("zstd", d), lambda c: compression.decompress("zstd", c)),
        ("lz4 (engine)",
         lambda d: compression.compress("lz4", d), lambda c: compression.decompress("lz4", c)),
        ("zlib (level 6)", lambda d: zlib.compress(d, 6), zlib.decompress),
        ("zstd (level 1)", z6.compress, zd.decompress),
    ]  # fmt: skip


def _rate(fn, inputs, original, min_seconds):
    """MB/s of original bytes: run fn over every input, repeatedly for at least min_seconds."""
    rounds, t0 = 0, time.perf_counter()
    while rounds == 0 or time.perf_counter() - t0 < min_seconds:
        for x in inputs:
            fn(x)
        rounds += 1
    return original * rounds / (time.perf_counter() - t0) / 1e6


def measure(batches, comp, decomp, min_seconds):
    original = sum(len(b) for b in batches)
    packed = [comp(b) for b in batches]
    size = sum(len(p) for p in packed)
    for p, b in zip(packed, batches, strict=True):
        assert decomp(p) == b
    c_rate = _rate(comp, batches, original, min_seconds)
    d_rate = _rate(decomp, packed, original, min_seconds)
    return size / original, c_rate, d_rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    total, min_s = (2 << 20, 0.2) if args.quick else (16 << 20, 1.0)
    results = []
    for batch in (16 * 1024, 256 * 1024):
        batches = journal_batches(total, batch)
        for name, comp, decomp in _codecs():
            ratio, c, d = measure(batches, comp, decomp, min_s)
            results.append({
                "name": f"{name}, {batch // 1024} KiB batches",
                "ratio": round(ratio, 3),
                "compress_mb_per_s": round(c, 1),
                "decompress_mb_per_s": round(d, 1),
            })  # fmt: skip
    if args.json:
        print(json.dumps({"benchmark": "compression", "results": results}))
        return
    print(f"{'codec':<44}{'ratio':>7}{'compress MB/s':>15}{'decompress MB/s':>17}")
    for r in results:
        print(f"{r['name']:<44}{r['ratio']:>7}{r['compress_mb_per_s']:>15}"
              f"{r['decompress_mb_per_s']:>17}")  # fmt: skip


if __name__ == "__main__":
    main()
