"""Mirror journal files: the writer with group commit, the receiver's copy, reading and purging.

`on_append(data, position)` hands each committed batch on (to the primary's sender) after its
write and before its fsync; `Journal.sync()` (async) makes received data durable;
`commit_sync()` is the blocking commit of the primary's writer; receive() writes a backup's or
async's copy and returns the decoded records.  File naming, the log, JournalReader,
replay_into and purge live in engine/storage/journal_files.py and are re-exported here.

Files live in one directory per member: `MIRROR-<MIRROR>-YYYYMMDD.NNN` (NNN = the file
sequence number, which keeps counting across days) plus the mirror journal log
`mirrorjrn-<MIRROR>.log` listing them in order, one name per line.  Record and header format:
engine/storage/journal_codec.py.  A position is (file_seq, offset) and is the same on every member,
because backups and asyncs write the primary's bytes verbatim at the same offsets.

Group commit: `await Journal.commit(entries)` encodes the records in the caller's thread and
queues them.  One flusher task at a time hands each queued batch to `on_append(data, position)`
(so replication ships it while the disk works), then does ONE pwrite per file + ONE fdatasync on
a dedicated thread, and wakes every committer of that batch.  Commits that arrive while an
fdatasync is in flight form the next batch.  `fsync_count` counts fdatasync calls.

Recovery at open: the last file is scanned and cut at the first incomplete or corrupt record
(a torn tail: nothing after it was ever acknowledged, since acknowledgement follows fdatasync).
If the file before it is torn too, the last file only holds the rest of that unacknowledged
batch and is dropped, so the journal never has a hole.

A write error freezes the journal (every later commit raises JournalError), since positions
after the failed batch were already handed out (guide §3.2 freeze-on-error).

Zero-filled ahead: a file that grows makes every fdatasync write the file's new size too (a
metadata commit), about twice the time of one that only writes data (docs/performance.md).  So
the writer keeps PREALLOCATE bytes of zeros written (and synced) ahead of its end, one chunk
at a time, on a thread of its own before they are needed: its fdatasyncs find only data to
write.  The zeros are no records: readers stop at them, recovery cuts them without counting
them as torn, and a file is cut to its end when the journal moves to the next one or closes.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from engine.storage.collation import encode_key, encode_value
from engine.storage.journal_codec import (
    FILE_HEADER_SIZE,
    OP_KILL,
    OP_NAMES,
    OP_SET,
    CorruptRecord,
    Entry,
    JournalPosition,
    Record,
    check_entry,
    decode_file_header,
    decode_records,
    encode_entry,
    encode_file_header,
    encode_record,
    make_position,
    op_code,
    scan_good_prefix,
)
from engine.storage.journal_files import (
    JournalError,
    JournalGap,
    JournalReader,
    date_int,
    file_name,
    list_files,
    log_name,
    name_re,
    purge,
    replay_into,
    tail_digest,
    validate_mirror_name,
    write_log,
)
from engine.wire import trace

__all__ = [
    "FILE_HEADER_SIZE", "OP_KILL", "OP_NAMES", "OP_SET", "CorruptRecord", "Entry", "Journal",
    "JournalError", "JournalGap", "JournalPosition", "JournalReader", "Record", "decode_records",
    "encode_record", "file_name", "list_files", "log_name", "purge", "replay_into", "tail_digest",
]  # fmt: skip

log = logging.getLogger(__name__)
PREALLOCATE = 1 << 20  # bytes of zeros kept written ahead of the writer's end


def _pwrite_all(fd: int, data, offset: int) -> None:
    """pwrite every byte: a short write (disk or file-size limit) must not pass as written."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"journal write made no progress at offset {offset}")
        view, offset = view[n:], offset + n


class _Segment:
    """Bytes queued for one file, not yet written."""

    __slots__ = ("seq", "offset", "data")

    def __init__(self, seq, offset, data):
        self.seq = seq
        self.offset = offset
        self.data = data


class Journal:
    """The member's mirror journal (writer on a primary, receiver on a backup/async)."""

    def __init__(self, directory, mirror: str, max_file_bytes: int = 64 << 20, fsync: bool = True):
        self.dir = str(directory)
        self.mirror = validate_mirror_name(mirror)
        self.max_file_bytes = max(int(max_file_bytes), FILE_HEADER_SIZE + 4096)
        self.fsync = fsync
        self.on_append = None  # callable(data: bytes, position: JournalPosition)
        self.fsync_count = 0
        self.recovered_cut_bytes = 0  # torn tail removed at open
        os.makedirs(self.dir, exist_ok=True)
        self._fds: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._seq: int | None = None
        self._end = 0
        self._durable = 0
        self._pending: list[_Segment] = []
        self._batch_future: asyncio.Future | None = None
        self._flusher: asyncio.Task | None = None
        self._failed: BaseException | None = None
        # the end of what on_append was given: after a write error, where the peers' copies
        # may end (engine/member/takeover.py give_up_primary)
        self.shipped_position: JournalPosition | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"journal-{mirror}")
        # zero-filling ahead (see the module doc): bytes of each file written, data or zeros
        self._allocated: dict[int, int] = {}
        self._alloc_lock = threading.Lock()
        self._filler = ThreadPoolExecutor(1, thread_name_prefix=f"journal-fill-{mirror}")
        self._filling = False
        self._no_fill = False  # no room for zeros ahead: write without them
        self._finished: set[int] = set()  # files cut to their end: never filled again
        self._sync_lock = threading.Lock()
        self._recv_lock: asyncio.Lock | None = None
        self._recover()

    # -- open / recovery ------

    def _recover(self) -> None:
        files = list_files(self.dir, self.mirror)
        if not files:
            return
        cut = 0
        if len(files) >= 2:
            # A flush that rotated writes the old file's tail and the new file together; later
            # flushes wait for that fdatasync.  So if the previous file is torn, the newest
            # file holds only that unacknowledged batch: cut the one, drop the other.
            fd, good, size, torn = self._scan(*files[-2])
            if not torn:
                os.ftruncate(fd, good)  # zeros ahead, left by a crash at the move to the next
            os.close(fd)
            if torn:
                seq, name = files.pop()
                cut = os.path.getsize(os.path.join(self.dir, name))
                os.remove(os.path.join(self.dir, name))
                log.warning(
                    "journal %s: dropped, written with a torn batch of the file before", name
                )
        for seq, name in files:
            self._names[seq] = name
        seq, name = files[-1]
        fd, good, size, torn = self._scan(seq, name)
        if good < size:
            os.ftruncate(fd, good)
        if torn:
            log.warning(
                "journal %s: cut torn tail of %d bytes at offset %d", name, size - good, good
            )
        self.recovered_cut_bytes = cut + (size - good if torn else 0)
        self._allocated[seq] = good
        os.fsync(fd)
        self._fds[seq] = fd
        self._seq, self._end, self._durable = seq, good, good
        logged = [n for _, n in files]
        if self._read_log() != logged:
            write_log(self.dir, self.mirror, logged)

    def _scan(self, seq: int, name: str) -> tuple[int, int, int, bool]:
        """Open a journal file; return (fd, length of its valid prefix, size, whether what
        follows the prefix is torn: anything but the zeros written ahead)."""
        fd = os.open(os.path.join(self.dir, name), os.O_RDWR)
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        try:
            hseq, _ = decode_file_header(data)
            if hseq != seq:
                raise CorruptRecord("header names another file", 0)
            good = FILE_HEADER_SIZE + scan_good_prefix(memoryview(data)[FILE_HEADER_SIZE:])
        except CorruptRecord:
            # Header never made it to disk: nothing in this file was acknowledged.
            date = int(name_re(self.mirror).match(name).group(1))
            os.pwrite(fd, encode_file_header(seq, date), 0)
            good = FILE_HEADER_SIZE
        return fd, good, size, data.count(0, good) != size - good

    def _read_log(self) -> list[str]:
        try:
            with open(os.path.join(self.dir, log_name(self.mirror))) as f:
                return [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    # -- positions ------

    @property
    def end_position(self) -> JournalPosition | None:
        return None if self._seq is None else make_position(self._seq, self._end)

    @property
    def durable_position(self) -> JournalPosition | None:
        return None if self._seq is None else make_position(self._seq, self._durable)

    @property
    def current_file(self) -> str | None:
        return None if self._seq is None else self._names[self._seq]

    def files(self) -> list[str]:
        return [self._names[s] for s in sorted(self._names)]

    # -- files ------

    def _create_file(self, seq: int, date: int) -> int:
        name = file_name(self.mirror, date, seq)
        fd = os.open(os.path.join(self.dir, name), os.O_RDWR | os.O_CREAT, 0o644)
        self._fds[seq] = fd
        self._names[seq] = name
        self._forget_purged()
        # The log must list the file before anything in it is acknowledged.
        write_log(self.dir, self.mirror, self.files())
        return fd

    def _forget_purged(self) -> None:
        self._names = {
            s: n for s, n in self._names.items() if os.path.exists(os.path.join(self.dir, n))
        }

    def purge(self, keep_from_seq: int) -> list[str]:
        """Remove files before keep_from_seq (never the current one); see journal_files.purge."""
        removed = purge(self.dir, self.mirror, keep_from_seq)
        self._forget_purged()
        return removed

    def new_file(self) -> JournalPosition:
        """Switch to a new journal file (on becoming primary, and at the size limit)."""
        self._check_failed()
        seq = (self._seq or 0) + 1
        date = date_int(_dt.datetime.now(_dt.UTC).date())
        busy = self._pending or (self._flusher is not None and not self._flusher.done())
        if not busy and self._seq is not None and self._durable < self._end:
            self._sync_current()  # e.g. received data on a backup that is becoming primary
        if self._seq is not None:
            self._cut_to_end(self._seq, self._end)
        self._create_file(seq, date)
        self._seq, self._end, self._durable = seq, FILE_HEADER_SIZE, 0
        header = encode_file_header(seq, date)
        if busy:
            self._pending.append(_Segment(seq, 0, bytearray(header)))
        else:
            self._notify(header, seq, 0)
            self._write_segments([_Segment(seq, 0, header)])
            self._durable = FILE_HEADER_SIZE
        return self.end_position

    @property
    def failed(self) -> BaseException | None:
        """The write error that froze this journal, if one did (guide §3.2)."""
        return self._failed

    def _check_failed(self) -> None:
        if self._failed is not None:
            raise JournalError(f"journal is frozen after a write error: {self._failed}")

    # -- writer ------

    def _append(self, entries) -> list[Record]:
        """Encode entries at the end of the journal and queue them; no I/O except rotation."""
        self._check_failed()
        # Encode and check everything first: a bad entry must not leave half a transaction
        # queued for the next flush.
        prepared = []
        for txid, database, op, gname, subs, value in entries:
            op = op_code(op)
            key = encode_key(gname, subs)
            raw = encode_value(value) if op == OP_SET else b""
            check_entry(txid, database, key, raw)
            prepared.append((txid, database, op, key, raw))
        if self._seq is None:
            self.new_file()
        now = time.time()
        records = []
        pending = self._pending
        seg = pending[-1] if pending and pending[-1].seq == self._seq else None
        for txid, database, op, key, raw in prepared:
            rec = encode_entry(self._seq, self._end, now, txid, database, op, key, raw)
            if self._end + len(rec) > self.max_file_bytes and self._end > FILE_HEADER_SIZE:
                self.new_file()
                seg = pending[-1] if pending and pending[-1].seq == self._seq else None
                rec = encode_entry(self._seq, self._end, now, txid, database, op, key, raw)
            if seg is None:
                seg = _Segment(self._seq, self._end, bytearray())
                pending.append(seg)
            records.append(
                Record(make_position(self._seq, self._end), now, txid, database, op, key, raw,
                       len(rec))
            )  # fmt: skip
            seg.data += rec
            self._end += len(rec)
        return records

    async def commit(self, entries) -> list[Record]:
        """Append entries (Entry or (txid, database, op, gname, subs, value)); return their
        records once they are on disk.  Concurrent callers share one write + one fdatasync."""
        records = self._append(entries)
        if not records:
            return records
        if self._batch_future is None:
            self._batch_future = asyncio.get_running_loop().create_future()
        fut = self._batch_future
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        await asyncio.shield(fut)
        return records

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            fut, self._batch_future = self._batch_future, None
            for seg in batch:
                self._notify(bytes(seg.data), seg.seq, seg.offset)
            try:
                await loop.run_in_executor(self._executor, self._write_segments, batch)
            except Exception as exc:
                # Positions after this batch are already handed out: freeze rather than leave
                # a hole (guide §3.2 freeze-on-error).
                self._failed = exc
                log.error("journal write failed, journal frozen: %s", exc)
                err = JournalError(f"journal write failed: {exc}")
                for f in (fut, self._batch_future):
                    if f is not None and not f.done():
                        f.set_exception(err)
                self._pending, self._batch_future = [], None
                return
            self._close_finished_files()
            last = batch[-1]
            if last.seq == self._seq:
                self._durable = max(self._durable, last.offset + len(last.data))
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _notify(self, data, seq, offset) -> None:
        cb = self.on_append
        self.shipped_position = make_position(seq, offset + len(data))
        if cb is not None:
            try:
                cb(data, make_position(seq, offset))
            except Exception:
                log.exception("journal on_append callback failed")

    def _write_segments(self, batch, after_write=None) -> None:
        """One pwrite per segment, one fdatasync per file touched (runs on the sync thread).

        `after_write` runs between the writes and the fdatasync: bytes handed on from there are
        already in our file, so a peer can never hold journal that we lost, and shipping still
        overlaps the slow part, the sync.
        """
        touched = []
        for seg in batch:
            fd = self._fds[seg.seq]
            end = seg.offset + len(seg.data)
            if self.fsync and end > self._allocated.get(seg.seq, 0) and not self._no_fill:
                self._fill(seg.seq, fd, end)  # the filler fell behind: zeros now
            _pwrite_all(fd, seg.data, seg.offset)
            if fd not in touched:
                touched.append(fd)
        if after_write is not None:
            after_write()
        if self.fsync:
            for fd in touched:
                os.fdatasync(fd)
                self.fsync_count += 1
            last = batch[-1] if batch else None
            if last is not None and not self._filling:
                ahead = self._allocated.get(last.seq, 0) - (last.offset + len(last.data))
                if ahead < PREALLOCATE // 2:
                    self._filling = True
                    self._filler.submit(self._fill_ahead, last.seq)

    def _fill(self, seq: int, fd: int, end: int) -> None:
        """Zeros written from what is allocated in file `seq` to PREALLOCATE past `end`.
        Writes of data only go below the allocated end, so the zeros never cover data."""
        with self._alloc_lock:
            have = self._allocated.get(seq, 0)
            if end <= have or seq not in self._fds:
                return
            target = max(end, min(end + PREALLOCATE, self.max_file_bytes))
            try:
                _pwrite_all(fd, bytes(target - have), have)
            except OSError as exc:
                # zeros are a speed-up only: with no room for them, data goes on as before
                # (and fails by itself if the disk is full)
                self._no_fill = True
                log.warning("journal: no room for zeros ahead (%s): writing without them", exc)
                return
            self._allocated[seq] = target

    def _fill_ahead(self, seq: int) -> None:
        """On the filler thread: the next chunk of zeros, synced, before the writer needs it
        (its fdatasyncs then find no new file size to write)."""
        try:
            with self._alloc_lock:
                fd = self._fds.get(seq)
                done = seq in self._finished
                if fd is None or done or self._failed is not None or self._no_fill:
                    return
                have = self._allocated.get(seq, 0)
                more = min(PREALLOCATE, self.max_file_bytes - have)
                if more <= 0:
                    return
                _pwrite_all(fd, bytes(more), have)
                os.fdatasync(fd)
                self._allocated[seq] = have + more
        except OSError as exc:  # a full disk: the writer will meet it and freeze
            self._no_fill = True
            log.warning("journal: no room for zeros ahead (%s): writing without them", exc)
        finally:
            self._filling = False

    def _cut_to_end(self, seq: int, end: int) -> None:
        """A file the writer is done with holds exactly its records: the zeros go."""
        with self._alloc_lock:
            fd = self._fds.get(seq)
            if fd is not None and self._allocated.get(seq, 0) > end:
                os.ftruncate(fd, end)
            self._allocated[seq] = end
            self._finished.add(seq)  # no more zeros for it

    def _close_finished_files(self) -> None:
        waiting = {seg.seq for seg in self._pending}
        with self._alloc_lock:
            for seq in [s for s in self._fds if s < self._seq and s not in waiting]:
                os.close(self._fds.pop(seq))
                self._allocated.pop(seq, None)

    def commit_sync(self, entries) -> list[Record]:
        """Blocking commit for code without an event loop (not to be mixed with commit())."""
        with self._sync_lock:
            records = self._append(entries)
            batch, self._pending = self._pending, []

            def ship():
                if trace.ENABLED:
                    trace.mark("p.written")
                for seg in batch:
                    self._notify(bytes(seg.data), seg.seq, seg.offset)

            try:
                self._write_segments(batch, after_write=ship)
            except Exception as exc:
                # as in _flush_loop: positions are handed out, so no later commit may follow
                self._failed = exc
                raise
            self._close_finished_files()
            self._durable = self._end
            return records

    # -- receiver (backup / async) ------

    async def receive(self, file_seq: int, offset: int, data, durable: bool = False):
        """Write primary journal bytes at (file_seq, offset) in our copy; return their records.

        The bytes are validated first (CorruptRecord: nothing written).  Bytes we already
        have are skipped; bytes that would leave a hole raise JournalGap.
        """
        data = bytes(data)
        start = FILE_HEADER_SIZE if offset == 0 else offset
        if offset == 0:
            seq, date = decode_file_header(data)
            if seq != file_seq:
                raise CorruptRecord(f"file header is for file {seq}, not {file_seq}", 0)
        elif offset < FILE_HEADER_SIZE:
            raise CorruptRecord(f"offset {offset} is inside the file header", 0)
        body = memoryview(data)[start - offset :]
        records = decode_records(body, expect=(file_seq, start))
        if self._recv_lock is None:
            self._recv_lock = asyncio.Lock()
        async with self._recv_lock:
            records = self._place(file_seq, offset, data, records)
            if durable:
                await self.sync()
        return records

    def _place(self, file_seq, offset, data, records):
        if self._seq is None or file_seq > self._seq:
            if offset != 0:
                raise JournalGap(
                    f"data for new file {file_seq} starts at offset {offset}, not at its header"
                )
            if self._seq is not None and file_seq != self._seq + 1:
                raise JournalGap(f"file {file_seq} received but file {self._seq + 1} is missing")
            if self._seq is not None:
                old = self._fds.pop(self._seq)
                if self.fsync:
                    os.fdatasync(old)
                    self.fsync_count += 1
                os.close(old)
            self._create_file(file_seq, decode_file_header(data)[1])
            self._seq, self._end, self._durable = file_seq, 0, 0
        elif file_seq < self._seq:
            return []  # an older file we already finished
        end = offset + len(data)
        if offset > self._end:
            raise JournalGap(f"data at {file_seq}:{offset} but our copy ends at {self._end}")
        if end <= self._end:
            return []
        if offset < self._end:
            if self._end not in {r.position.offset for r in records}:
                raise JournalGap("overlapping data does not align with a record boundary")
            records = [r for r in records if r.position.offset >= self._end]
            data, offset = data[self._end - offset :], self._end
        _pwrite_all(self._fds[file_seq], data, offset)
        self._end = end
        return records

    async def sync(self) -> None:
        """fdatasync the current file (received data becomes durable)."""
        if self._seq is None or self._durable == self._end:
            return
        target = self._end
        await asyncio.get_running_loop().run_in_executor(self._executor, self._sync_current)
        self._durable = max(self._durable, target)

    def _sync_current(self) -> None:
        if self.fsync:
            os.fdatasync(self._fds[self._seq])
            self.fsync_count += 1

    def close(self) -> None:
        """Write anything still queued, sync, close files."""
        if self._pending and self._failed is None:
            batch, self._pending = self._pending, []
            self._write_segments(batch)
        elif self._seq is not None and self._durable < self._end and self._failed is None:
            self._sync_current()
        self._executor.shutdown(wait=True)
        self._filler.shutdown(wait=True)
        if self._seq is not None and self._failed is None:
            self._cut_to_end(self._seq, self._end)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
