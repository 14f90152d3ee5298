"""One mirrored database: an embedded LMDB environment holding globals.

Reads (get, order, query, count, dump), writes in transactions, and `apply(records, upto=None)`,
which applies journal records and records the applied position — it may move that position
past records it was not given (filtered ones).  query() takes start/stop as full subscript
tuples or as one subscript below prefix.  Opening a store twice in one process raises
StoreError.

Why LMDB (bench/store_choice.py, 400k random keys, 100-byte values, this 2-core VM, which other
jobs were sharing, so take the figures as +-30%):

    store           apply (1,000-SET batches)  commit (1 SET/txn)  point get   scan
    lmdb writemap   ~400,000 rec/s             ~140,000 ops/s      ~365,000/s  ~2.7M rows/s
    lmdb            ~275,000 rec/s             ~ 40,000 ops/s      ~355,000/s  ~2.0M rows/s
    sqlite (WAL)    ~ 29,000 rec/s             ~ 23,000 ops/s      ~ 89,000/s  ~1.3M rows/s

Dejournaling (applying batches of journal records) is the path that has to be fast, and LMDB's
cursor.putmulti is about 10x SQLite's executemany into a WITHOUT ROWID B-tree at random keys;
point reads are ~4x faster (no SQL layer), and single commits (the primary's path) ~6x with
writemap.  LMDB's one drawback here, keys limited to 511 bytes, is checked with a clear error.

Layout: named sub-database "data" maps
engine.storage.collation.encode_key(gname, subs) -> encode_value
(value); "meta" holds the applied journal position.  Key bytes sort in collation order, so a
subtree is one contiguous key range and order/query are cursor walks.

Write mode: writemap=True (writes go straight into the shared mapping instead of being copied
out at commit) roughly doubled the measured dejournal apply rate (~200k -> ~400k records/s into
a 500k-key tree).  Its cost: data.mdb is a sparse file whose apparent size is the map size
(16 GiB by default); `du` and `size_bytes()` show the real use.  A full map raises StoreError.

Durability: the journal is the durability point, so commits are not fsync'ed (sync=False,
metasync=False).  Data survives a process crash (kill -9: it is in the OS page cache) and the
instance replays the journal from `applied_position` at start.  An OS crash or power loss can
lose recent store commits and, LMDB being unsynced, can even leave data.mdb inconsistent: then
the store must be rebuilt from the journal (or copied from another member).  `sync()` forces the
store to disk; call it before purging journal files a replay would need (a checkpoint).  A copy
with no journal behind it (downloaded, adopted, restored and added) is fsync'ed before the
member's catalog counts it: engine/storage/durable.py.

Threads: reads may come from any thread (each uses its own LMDB read transaction); writes are
serialized by a lock, and an explicit transaction (begin..commit) belongs to the thread that
began it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from contextlib import contextmanager

import lmdb

from engine.storage.collation import (
    decode_key,
    decode_subs,
    decode_subscript,
    decode_value,
    encode_key,
    encode_subscript,
    encode_value,
    global_prefix,
)
from engine.storage.journal_codec import MAX_KEY_BYTES, OP_KILL, OP_SET, JournalPosition

_POS = struct.Struct(">IQ")
_PAGE = 1000  # rows per read transaction in query()
_OPEN_PATHS: set[str] = set()
_OPEN_LOCK = threading.Lock()
_APPLIED = b"applied_position"


class StoreError(Exception):
    pass


def _check_key(key: bytes) -> bytes:
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"node key is {len(key)} bytes; the limit is {MAX_KEY_BYTES}")
    return key


def _putmulti(txn, db, items) -> int:
    try:
        return txn.cursor(db).putmulti(items)[0]
    except lmdb.BadValsizeError:
        bad = max(len(k) for k, _ in items)
        raise ValueError(f"node key is {bad} bytes; the limit is {MAX_KEY_BYTES}") from None


def _kill_range(txn, db, prefix: bytes) -> int:
    """Delete every key starting with prefix (a node and its subtree)."""
    cur = txn.cursor(db)
    n = 0
    if not cur.set_range(prefix):
        return 0
    while True:
        k = cur.key()
        if not k.startswith(prefix):
            break
        n += 1
        if not cur.delete():
            break
    return n


class Store:
    """A mirrored database (see module docstring)."""

    def __init__(self, path: str, map_size: int = 1 << 34):
        path = str(path)
        os.makedirs(path, exist_ok=True)
        self.path = path
        # LMDB must not be opened twice in one process (its locks are per process).
        real = os.path.realpath(path)
        with _OPEN_LOCK:
            if real in _OPEN_PATHS:
                raise StoreError(f"store {path} is already open in this process")
            _OPEN_PATHS.add(real)
        self._real = real
        try:
            self._env = self._open_env(path, map_size)
        except BaseException:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(real)
            raise
        self._env.reader_check()  # free reader slots of a killed earlier process
        self._data = self._env.open_db(b"data")
        self._meta = self._env.open_db(b"meta")
        self._lock = threading.RLock()
        self._txn = None  # explicit write transaction (begin..commit)
        self._txn_owner = None
        with self._env.begin() as txn:
            raw = txn.get(_APPLIED, db=self._meta)
        self._applied = _unpack_pos(raw)

    @staticmethod
    def _open_env(path, map_size):
        return lmdb.open(
            path,
            map_size=map_size,
            max_dbs=2,
            sync=False,
            metasync=False,
            readahead=False,
            max_readers=512,
            writemap=True,  # 2x faster batch apply; see the module docstring
        )

    @classmethod
    def open(cls, path: str, **kw) -> Store:
        return cls(path, **kw)

    def close(self) -> None:
        with self._lock:
            if self._txn is not None:
                self._txn.abort()
                self._txn = None
            self._env.close()
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(self._real)

    def copy_to_fd(self, fd: int) -> None:
        """Write a consistent snapshot of the database file to `fd` (LMDB copies it from
        one read transaction, so writers go on meanwhile), then close `fd`."""
        try:
            self._env.copyfd(fd)
        except lmdb.Error as exc:
            raise StoreError(f"snapshot of {self.path} failed: {exc}") from None
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Flush everything committed so far to disk."""
        self._env.sync(True)

    # -- transactions ------

    def begin(self) -> None:
        if self._txn is not None and self._txn_owner == threading.get_ident():
            raise StoreError("a transaction is already open on this store")
        self._lock.acquire()
        self._txn = self._env.begin(write=True)
        self._txn_owner = threading.get_ident()

    def commit(self) -> None:
        txn = self._end_txn()
        txn.commit()
        self._lock.release()

    def rollback(self) -> None:
        txn = self._end_txn()
        txn.abort()
        self._lock.release()

    def _end_txn(self):
        if self._txn is None or self._txn_owner != threading.get_ident():
            raise StoreError("no transaction is open on this store")
        txn, self._txn, self._txn_owner = self._txn, None, None
        return txn

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None and self._txn_owner == threading.get_ident()

    @contextmanager
    def transaction(self):
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    @contextmanager
    def _write(self):
        try:
            if self.in_transaction:
                yield self._txn
                return
            with self._lock, self._env.begin(write=True) as txn:
                yield txn
        except lmdb.MapFullError:
            raise StoreError(
                f"database {self.path} is full (map size {self._env.info()['map_size']} bytes)"
            ) from None

    @contextmanager
    def _read(self):
        if self.in_transaction:
            yield self._txn
            return
        with self._env.begin() as txn:
            yield txn

    # -- nodes ------

    def get(self, gname: str, subs: tuple = ()):
        key = encode_key(gname, subs)
        with self._read() as txn:
            raw = txn.get(key, db=self._data)
        return None if raw is None else decode_value(raw)

    def set(self, gname: str, subs: tuple, value) -> None:
        key = _check_key(encode_key(gname, subs))
        raw = encode_value(value)
        with self._write() as txn:
            txn.put(key, raw, db=self._data)

    def kill(self, gname: str, subs: tuple = ()) -> int:
        """Remove a node and its whole subtree; return how many nodes were removed."""
        prefix = encode_key(gname, subs)
        with self._write() as txn:
            return _kill_range(txn, self._data, prefix)

    def order(self, gname: str, subs: tuple, direction: int = 1):
        """Next (direction=1) or previous (-1) sibling subscript of subs[-1] that has data at or
        below it, or None.  subs[-1] may be None to get the first / last subscript."""
        if not subs:
            raise ValueError("order needs at least one subscript (use None for the first)")
        if direction not in (1, -1):
            raise ValueError("direction must be 1 or -1")
        parent = encode_key(gname, tuple(subs[:-1]))
        last = subs[-1]
        if last is None:
            seek = parent if direction == 1 else parent + b"\xff"
        else:
            here = parent + encode_subscript(last)
            # every descendant of `here` continues with a tag byte below 0xff
            seek = here + b"\xff" if direction == 1 else here
        with self._read() as txn:
            cur = txn.cursor(self._data)
            if direction == 1:
                found = cur.set_range(seek)
                while found:
                    k = cur.key()
                    if not k.startswith(parent):
                        return None
                    if len(k) > len(parent):
                        return decode_subscript(k, len(parent))[0]
                    found = cur.next()  # the parent node itself
                return None
            found = cur.prev() if cur.set_range(seek) else cur.last()
            if found:
                k = cur.key()
                if k.startswith(parent) and len(k) > len(parent):
                    return decode_subscript(k, len(parent))[0]
            return None

    def query(
        self, gname: str, prefix: tuple = (), start=None, stop=None, reverse=False, limit=None
    ):
        """Iterate (subs, value) in collation order under prefix (the prefix node included).

        start (inclusive) / stop (exclusive) bound the walk; each is a full subscript tuple, or a
        single subscript meaning prefix + (it,).  Descendants of start are inside the range,
        descendants of stop are not.
        """
        pkey = encode_key(gname, tuple(prefix))
        lo = pkey if start is None else self._bound(gname, prefix, start)
        hi = pkey + b"\xff" if stop is None else self._bound(gname, prefix, stop)
        glen = len(global_prefix(gname))
        if lo < pkey:
            lo = pkey
        if hi > pkey + b"\xff":
            hi = pkey + b"\xff"
        if limit is not None and limit <= 0:
            return iter(())
        return self._scan(lo, hi, reverse, limit, glen)

    def _scan(self, lo: bytes, hi: bytes, reverse: bool, limit, glen: int):
        """Yield decoded rows of [lo, hi), a page per read transaction (bounded memory; pages
        after the first see writes committed meanwhile)."""
        while True:
            want = _PAGE if limit is None else min(_PAGE, limit)
            page = self._page(lo, hi, reverse, want)
            for k, v in page:
                yield decode_subs(k, glen), decode_value(v)
            if limit is not None:
                limit -= len(page)
            if len(page) < want or limit == 0:
                return
            if reverse:
                hi = page[-1][0]
            else:
                lo = page[-1][0] + b"\x00"  # the smallest key after the last one

    def _page(self, lo: bytes, hi: bytes, reverse: bool, n: int) -> list:
        rows = []
        with self._read() as txn:
            cur = txn.cursor(self._data)
            if not reverse:
                ok = cur.set_range(lo)
                while ok and len(rows) < n:
                    k = cur.key()
                    if k >= hi:
                        break
                    rows.append((k, cur.value()))
                    ok = cur.next()
            else:
                ok = cur.prev() if cur.set_range(hi) else cur.last()
                while ok and len(rows) < n:
                    k = cur.key()
                    if k < lo:
                        break
                    rows.append((k, cur.value()))
                    ok = cur.prev()
        return rows

    @staticmethod
    def _bound(gname, prefix, b) -> bytes:
        subs = tuple(b) if isinstance(b, (tuple, list)) else (*prefix, b)
        return encode_key(gname, subs)

    def size_bytes(self) -> int:
        """Bytes of the store file actually in use (data.mdb is sparse)."""
        info, stat = self._env.info(), self._env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]

    def count(self) -> int:
        with self._read() as txn:
            return txn.stat(self._data)["entries"]

    def globals(self) -> list[str]:
        """Names of all globals that have data."""
        names = []
        with self._read() as txn:
            cur = txn.cursor(self._data)
            ok = cur.first()
            while ok:
                k = cur.key()
                z = k.index(b"\x00")
                names.append(k[:z].decode("ascii"))
                ok = cur.set_range(k[: z + 1] + b"\xff")
        return names

    # -- journal application ------

    @property
    def applied_position(self):
        return self._applied

    def apply(self, records, upto=None) -> int:
        """Apply journal records (SET/KILL, in order) atomically; skip ones already applied.

        Records must come in journal order across calls too: a record at or before the
        applied position counts as already applied, so applying a later batch before an
        earlier one would silently skip the earlier one.

        The applied position becomes that of the last record, or `upto` if it is later (used
        when filtered-out records were not passed in).  Returns the number of records applied.
        """
        if self.in_transaction:
            raise StoreError("apply runs its own transaction; commit the open one first")
        if type(records) is not list:
            records = list(records)
        applied = self._applied
        start = 0
        if applied is not None:  # records are in journal order: skip the applied prefix once
            while start < len(records) and records[start].position <= applied:
                start += 1
        todo = records[start:] if start else records
        last = todo[-1].position if todo else applied
        n = 0
        data = self._data
        with self._write() as txn:
            puts = []
            for r in todo:
                op = r.op
                if op == OP_SET:
                    puts.append((r.key, r.raw_value))
                elif op == OP_KILL:
                    if puts:
                        n += _putmulti(txn, data, puts)
                        puts = []
                    _kill_range(txn, data, r.key)
                    n += 1
            if puts:
                n += _putmulti(txn, data, puts)
            if upto is not None and (last is None or upto > last):
                last = upto
            if last is not None and last != applied:
                txn.put(_APPLIED, _POS.pack(last[0], last[1]), db=self._meta)
        if last is not None and last != applied:
            self._applied = _make_pos(last)
        return n

    def digest(self) -> str:
        """SHA-256 over every (key, value) in order: equal content <=> equal digest."""
        h = hashlib.sha256()
        with self._env.begin() as txn:
            for k, v in txn.cursor(self._data):
                h.update(_POS.pack(len(k), len(v)))
                h.update(k)
                h.update(v)
        return h.hexdigest()

    def dump(self) -> list[tuple[str, tuple, object]]:
        """Every node as (gname, subs, value) in collation order (tests, tools)."""
        with self._env.begin() as txn:
            return [(*decode_key(k), decode_value(v)) for k, v in txn.cursor(self._data)]


def _make_pos(pos):
    return pos if isinstance(pos, JournalPosition) else JournalPosition(pos[0], pos[1])


def _unpack_pos(raw):
    if raw is None:
        return None
    return _make_pos(_POS.unpack(raw))
