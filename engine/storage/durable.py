"""Making a copy of a database durable before it counts as a copy (fsync, counted).

A store's own commits are not fsync'ed (engine/storage/store.py, "Durability"): the journal
is the durability point, and a replay from the store's applied position brings it back.  A copy
that arrives whole from elsewhere — downloaded from another member, adopted by the primary,
restored by an operator and added — has no journal behind it: if an operating-system crash
lost some of its pages, nothing could bring them back.  So such a copy is fsync'ed, its files
and the directories that name them, before the member records it in its catalog; the catalog
entry (needs_download cleared, or the entry itself for an added copy) is the marker that the
durable step was done, written after it and renamed into place with its own directory fsync'ed
(engine/storage/databases.py).  A start after a crash that came first finds the download still
Needs Download and makes it again.

`fsync_count` counts every fsync done here (tests check it; the member logs the count per copy).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

LOCK_FILE = "lock.mdb"  # LMDB's reader table: rebuilt by every process that opens the store

fsync_count = 0
_count_lock = threading.Lock()


def _count() -> None:
    global fsync_count
    with _count_lock:
        fsync_count += 1


def fsync_file(path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _count()
    return 1


def fsync_dir(path) -> int:
    """fsync a directory: the names created, renamed or removed in it become durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _count()
    return 1


def sync_copy(directory, parents: int = 2) -> int:
    """fsync every file of a database directory (lock.mdb aside), the directory, and the
    `parents` directories above it (a copy made in a new directory is named there); return
    the number of fsyncs."""
    directory = Path(directory)
    n = 0
    for f in sorted(directory.iterdir()):
        if f.name != LOCK_FILE and f.is_file():
            n += fsync_file(f)
    n += fsync_dir(directory)
    up = directory
    for _ in range(parents):
        up = up.parent
        n += fsync_dir(up)
    return n


def sync_store(store, parents: int = 2) -> int:
    """A store's committed data to disk (LMDB's own sync), then sync_copy of its directory;
    return the number of fsyncs (LMDB's counted as one)."""
    store.sync()
    _count()
    return 1 + sync_copy(store.path, parents)
