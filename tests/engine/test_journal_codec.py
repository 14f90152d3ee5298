import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.storage.journal_codec import (
    FILE_HEADER_SIZE,
    CorruptRecord,
    decode_file_header,
    decode_records,
    encode_file_header,
    encode_record,
    record_boundary,
)

subs_st = st.lists(
    st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    max_size=4,
).map(tuple)
value_st = st.one_of(st.binary(max_size=300), st.text(max_size=50), st.integers(), st.floats())
record_st = st.tuples(
    st.integers(0, 2**32 - 1),  # file_seq
    st.integers(0, 2**48),  # offset
    st.floats(0, 4e9),  # timestamp
    st.integers(0, 2**64 - 1),  # txid
    st.from_regex(r"\A[A-Z][A-Z0-9_]{0,20}\Z"),  # database
    st.sampled_from(["SET", "KILL"]),
    st.from_regex(r"\A[%a-zA-Z][a-zA-Z0-9]{0,10}\Z"),
    subs_st,
    value_st,
)


def _encode(spec):
    seq, off, ts, txid, db, op, g, subs, v = spec
    return encode_record((seq, off), ts, txid, db, op, g, subs, v if op == "SET" else None)


@settings(max_examples=300, deadline=None)
@given(record_st)
def test_a_record_round_trips_through_the_codec(spec):
    seq, off, ts, txid, db, op, g, subs, v = spec
    buf = _encode(spec)
    [r] = decode_records(buf)
    assert r.position == (seq, off)
    assert (r.timestamp, r.txid, r.database, r.op_name, r.gname) == (ts, txid, db, op, g)
    assert r.length == len(buf)
    assert len(r.subs) == len(subs)
    if op == "SET":
        assert r.value == v or (v != v and r.value != r.value)
    else:
        assert r.value is None


@settings(max_examples=300, deadline=None)
@given(record_st, st.data())
def test_any_single_bit_flip_is_detected(spec, data):
    buf = bytearray(_encode(spec))
    bit = data.draw(st.integers(0, len(buf) * 8 - 1))
    buf[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CorruptRecord):
        decode_records(bytes(buf))


@settings(max_examples=300, deadline=None)
@given(st.lists(record_st, min_size=1, max_size=4), st.data())
def test_a_buffer_cut_inside_a_record_is_detected(specs, data):
    bufs = [_encode(s) for s in specs]
    whole = b"".join(bufs)
    boundaries = {0}
    for b in bufs:
        boundaries.add(max(boundaries) + len(b))
    cut = data.draw(st.integers(1, len(whole) - 1).filter(lambda c: c not in boundaries))
    with pytest.raises(CorruptRecord) as err:
        decode_records(whole[:cut])
    # the error says how many bytes of whole records came before the torn one
    assert err.value.offset == max(b for b in boundaries if b < cut)
    assert len(decode_records(whole)) == len(specs)


def test_records_found_at_another_position_than_they_claim_are_rejected():
    a = encode_record((3, 20), 1.0, 1, "DB", "SET", "g", (1,), "v")
    b = encode_record((3, 20 + len(a)), 1.0, 1, "DB", "SET", "g", (2,), "v")
    assert len(decode_records(a + b, expect=(3, 20))) == 2
    with pytest.raises(CorruptRecord, match="claims position"):
        decode_records(a + b, expect=(3, 21))
    with pytest.raises(CorruptRecord, match="claims position"):
        decode_records(b + a, expect=(3, 20))


def test_record_boundary_never_splits_a_record():
    recs = [
        encode_record((1, 20), 1.0, 1, "DB", "SET", "g", (f"k{i}",), "x" * 40) for i in range(5)
    ]
    buf = b"".join(recs)
    size = len(recs[0])
    assert all(len(r) == size for r in recs)
    assert record_boundary(buf, size * 2 + 3) == size * 2
    assert record_boundary(buf, 1) == size  # always at least one whole record
    assert record_boundary(buf[: size + 5], 10**6) == size


def test_file_header_round_trips_and_detects_damage():
    h = encode_file_header(7, 20261125)
    assert len(h) == FILE_HEADER_SIZE
    assert decode_file_header(h) == (7, 20261125)
    bad = bytearray(h)
    bad[9] ^= 4
    with pytest.raises(CorruptRecord):
        decode_file_header(bytes(bad))
    with pytest.raises(CorruptRecord):
        decode_file_header(h[:-1])


def test_bad_entries_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="unknown journal operation"):
        encode_record((1, 20), 1.0, 1, "DB", "MERGE", "g", (1,), 1)
    with pytest.raises(ValueError, match="SET needs a value"):
        encode_record((1, 20), 1.0, 1, "DB", "SET", "g", (1,), None)
    with pytest.raises(ValueError, match="database name"):
        encode_record((1, 20), 1.0, 1, "", "SET", "g", (1,), 1)
