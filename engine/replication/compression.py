"""Journal compression on the data channel (guide §3.5.3): codec choice, compress, decompress.

Codecs: "zlib" (level 1), "zstd" (level 3), "lz4" (block format with the size stored).  Levels
were picked with bench/compression.py on generated journal batches: zlib's default level 6 costs
several times the CPU of level 1 for a few percent of ratio, which would cap the journal rate.

choose_codec follows the two mirror settings (failover members / asyncs):
    System Selected  to the backup: LZ4 only when the mirror requires TLS, else uncompressed;
                     to asyncs: always Zstd
    Uncompressed     never compress
    Compressed       the configured type (zlib by default)
and falls back to zlib when the receiver cannot decompress the chosen codec.

decompress() refuses output larger than max_size (default 64 MiB) and raises CompressionError
(a ValueError) for damaged input, so a bad frame cannot make a member allocate without bound.
"""

from __future__ import annotations

import threading
import zlib

import lz4.block
import zstandard

from engine.rules import COMPRESSION_MODES as MODES
from engine.rules import COMPRESSION_TYPES as CODECS

MAX_DECOMPRESSED = 64 * 1024 * 1024
ZLIB_LEVEL = 1
ZSTD_LEVEL = 3


class CompressionError(ValueError):
    pass


def _norm_mode(mode: str) -> str:
    key = str(mode).replace("_", " ").replace("-", " ").strip().lower()
    for m in MODES:
        if m.lower() == key:
            return m
    raise ValueError(f"unknown compression mode {mode!r}; expected one of {', '.join(MODES)}")


def normalize_codec(codec: str) -> str:
    c = str(codec).strip().lower()
    if c not in CODECS:
        raise ValueError(f"unknown compression type {codec!r}; expected zlib, zstd or lz4")
    return c


def choose_codec(
    mode: str,
    compressed_type: str | None = "zlib",
    to_backup: bool = False,
    tls: bool = False,
    receiver_codecs=None,
) -> str | None:
    """Codec for a primary -> member connection, or None for uncompressed (guide §3.5.3)."""
    m = _norm_mode(mode)
    if m == "Uncompressed":
        return None
    if m == "System Selected":
        codec = ("lz4" if tls else None) if to_backup else "zstd"
    else:
        codec = normalize_codec(compressed_type or "zlib")
    if codec is None:
        return None
    if receiver_codecs is not None:
        have = {str(c).lower() for c in receiver_codecs}
        if codec not in have:
            return "zlib"  # every member can inflate zlib
    return codec


_local = threading.local()


def _zstd_c():
    c = getattr(_local, "zc", None)
    if c is None:
        c = _local.zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _zstd_d():
    d = getattr(_local, "zd", None)
    if d is None:
        d = _local.zd = zstandard.ZstdDecompressor()
    return d


def compress(codec: str, data) -> bytes:
    if codec == "lz4":
        return lz4.block.compress(data, store_size=True)
    if codec == "zstd":
        return _zstd_c().compress(data)
    if codec == "zlib":
        return zlib.compress(data, ZLIB_LEVEL)
    raise ValueError(f"unknown compression type {codec!r}")


def decompress(codec: str, data, max_size: int = MAX_DECOMPRESSED) -> bytes:
    try:
        if codec == "lz4":
            if len(data) < 4:
                raise CompressionError("lz4 data too short")
            size = int.from_bytes(bytes(data[:4]), "little")
            if size > max_size:
                raise CompressionError(f"lz4 data claims {size} bytes, limit is {max_size}")
            return lz4.block.decompress(data)
        if codec == "zstd":
            size = zstandard.frame_content_size(data)
            if size > max_size:
                raise CompressionError(f"zstd data claims {size} bytes, limit is {max_size}")
            out = _zstd_d().decompress(data, max_output_size=max_size)
        elif codec == "zlib":
            d = zlib.decompressobj()
            out = d.decompress(data, max_size + 1)
            if not d.eof:
                raise CompressionError("zlib data truncated or larger than the limit")
        else:
            raise ValueError(f"unknown compression type {codec!r}")
    except CompressionError:
        raise
    except (zlib.error, zstandard.ZstdError, lz4.block.LZ4BlockError) as exc:
        raise CompressionError(f"cannot decompress {codec} data: {exc}") from None
    if len(out) > max_size:
        raise CompressionError(f"{codec} data inflates beyond {max_size} bytes")
    return out
