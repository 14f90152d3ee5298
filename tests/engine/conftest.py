"""Storage fixtures shared by the engine tests (network fixtures live in cluster_fixtures.py)."""

import pytest

from engine.storage.journal_codec import decode_records, encode_record
from engine.storage.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "db"))
    yield s
    s.close()


def make_records(specs, file_seq=1, start=20, database="db1", txid=1):
    """Journal records at consecutive positions from (op, gname, subs, value) tuples."""
    chunks, off = [], start
    for op, gname, subs, value in specs:
        b = encode_record((file_seq, off), 1700000000.0, txid, database, op, gname, subs, value)
        chunks.append(b)
        off += len(b)
    return decode_records(b"".join(chunks))
