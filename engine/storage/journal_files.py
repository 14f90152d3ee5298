"""Mirror journal files on disk: names, the mirror journal log, reading, replay and purge.

`MIRROR-<MIRROR>-YYYYMMDD.NNN` (NNN = the file sequence number, which keeps counting across
days) plus the mirror journal log `mirrorjrn-<MIRROR>.log` listing them in order, one name per
line.  The writer/receiver is engine/storage/journal.py, which re-exports everything here.
"""

from __future__ import annotations

import hashlib
import os
import re

from engine.storage.journal_codec import (
    FILE_HEADER_SIZE,
    JournalPosition,
    decode_prefix,
    make_position,
    record_boundary,
    scan_good_prefix,
)

_MIRROR_RE = re.compile(r"[A-Za-z0-9_]{1,32}\Z")


class JournalError(Exception):
    pass


class JournalGap(JournalError):
    """Received data does not continue the local copy (missing bytes or files)."""


def validate_mirror_name(mirror: str) -> str:
    if not isinstance(mirror, str) or not _MIRROR_RE.match(mirror):
        raise ValueError(f"mirror name {mirror!r} must be 1-32 letters, digits or _")
    return mirror


def date_int(date) -> int:
    if isinstance(date, int):
        return date
    if isinstance(date, str):
        return int(date)
    return date.year * 10000 + date.month * 100 + date.day


def file_name(mirror: str, date, seq: int) -> str:
    """`MIRROR-<MIRROR>-YYYYMMDD.NNN` (date: datetime.date, int or 'YYYYMMDD')."""
    return f"MIRROR-{mirror}-{date_int(date):08d}.{seq:03d}"


def log_name(mirror: str) -> str:
    return f"mirrorjrn-{mirror}.log"


def name_re(mirror: str):
    return re.compile(rf"MIRROR-{re.escape(mirror)}-(\d{{8}})\.(\d{{3,}})\Z")


def list_files(directory, mirror: str) -> list[tuple[int, str]]:
    """(seq, name) of the mirror's journal files, from the log and the directory, in order."""
    pat = name_re(mirror)
    names = set()
    try:
        with open(os.path.join(directory, log_name(mirror))) as f:
            names.update(line.strip() for line in f if line.strip())
    except FileNotFoundError:
        pass
    names.update(os.listdir(directory))
    found = {}
    for n in names:
        m = pat.match(n)
        if m and os.path.exists(os.path.join(directory, n)):
            found[int(m.group(2))] = n
    return sorted(found.items())


def _fsync_dir(directory) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_log(directory, mirror: str, names: list[str]) -> None:
    """Rewrite the mirror journal log atomically."""
    path = os.path.join(directory, log_name(mirror))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(n + "\n" for n in names))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)


class JournalReader:
    """Reads a member's journal files (catch-up shipping, replay, dejournal catch-up)."""

    def __init__(self, directory, mirror: str):
        self.dir = str(directory)
        self.mirror = validate_mirror_name(mirror)

    def files(self) -> list[tuple[int, str]]:
        return list_files(self.dir, self.mirror)

    def start_position(self) -> JournalPosition | None:
        files = self.files()
        return make_position(files[0][0], 0) if files else None

    def read_from(self, position, max_bytes: int = 1 << 20) -> tuple[bytes, JournalPosition]:
        """Whole valid records (plus the file header when offset is 0) from one file.

        Returns (b"", next file start) at the end of a finished file, (b"", position) when
        nothing more is there yet.  Raises JournalGap if that file was purged.
        """
        seq, offset = position
        files = dict(self.files())
        if seq not in files:
            if not any(s > seq for s in files):
                return b"", position  # not written yet
            raise JournalGap(f"journal file {seq} is not available (purged?)")
        with open(os.path.join(self.dir, files[seq]), "rb") as f:
            f.seek(offset)
            chunk = f.read(max_bytes)
            head = b""
            if offset == 0:
                head, chunk = chunk[:FILE_HEADER_SIZE], chunk[FILE_HEADER_SIZE:]
                if len(head) < FILE_HEADER_SIZE:
                    return b"", position
            n = record_boundary(chunk, max_bytes - len(head))
            if n == 0 and len(chunk) >= 8:  # one record bigger than max_bytes
                need = int.from_bytes(chunk[4:8], "little")
                chunk += f.read(max(0, need - len(chunk)))
                n = record_boundary(chunk, need)
        n = scan_good_prefix(memoryview(chunk)[:n])
        if n == 0 and not head:
            nxt = [s for s in files if s > seq]
            if nxt and not chunk:
                return b"", make_position(nxt[0], 0)
            return b"", position
        start = offset + len(head)
        return head + chunk[:n], make_position(seq, start + n)

    def batches_from(self, position=None, database: str | None = None, chunk: int = 4 << 20):
        """Yield lists of records from position (None: the first file) to the end of the
        journal, reading about `chunk` bytes at a time; stops at a torn or corrupt tail."""
        for seq, name in self.files():
            if position is not None and seq < position[0]:
                continue
            off = FILE_HEADER_SIZE
            if position is not None and seq == position[0]:
                off = max(off, position[1])
            with open(os.path.join(self.dir, name), "rb") as f:
                want = chunk
                while True:
                    f.seek(off)
                    data = f.read(want)
                    recs, used, err = decode_prefix(data)
                    if database is not None:
                        recs = [r for r in recs if r[3] == database]
                    if recs:
                        yield recs
                    off += used
                    if len(data) < want or (err is not None and not err.truncated):
                        break  # end of file, or a corrupt / torn tail
                    # cut at the chunk end: read on (a whole record bigger than chunk if need be)
                    want = max(chunk, int.from_bytes(data[used + 4 : used + 8] or b"", "little"))

    def records_from(self, position=None, database: str | None = None):
        """Iterate records from position (None: the first file) to the end of the journal."""
        for batch in self.batches_from(position, database):
            yield from batch


def replay_into(store, journal_dir, database: str, mirror: str | None = None) -> int:
    """Apply the journal's records for `database` after store.applied_position; return count."""
    if mirror is None:
        mirrors = {
            m.group(1)
            for n in os.listdir(journal_dir)
            if (m := re.match(r"MIRROR-([A-Za-z0-9_]+)-\d{8}\.\d{3,}\Z", n))
        }
        if not mirrors:
            return 0
        if len(mirrors) > 1:
            raise JournalError(f"{journal_dir} holds journals of {sorted(mirrors)}; pass mirror=")
        mirror = mirrors.pop()
    reader = JournalReader(journal_dir, mirror)
    return sum(store.apply(b) for b in reader.batches_from(store.applied_position, database))


def purge(directory, mirror: str, keep_from_seq: int) -> list[str]:
    """Delete journal files with seq < keep_from_seq (no member needs them); update the log.

    Stores must be synced (Store.sync) past those files first, or a replay would need them.
    The newest file is never removed: it is the one being written.
    """
    files = list_files(directory, mirror)
    if files:
        keep_from_seq = min(keep_from_seq, files[-1][0])
    removed = [n for s, n in files if s < keep_from_seq]
    write_log(directory, mirror, [n for s, n in files if s >= keep_from_seq])
    for n in removed:
        os.remove(os.path.join(directory, n))
    if removed:
        _fsync_dir(directory)
    return removed


# how much journal before a position two members compare when one rejoins the other
TAIL_WINDOW = 64 * 1024


def tail_digest(directory, mirror: str, position, window: int = TAIL_WINDOW) -> str | None:
    """SHA-256 (hex) of the journal records just before `position` in its file (at most
    `window` bytes; the file header, written by each member for itself, is left out).  None
    when this member lacks the file or the bytes: nothing to compare."""
    if position is None:
        return None
    files = dict(list_files(directory, mirror))
    name = files.get(position.file_seq)
    if name is None:
        return None
    start = max(FILE_HEADER_SIZE, position.offset - window)
    length = max(0, position.offset - start)
    try:
        with open(os.path.join(directory, name), "rb") as f:
            f.seek(start)
            data = f.read(length)
    except OSError:
        return None
    if len(data) != length:
        return None
    return hashlib.sha256(data).hexdigest()
