import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.replication.compression import (
    CODECS,
    CompressionError,
    choose_codec,
    compress,
    decompress,
)
from engine.storage.journal_codec import decode_records, encode_record

ALL = {"zlib", "zstd", "lz4"}


@pytest.mark.parametrize(
    "mode, ctype, to_backup, tls, expected",
    [
        ("System Selected", "zlib", True, False, None),  # backup without TLS: uncompressed
        ("System Selected", "zlib", True, True, "lz4"),  # backup with TLS: LZ4
        ("System Selected", "zlib", False, False, "zstd"),  # asyncs: always Zstd
        ("System Selected", "lz4", False, True, "zstd"),
        ("Uncompressed", "zstd", True, True, None),
        ("Uncompressed", "zstd", False, False, None),
        ("Compressed", None, True, False, "zlib"),  # zlib is the default type
        ("Compressed", "zlib", False, False, "zlib"),
        ("Compressed", "Zstd", True, False, "zstd"),
        ("Compressed", "LZ4", False, True, "lz4"),
        ("compressed", "zstd", False, False, "zstd"),  # mode names are case-insensitive
        ("system_selected", None, False, False, "zstd"),
    ],
)
def test_codec_choice_follows_the_mode_the_member_type_and_tls(
    mode, ctype, to_backup, tls, expected
):
    assert choose_codec(mode, ctype, to_backup, tls, ALL) == expected


@pytest.mark.parametrize(
    "mode, ctype, to_backup, tls, receiver, expected",
    [
        ("System Selected", None, True, True, {"zlib", "zstd"}, "zlib"),
        ("System Selected", None, False, False, {"zlib", "lz4"}, "zlib"),
        ("Compressed", "lz4", False, False, {"zlib"}, "zlib"),
        ("Compressed", "zstd", True, False, set(), "zlib"),
        ("Compressed", "zstd", True, False, {"ZSTD"}, "zstd"),
        ("System Selected", None, True, False, {"zlib"}, None),  # nothing to fall back from
    ],
)
def test_a_receiver_without_the_codec_gets_zlib(mode, ctype, to_backup, tls, receiver, expected):
    assert choose_codec(mode, ctype, to_backup, tls, receiver) == expected


def test_unknown_modes_and_types_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="unknown compression mode"):
        choose_codec("Sometimes", "zlib", True, False, ALL)
    with pytest.raises(ValueError, match="unknown compression type"):
        choose_codec("Compressed", "brotli", True, False, ALL)
    with pytest.raises(ValueError, match="unknown compression type"):
        compress("brotli", b"x")
    with pytest.raises(ValueError, match="unknown compression type"):
        decompress("brotli", b"x")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CODECS), st.binary(max_size=5000))
def test_every_codec_round_trips_any_bytes(codec, data):
    assert decompress(codec, compress(codec, data)) == data


def _journal_batch(n=400):
    rng = random.Random(4)
    out, off = [], 20
    for i in range(n):
        value = f"{rng.choice(['Ann', 'Bob', 'Chen'])}^{rng.randrange(100)} Main St^{i}"
        rec = encode_record((1, off), 1.7e9 + i, i, "DB1", "SET", "Customer", (i, "addr"), value)
        out.append(rec)
        off += len(rec)
    return b"".join(out)


@pytest.mark.parametrize("codec", CODECS)
def test_journal_data_shrinks_and_comes_back_as_the_same_records(codec):
    batch = _journal_batch()
    packed = compress(codec, batch)
    assert len(packed) < len(batch) * 0.6
    assert decode_records(decompress(codec, packed)) == decode_records(batch)


@pytest.mark.parametrize("codec", CODECS)
def test_damaged_or_truncated_input_raises_compression_error(codec):
    packed = compress(codec, _journal_batch())
    with pytest.raises(CompressionError):
        decompress(codec, packed[: len(packed) // 2])
    with pytest.raises(CompressionError):
        decompress(codec, os.urandom(200))


@pytest.mark.parametrize("codec", CODECS)
def test_output_beyond_the_size_limit_is_refused(codec):
    bomb = compress(codec, b"\0" * (4 << 20))
    assert len(bomb) < 100_000
    with pytest.raises(CompressionError):
        decompress(codec, bomb, max_size=1 << 20)
    assert len(decompress(codec, bomb, max_size=4 << 20)) == 4 << 20
