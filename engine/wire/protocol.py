"""Frame codec of the engine's length-prefixed binary protocol (see PROTOCOL.md).

Every frame is a 12-byte header followed by a body:

    magic  2 bytes  b"MP"
    version 1 byte  PROTOCOL_VERSION
    type    1 byte  message type (MsgType)
    req_id  4 bytes unsigned, big endian (echoed in the reply)
    length  4 bytes unsigned, big endian (body length in bytes)

The body is one MessagePack value (an array of arguments for requests).  The same
framing is used on the superserver port (applications) and on the data channel
(journal streaming between members); only the message types differ.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

MAGIC = b"MP"
PROTOCOL_VERSION = 1
HEADER = struct.Struct(">2sBBII")
HEADER_SIZE = HEADER.size
# Large enough for a catch-up chunk of journal, small enough that a bogus length
# cannot make a server allocate gigabytes.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


class MsgType(IntEnum):
    # application requests (superserver port)
    PING = 1
    INFO = 2
    GET = 3
    SET = 4
    KILL = 5
    ORDER = 6
    QUERY = 7
    TSTART = 8
    TCOMMIT = 9
    TROLLBACK = 10
    STATUS = 11
    ADMIN = 12
    # data channel (mirror private address)
    DC_HELLO = 0x20
    DC_WELCOME = 0x21
    DC_JOURNAL = 0x22
    DC_ACK = 0x23
    DC_HEARTBEAT = 0x24
    DC_CONFIG = 0x25  # primary -> member: the mirror configuration (engine/member/mirror_file.py)
    DC_LEAVE = 0x26  # member -> primary: remove me from the mirror
    DC_CHALLENGE = 0x27  # primary -> member: prove the mirror secret (engine/wire/mirror_secret.py)
    # primary -> Active backup, on graceful shutdown: [journal end, term]; take over now
    # (engine/member/takeover.py)
    DC_HANDOVER = 0x28
    # backup -> primary: make me a DR async (guide §5.6, engine/member/failover_ops.py)
    DC_DEMOTE = 0x29
    # arbiter (engine/failover/arbiter.py, its own address): 0x30-0x3F are kept for it
    ARB_CHALLENGE = 0x30  # arbiter -> member, on accept: {nonce} to prove the mirror secret over
    ARB_HELLO = 0x31  # member -> arbiter: {mirror, member, peer, timeout_ms, proof, state}
    ARB_STATE = 0x32  # arbiter -> member: what it sees of the partner (reply, and pushed at once)
    ARB_PING = 0x33  # member -> arbiter: every timeout/4, {state} when the member's state changed
    # replies
    OK = 0x80
    ERROR = 0x81


APP_REQUESTS = frozenset(
    {
        MsgType.PING,
        MsgType.INFO,
        MsgType.GET,
        MsgType.SET,
        MsgType.KILL,
        MsgType.ORDER,
        MsgType.QUERY,
        MsgType.TSTART,
        MsgType.TCOMMIT,
        MsgType.TROLLBACK,
        MsgType.STATUS,
        MsgType.ADMIN,
    }
)


class ErrorCode:
    """Error codes carried in ERROR replies (strings, so logs stay readable)."""

    PROTOCOL = "protocol"  # malformed frame, wrong version, oversized, bad handshake
    BAD_REQUEST = "bad_request"  # well-formed frame, invalid arguments
    NOT_PRIMARY = "not_primary"  # write (or read on a backup) sent to a non-primary
    READ_ONLY = "read_only"
    NO_DATABASE = "no_database"
    TRANSACTION = "transaction"
    UNAVAILABLE = "unavailable"  # member cannot serve right now (starting, stopping)
    UNAUTHORIZED = "unauthorized"  # an operator action without the instance's admin token
    REFUSED = "refused"  # an operation's precondition does not hold (details: op, reason)
    INTERNAL = "internal"


_VALID_TYPES = frozenset(int(t) for t in MsgType)


@dataclass(slots=True)
class Frame:
    type: int
    req_id: int
    body: bytes
    version: int = PROTOCOL_VERSION


@dataclass(slots=True)
class BadFrame:
    """A frame whose header was readable but which cannot be served.

    The stream is still in sync (its body was skipped), so the connection can go on
    after an error reply.
    """

    req_id: int
    reason: str


class FrameError(Exception):
    """The byte stream cannot be parsed any further; reply if possible, then close."""

    def __init__(self, reason: str, req_id: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.req_id = req_id


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"body is not valid MessagePack: {exc}") from None


def encode_frame(
    msg_type: int, req_id: int, value: Any = None, *, version: int = PROTOCOL_VERSION
) -> bytes:
    body = pack(value)
    return HEADER.pack(MAGIC, version, int(msg_type), req_id & 0xFFFFFFFF, len(body)) + body


def encode_raw_frame(
    msg_type: int, req_id: int, body: bytes, *, version: int = PROTOCOL_VERSION
) -> bytes:
    return HEADER.pack(MAGIC, version, int(msg_type), req_id & 0xFFFFFFFF, len(body)) + body


def ok_frame(req_id: int, value: Any = None) -> bytes:
    return encode_frame(MsgType.OK, req_id, value)


def error_frame(req_id: int, code: str, message: str, **extra: Any) -> bytes:
    payload = {"code": code, "message": message}
    payload.update(extra)
    return encode_frame(MsgType.ERROR, req_id, payload)


class FrameDecoder:
    """Incremental decoder: feed() bytes as they arrive, get whole frames back.

    Raises FrameError when the stream is unrecoverable (bad magic, oversized frame).
    Returns BadFrame items for frames that were skipped but leave the stream in sync
    (wrong version, unknown message type).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skip = 0  # body bytes still to discard after a BadFrame

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (used to report truncation)."""
        return len(self._buf)

    @property
    def expected(self) -> int | None:
        """Size (header included) of the incomplete frame held back, once its header is in:
        a listener can refuse a frame too large for it before buffering its body."""
        if len(self._buf) < HEADER_SIZE:
            return None
        return HEADER_SIZE + HEADER.unpack_from(self._buf, 0)[4]

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        buf = self._buf
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        buf += data
        out: list[Frame | BadFrame] = []
        pos = 0
        size = len(buf)
        while size - pos >= HEADER_SIZE:
            magic, version, mtype, req_id, length = HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                del buf[:]
                raise FrameError(f"bad magic {bytes(magic)!r}: not a Mirror Portal engine frame")
            if length > self.max_frame:
                del buf[:]
                raise FrameError(
                    f"frame too large: {length} bytes > limit {self.max_frame}", req_id
                )
            bad = None
            if version != PROTOCOL_VERSION:
                bad = (
                    f"unsupported protocol version {version} "
                    f"(this member speaks {PROTOCOL_VERSION})"
                )
            elif mtype not in _VALID_TYPES:
                bad = f"unknown message type {mtype}"
            if bad is not None:
                out.append(BadFrame(req_id, bad))
                avail = size - pos - HEADER_SIZE
                if avail >= length:
                    pos += HEADER_SIZE + length
                else:
                    self._skip = length - avail
                    pos = size
                continue
            end = pos + HEADER_SIZE + length
            if end > size:
                break
            out.append(Frame(mtype, req_id, bytes(buf[pos + HEADER_SIZE : end]), version))
            pos = end
        if pos:
            del buf[:pos]
        return out


def describe_truncation(decoder: FrameDecoder) -> str | None:
    """Text for the log line when a peer closes in the middle of a frame."""
    n = decoder.pending
    if not n:
        return None
    if n < HEADER_SIZE:
        return f"truncated frame: connection closed after {n} of {HEADER_SIZE} header bytes"
    _, _, mtype, req_id, length = HEADER.unpack_from(decoder._buf, 0)
    got = n - HEADER_SIZE
    return (
        f"truncated frame: connection closed after {got} of {length} body bytes "
        f"(type {mtype}, request {req_id})"
    )


async def read_frame(reader, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Read one frame from an asyncio StreamReader (client side and data channel receiver)."""
    header = await reader.readexactly(HEADER_SIZE)
    magic, version, mtype, req_id, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}: peer is not a Mirror Portal engine")
    if version != PROTOCOL_VERSION:
        raise FrameError(
            f"peer speaks protocol version {version}, this side speaks {PROTOCOL_VERSION}", req_id
        )
    if length > max_frame:
        raise FrameError(f"frame too large: {length} bytes > limit {max_frame}", req_id)
    body = await reader.readexactly(length) if length else b""
    return Frame(mtype, req_id, body, version)


class RequestError(Exception):
    """Raised by request handlers; becomes an ERROR reply (the connection stays open)."""

    def __init__(self, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra
