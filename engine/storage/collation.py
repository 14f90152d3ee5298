"""Subscript collation: globals and their subscripts as memcmp-ordered byte keys.

A node is a global name plus a tuple of subscripts (int | float | str).  Collation order:
numbers before strings, numbers in numeric order (int and float compare as numbers, so 1 and
1.0 are the same subscript), strings by code point, and a node before its descendants.

`encode_key` turns a node into bytes whose plain bytewise order equals that collation order, so
any B-tree over the bytes iterates globals in collation order and the key of a node is a byte
prefix of the keys of all its descendants (a subtree is one contiguous byte range).

Layout: the global name in ASCII, a 0x00 terminator, then each subscript self-delimited:

    zero      0x03
    positive  0x04  exponent (2 bytes, big endian, biased) + mantissa chunks + 0x00
    negative  0x02  the positive encoding of -x with every byte inverted (so bigger magnitude
                    sorts first)
    string    0x06  UTF-8 with 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x01

A positive number is exactly p * 2**e with 1 <= p < 2 (every finite float and every int is);
the bits of p after its leading 1 go in 7-bit chunks (high bit set, trailing zero chunks dropped)
so a longer mantissa sorts after a shorter one with the same prefix and equal numbers get equal
bytes whatever their Python type.  Integral numbers decode as int.

Values are stored as `encode_value` bytes: one type tag then the payload, so str, int, float and
bytes round-trip exactly.
"""

from __future__ import annotations

import math
import re
import struct

TAG_NEG = 0x02
TAG_ZERO = 0x03
TAG_POS = 0x04
TAG_STR = 0x06

_EXP_BIAS = 1 << 15
MAX_GLOBAL_NAME = 31
_GLOBAL_RE = re.compile(r"[%A-Za-z](?:[A-Za-z0-9.]*[A-Za-z0-9])?\Z")
_DOUBLE = struct.Struct(">d")
_INVERT = bytes(255 - i for i in range(256))


def validate_global_name(name: str) -> str:
    """Return name if it is a valid global name, else raise ValueError saying why."""
    if not isinstance(name, str):
        raise ValueError(f"global name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("global name is empty")
    if len(name) > MAX_GLOBAL_NAME:
        raise ValueError(f"global name {name[:40]!r} is longer than {MAX_GLOBAL_NAME} characters")
    if not _GLOBAL_RE.match(name):
        raise ValueError(
            f"global name {name!r} is invalid: it must start with a letter or %, contain only "
            "letters, digits and dots, and not end with a dot"
        )
    return name


def _positive_body(p: int, k: int) -> bytes:
    """Encode the positive number p / 2**k (p > 0) without its tag."""
    bl = p.bit_length()
    exp = bl - 1 - k
    if not -_EXP_BIAS <= exp < _EXP_BIAS:
        raise ValueError("number subscript out of range (|x| must be below 2**32767)")
    nbits = bl - 1
    frac = p - (1 << nbits)
    out = bytearray(((exp + _EXP_BIAS) & 0xFFFF).to_bytes(2, "big"))
    if frac:
        pad = -nbits % 7
        v = frac << pad
        n = (nbits + pad) // 7
        while not v & 0x7F:
            v >>= 7
            n -= 1
        out += bytes(0x80 | ((v >> (7 * i)) & 0x7F) for i in range(n - 1, -1, -1))
    out.append(0)
    return bytes(out)


def encode_subscript(sub) -> bytes:
    """Encode one subscript (self-delimiting, memcmp-ordered)."""
    t = type(sub)
    if t is str:
        body = sub.encode("utf-8", "surrogatepass")
        if b"\x00" in body:
            body = body.replace(b"\x00", b"\x00\xff")
        return b"\x06" + body + b"\x00\x01"
    if t is int:
        if sub == 0:
            return b"\x03"
        if sub > 0:
            return b"\x04" + _positive_body(sub, 0)
        return b"\x02" + _positive_body(-sub, 0).translate(_INVERT)
    if t is float:
        if not math.isfinite(sub):
            raise ValueError(f"subscript {sub!r} is not a finite number")
        if sub == 0.0:
            return b"\x03"
        p, q = abs(sub).as_integer_ratio()
        body = _positive_body(p, q.bit_length() - 1)
        return b"\x04" + body if sub > 0 else b"\x02" + body.translate(_INVERT)
    raise ValueError(f"subscript {sub!r} has type {t.__name__}; subscripts are int, float or str")


_PLAIN_KEY_CACHE: dict[str, bytes] = {}


def global_prefix(global_name: str) -> bytes:
    """Encoded key of the global's root node (cached: names repeat a lot)."""
    pre = _PLAIN_KEY_CACHE.get(global_name)
    if pre is None:
        validate_global_name(global_name)
        pre = global_name.encode("ascii") + b"\x00"
        if len(_PLAIN_KEY_CACHE) < 10000:
            _PLAIN_KEY_CACHE[global_name] = pre
    return pre


def encode_key(global_name: str, subs: tuple = ()) -> bytes:
    """Encode a node as bytes whose memcmp order is the collation order."""
    pre = global_prefix(global_name)
    if not subs:
        return pre
    if type(subs) is not tuple:
        if isinstance(subs, list):
            subs = tuple(subs)
        else:
            raise ValueError(f"subscripts must be a tuple, not {type(subs).__name__}")
    return pre + b"".join([encode_subscript(s) for s in subs])


def _decode_positive(b: bytes, i: int) -> tuple[int | float, int]:
    exp = ((b[i] << 8) | b[i + 1]) - _EXP_BIAS
    i += 2
    mant = 1
    nbits = 0
    while True:
        c = b[i]
        i += 1
        if c == 0:
            break
        if not c & 0x80:
            raise ValueError("bad number encoding in key")
        mant = (mant << 7) | (c & 0x7F)
        nbits += 7
    shift = exp - nbits
    if shift >= 0:
        return mant << shift, i
    # Non-integral: came from a float, so it is exactly representable as one.
    g = (mant & -mant).bit_length() - 1
    if g >= -shift:
        return mant >> -shift, i
    return math.ldexp(mant, shift), i


def decode_subscript(b: bytes, i: int = 0) -> tuple[int | float | str, int]:
    """Decode the subscript at offset i; return (subscript, offset after it)."""
    tag = b[i]
    if tag == TAG_STR:
        j = i + 1
        parts = []
        while True:
            z = b.index(b"\x00", j)
            parts.append(b[j:z])
            if b[z + 1] == 0x01:
                break
            if b[z + 1] != 0xFF:
                raise ValueError("bad string escape in key")
            parts.append(b"\x00")
            j = z + 2
        return b"".join(parts).decode("utf-8", "surrogatepass"), z + 2
    if tag == TAG_ZERO:
        return 0, i + 1
    if tag == TAG_POS:
        return _decode_positive(b, i + 1)
    if tag == TAG_NEG:
        end = b.index(b"\xff", i + 3)
        body = bytes(b[i + 1 : end + 1]).translate(_INVERT)
        v, _ = _decode_positive(body, 0)
        return -v, end + 1
    raise ValueError(f"bad subscript tag 0x{tag:02x} in key")


def decode_subs(b: bytes, i: int) -> tuple:
    """Decode all subscripts from offset i to the end of b."""
    subs = []
    n = len(b)
    while i < n:
        s, i = decode_subscript(b, i)
        subs.append(s)
    return tuple(subs)


def decode_key(b: bytes) -> tuple[str, tuple]:
    """Inverse of encode_key."""
    b = bytes(b)
    z = b.find(b"\x00")
    if z <= 0:
        raise ValueError("key has no global name")
    try:
        return b[:z].decode("ascii"), decode_subs(b, z + 1)
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed key: {exc}") from None


# -- values -------------------------------------------------------------------------------------

VAL_BYTES = 0x62  # b"b"
VAL_STR = 0x73  # b"s"
VAL_INT = 0x69  # b"i"
VAL_FLOAT = 0x66  # b"f"


def encode_value(value) -> bytes:
    """Encode a stored value (str | int | float | bytes) as tagged bytes."""
    t = type(value)
    if t is str:
        return b"s" + value.encode("utf-8", "surrogatepass")
    if t is bytes:
        return b"b" + value
    if t is int:
        return b"i" + value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if t is float:
        return b"f" + _DOUBLE.pack(value)
    if t in (bytearray, memoryview):
        return b"b" + bytes(value)
    raise ValueError(f"value of type {t.__name__} cannot be stored; use str, int, float or bytes")


def decode_value(b: bytes):
    """Inverse of encode_value."""
    tag = b[0]
    if tag == VAL_STR:
        return bytes(b[1:]).decode("utf-8", "surrogatepass")
    if tag == VAL_BYTES:
        return bytes(b[1:])
    if tag == VAL_INT:
        return int.from_bytes(b[1:], "little", signed=True)
    if tag == VAL_FLOAT:
        return _DOUBLE.unpack_from(b, 1)[0]
    raise ValueError(f"bad value tag 0x{tag:02x}")


def collation_sort_key(subs: tuple) -> tuple:
    """A Python sort key giving the collation order of subscript tuples (for tests/tools)."""
    return tuple((0, s, "") if type(s) is not str else (1, 0, s) for s in subs)
