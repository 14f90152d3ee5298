"""Journal record and file-header codec (no I/O; engine/storage/journal.py does the files).

A journal file is a 20-byte header followed by records back to back.  Header:

    magic "MPJRNL01" (8) | file_seq u32 | date YYYYMMDD u32 | crc32 of the first 16 bytes (4)

It depends only on (file_seq, date), so every member's copy of a file is byte-identical.

A record (little endian; 44-byte fixed part, then the variable part):

    crc u32 | length u32 | file_seq u32 | offset u64 | timestamp f64 | txid u64 |
    op u8 | db_len u8 | key_len u16 | value_len u32 | database | key | value

`crc` is zlib's CRC-32 over everything after it.  `length` is the whole record and must equal
44 + db_len + key_len + value_len, so a flipped bit in a length field is caught by that identity
even before the CRC (which catches every single-bit error elsewhere).  file_seq/offset are the
record's own position, so bytes placed at the wrong file or offset are rejected too.  `key` is
engine.storage.collation.encode_key(gname, subs),
`value` is encode_value(value) (empty for KILL): the
store applies both as they are, without decoding.
"""

from __future__ import annotations

import struct
import zlib
from operator import itemgetter
from typing import NamedTuple

from engine.storage.collation import decode_key, decode_value, encode_key, encode_value

OP_SET = 1
OP_KILL = 2
OP_NAMES = {OP_SET: "SET", OP_KILL: "KILL"}
_OPS_BY_NAME = {"SET": OP_SET, "KILL": OP_KILL, OP_SET: OP_SET, OP_KILL: OP_KILL}

REC = struct.Struct("<IIIQdQBBHI")
REC_SIZE = REC.size  # 44
_LEN = struct.Struct("<I")
FILE_MAGIC = b"MPJRNL01"
FILE_HEADER = struct.Struct("<8sIII")
FILE_HEADER_SIZE = FILE_HEADER.size  # 20
MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_KEY_BYTES = 511  # LMDB's key size limit (engine/storage/store.py)


class CorruptRecord(ValueError):
    """Journal bytes that fail a length, position or checksum check."""

    def __init__(self, message: str, offset: int = 0, truncated: bool = False):
        super().__init__(message)
        self.offset = offset  # bytes of good records before the bad one
        self.truncated = truncated  # the buffer just ends inside a record (more may follow)


class JournalPosition(NamedTuple):
    """Where a record starts: (journal file sequence number, byte offset in that file)."""

    file_seq: int
    offset: int

    def __str__(self) -> str:
        return f"{self.file_seq}:{self.offset}"


_new_pos = tuple.__new__


def make_position(file_seq: int, offset: int) -> JournalPosition:
    return _new_pos(JournalPosition, (file_seq, offset))


def pos_wire(pos: JournalPosition | None) -> list | None:
    """A journal position as it travels in messages: [file_seq, offset]."""
    return None if pos is None else [pos.file_seq, pos.offset]


def pos_from_wire(value) -> JournalPosition | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"journal position must be [file_seq, offset], got {value!r}")
    return JournalPosition(value[0], value[1])


class Entry(NamedTuple):
    """An update to journal: what `Journal.commit` takes."""

    txid: int
    database: str
    op: int | str
    gname: str
    subs: tuple = ()
    value: object = None


class Record(tuple):
    """A decoded journal record (a tuple, for cheap creation in bulk decoding).

    Fields: position, timestamp, txid, database, op (OP_SET/OP_KILL), key (encoded node key),
    raw_value (encoded value, b"" for KILL), length (bytes in the journal).  gname, subs and
    value are decoded lazily from key / raw_value.
    """

    __slots__ = ()

    def __new__(cls, position, timestamp, txid, database, op, key, raw_value, length=0):
        return tuple.__new__(cls, (position, timestamp, txid, database, op, key, raw_value, length))

    position = property(itemgetter(0))
    timestamp = property(itemgetter(1))
    txid = property(itemgetter(2))
    database = property(itemgetter(3))
    op = property(itemgetter(4))
    key = property(itemgetter(5))
    raw_value = property(itemgetter(6))
    length = property(itemgetter(7))

    @property
    def gname(self) -> str:
        return decode_key(self[5])[0]

    @property
    def subs(self) -> tuple:
        return decode_key(self[5])[1]

    @property
    def value(self):
        return decode_value(self[6]) if self[6] else None

    @property
    def op_name(self) -> str:
        return OP_NAMES.get(self[4], str(self[4]))

    @property
    def end(self) -> JournalPosition:
        """Position just after this record."""
        return make_position(self[0][0], self[0][1] + self[7])

    def __repr__(self):
        return (
            f"Record({self.position}, {self.op_name} {self.database} ^{self.gname}{self.subs!r}"
            f"={self.value!r}, txid={self.txid})"
        )


def op_code(op) -> int:
    try:
        return _OPS_BY_NAME[op]
    except KeyError:
        raise ValueError(f"unknown journal operation {op!r} (SET or KILL)") from None


def check_entry(txid, database, key, raw_value) -> bytes:
    """Validate the parts of a record; return the encoded database name."""
    db = database.encode("utf-8") if type(database) is str else database
    if not 0 < len(db) < 256:
        raise ValueError("database name must be 1-255 bytes")
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"node key is {len(key)} bytes; the limit is {MAX_KEY_BYTES}")
    if REC_SIZE + len(db) + len(key) + len(raw_value) > MAX_RECORD_BYTES:
        raise ValueError(f"journal record exceeds {MAX_RECORD_BYTES} bytes")
    if type(txid) is not int or not 0 <= txid < 1 << 64:
        raise ValueError(f"transaction id {txid!r} must be an int in 0..2**64-1")
    return db


def encode_entry(file_seq, offset, timestamp, txid, database, op, key, raw_value) -> bytes:
    """Encode one record from already-encoded key/value bytes."""
    db = check_entry(txid, database, key, raw_value)
    length = REC_SIZE + len(db) + len(key) + len(raw_value)
    body = (
        REC.pack(0, length, file_seq, offset, timestamp, txid, op, len(db), len(key),
                 len(raw_value))[4:]
        + db + key + raw_value
    )  # fmt: skip
    return _LEN.pack(zlib.crc32(body)) + body


def encode_record(position, timestamp, txid, database, op, gname, subs=(), value=None) -> bytes:
    """Encode one SET/KILL record at `position` (file_seq, offset)."""
    op = op_code(op)
    if op == OP_SET and value is None:
        raise ValueError("SET needs a value")
    raw = encode_value(value) if op == OP_SET else b""
    return encode_entry(
        position[0], position[1], timestamp, txid, database, op, encode_key(gname, subs), raw
    )


def decode_records(buf, expect=None) -> list[Record]:
    """Decode back-to-back records filling `buf` exactly.

    Raises CorruptRecord (with .offset = bytes of good records before the bad one) on any
    length, checksum or position error, or if buf ends inside a record.  With expect=(file_seq,
    offset) each record must claim exactly the position it is found at.
    """
    out, _, err = decode_prefix(buf, expect)
    if err is not None:
        raise err
    return out


def decode_prefix(buf, expect=None) -> tuple[list[Record], int, CorruptRecord | None]:
    """Decode the longest valid prefix of buf: (records, bytes used, error that stopped it)."""
    b = buf if type(buf) is bytes else bytes(buf)
    n = len(b)
    out = []
    append = out.append
    unpack = REC.unpack_from
    crc32 = zlib.crc32
    new_pos = new_rec = _new_pos
    dbnames: dict[bytes, str] = {}
    i = 0
    err = None
    while i < n:
        if n - i < REC_SIZE:
            err = CorruptRecord(f"truncated record header at byte {i}", i, truncated=True)
            break
        crc, length, fseq, off, ts, txid, op, dl, kl, vl = unpack(b, i)
        end = i + length
        if length != REC_SIZE + dl + kl + vl:
            err = CorruptRecord(f"inconsistent record length at byte {i}", i)
            break
        if end > n:
            err = CorruptRecord(f"truncated record at byte {i}", i, truncated=True)
            break
        if crc32(b[i + 4 : end]) != crc:
            err = CorruptRecord(f"checksum mismatch in record at byte {i}", i)
            break
        if expect is not None and (fseq != expect[0] or off != expect[1] + i):
            err = CorruptRecord(
                f"record at byte {i} claims position {fseq}:{off}, expected "
                f"{expect[0]}:{expect[1] + i}",
                i,
            )
            break
        if op != OP_SET and op != OP_KILL:
            err = CorruptRecord(f"unknown operation {op} at byte {i}", i)
            break
        p = i + REC_SIZE + dl
        dbb = b[p - dl : p]
        db = dbnames.get(dbb)
        if db is None:
            db = dbnames[dbb] = dbb.decode("utf-8", "replace")
        k = p + kl
        append(new_rec(Record, (new_pos(JournalPosition, (fseq, off)), ts, txid, db, op, b[p:k],
                                b[k:end], length)))  # fmt: skip
        i = end
    return out, i, err


def scan_good_prefix(buf) -> int:
    """Length of the longest prefix of buf made of whole, valid records (for tail cutting)."""
    return decode_prefix(buf)[1]


def file_content(data: bytes) -> bytes:
    """A journal file's header and whole records, without what follows them: the zeros a
    primary writes ahead of its end (engine/storage/journal.py), or a torn tail."""
    if len(data) < FILE_HEADER_SIZE:
        return data
    return data[: FILE_HEADER_SIZE + scan_good_prefix(memoryview(data)[FILE_HEADER_SIZE:])]


def record_boundary(buf, max_bytes: int) -> int:
    """Largest prefix length <= max_bytes of buf that ends on a record boundary.

    Reads only length fields (the receiver validates checksums).  Always includes at least one
    whole record if buf starts with one, even when it is larger than max_bytes.
    """
    mv = memoryview(buf)
    n = len(mv)
    i = 0
    while i + 8 <= n:
        length = _LEN.unpack_from(mv, i + 4)[0]
        if length < REC_SIZE or i + length > n:
            break
        if i + length > max_bytes and i > 0:
            break
        i += length
    return i


def encode_file_header(file_seq: int, date: int) -> bytes:
    head = FILE_MAGIC + struct.pack("<II", file_seq, date)
    return head + _LEN.pack(zlib.crc32(head))


def decode_file_header(buf) -> tuple[int, int]:
    """Return (file_seq, date) or raise CorruptRecord."""
    if len(buf) < FILE_HEADER_SIZE:
        raise CorruptRecord("truncated journal file header", 0)
    magic, seq, date, crc = FILE_HEADER.unpack_from(buf, 0)
    if magic != FILE_MAGIC or zlib.crc32(bytes(buf[:16])) != crc:
        raise CorruptRecord("bad journal file header", 0)
    return seq, date
