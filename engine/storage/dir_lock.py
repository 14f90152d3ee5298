"""One instance process per data directory, and a way for the host agent to know none runs.

An instance holds an exclusive lock (flock) on <data_dir>/instance.lock for as long as its
process lives, across the exec by which it restarts itself (create, join, change of type).
Two processes on one data directory would each write the journal; the second one is
refused at start-up.

The agent takes the same lock when it must be sure the instance is down (docs/takeover.md
"Asking the partner's agent"): while it holds the lock no instance can start there, so what
it writes meanwhile (engine/agent/partner.py: who took over, at which term) is read by the
next start.  A process that has started but not yet taken the lock has read nothing yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "instance.lock"
# An instance that starts while its agent checks the directory (a partner asking whether it is
# down: a moment's hold) waits for the check to end rather than failing to start.
START_GRACE_S = 3.0
# the lock's descriptor, passed on through os.execv when an instance restarts itself
FD_ENV = "ENGINE_INSTANCE_LOCK_FD"


class AlreadyRunning(RuntimeError):
    """Another process holds the data directory."""


def _open(data_dir: Path) -> int:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return os.open(Path(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _inherited(data_dir: Path) -> int | None:
    """The descriptor this process was given by its own exec, if it is this directory's."""
    text = os.environ.pop(FD_ENV, "")
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(Path(data_dir) / LOCK_FILE))
    except OSError:
        return None
    return fd if same else None


def hold(data_dir: Path, grace_s: float = START_GRACE_S) -> int:
    """Lock data_dir for this process's lifetime; AlreadyRunning if another process still has
    it after grace_s (an agent's check holds it for moments, an instance for its life)."""
    fd = _inherited(data_dir)
    if fd is not None:
        return fd
    fd = _open(data_dir)
    deadline = time.monotonic() + grace_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise AlreadyRunning(
                    f"another instance process runs on {data_dir} "
                    f"(its lock was still held after {grace_s:g} s)"
                ) from None
            time.sleep(0.02)


def keep_across_exec(fd: int) -> None:
    """Before os.execv: the new program image takes the lock over without letting go."""
    os.set_inheritable(fd, True)
    os.environ[FD_ENV] = str(fd)


@contextlib.contextmanager
def while_down(data_dir: Path) -> Iterator[bool]:
    """True inside the block when no instance process holds data_dir (and none can start
    until the block ends); False when one does."""
    try:
        fd = _open(data_dir)
    except OSError:
        yield False  # cannot tell: count it as running, which decides nothing
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing lets go of the lock
