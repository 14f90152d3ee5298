"""Frame codec of the engine protocol: round trips, incremental decoding, bad frames."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.wire.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    BadFrame,
    Frame,
    FrameDecoder,
    FrameError,
    MsgType,
    describe_truncation,
    encode_frame,
    error_frame,
    unpack,
)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(values, st.integers(min_value=0, max_value=2**32 - 1))
def test_any_body_round_trips_through_a_frame(value, req_id):
    frames = FrameDecoder().feed(encode_frame(MsgType.SET, req_id, value))
    assert len(frames) == 1
    f = frames[0]
    assert isinstance(f, Frame)
    assert (f.type, f.req_id) == (MsgType.SET, req_id)
    assert unpack(f.body) == value


@given(
    st.lists(st.binary(max_size=50), min_size=1, max_size=10), st.integers(min_value=1, max_value=7)
)
def test_frames_split_at_any_byte_boundary_are_reassembled_in_order(bodies, step):
    stream = b"".join(encode_frame(MsgType.GET, i, body) for i, body in enumerate(bodies))
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), step):
        got += dec.feed(stream[i : i + step])
    assert [unpack(f.body) for f in got] == bodies
    assert [f.req_id for f in got] == list(range(len(bodies)))
    assert dec.pending == 0


def test_bad_magic_is_an_unrecoverable_stream_error():
    with pytest.raises(FrameError, match="bad magic"):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_oversized_frame_is_rejected_before_its_body_arrives():
    dec = FrameDecoder(max_frame=1000)
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, MsgType.SET, 7, 10_000_000)
    with pytest.raises(FrameError, match="frame too large: 10000000 bytes > limit 1000") as info:
        dec.feed(header)
    assert info.value.req_id == 7


def test_wrong_version_is_skipped_and_the_stream_stays_in_sync():
    bad = encode_frame(MsgType.GET, 5, ["x"], version=9)
    good = encode_frame(MsgType.PING, 6, [])
    out = FrameDecoder().feed(bad + good)
    assert isinstance(out[0], BadFrame) and out[0].req_id == 5
    assert "unsupported protocol version 9" in out[0].reason
    assert isinstance(out[1], Frame) and out[1].req_id == 6


def test_wrong_version_with_body_arriving_later_is_skipped_across_feeds():
    bad = encode_frame(MsgType.GET, 5, "y" * 100, version=2)
    good = encode_frame(MsgType.PING, 6, [])
    dec = FrameDecoder()
    first = dec.feed(bad[:20])
    assert len(first) == 1 and isinstance(first[0], BadFrame)
    rest = dec.feed(bad[20:] + good)
    assert [f.req_id for f in rest] == [6]


def test_unknown_message_type_is_a_bad_frame():
    raw = HEADER.pack(MAGIC, PROTOCOL_VERSION, 0x7F, 3, 0)
    out = FrameDecoder().feed(raw)
    assert isinstance(out[0], BadFrame) and "unknown message type 127" in out[0].reason


def test_truncated_frame_is_described_for_the_log():
    dec = FrameDecoder()
    frame = encode_frame(MsgType.SET, 9, ["USER", "G", [1], "v" * 50])
    assert dec.feed(frame[:30]) == []
    text = describe_truncation(dec)
    assert text.startswith("truncated frame") and "request 9" in text
    dec2 = FrameDecoder()
    dec2.feed(frame[:5])
    assert "5 of 12 header bytes" in describe_truncation(dec2)


def test_malformed_body_raises_value_error_with_reason():
    with pytest.raises(ValueError, match="not valid MessagePack"):
        unpack(b"\xc1")


def test_error_frame_carries_code_message_and_details():
    f = FrameDecoder().feed(error_frame(4, "not_primary", "go away", primary="A"))[0]
    assert f.type == MsgType.ERROR
    assert unpack(f.body) == {"code": "not_primary", "message": "go away", "primary": "A"}


def test_header_layout_is_the_documented_twelve_bytes():
    raw = encode_frame(MsgType.PING, 0x01020304, None)
    assert HEADER_SIZE == 12
    assert raw[:2] == b"MP" and raw[2] == 1 and raw[3] == MsgType.PING
    assert struct.unpack(">II", raw[4:12]) == (0x01020304, 1)
