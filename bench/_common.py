"""What the bench scripts share: free ports (engine/cluster/ports.py, the tests' own: below the
kernel's range for outgoing ports), percentiles, a throwaway mirror of real members (started,
waited for, stopped and removed, also on SIGTERM), waiting for a member to receive the
primary's journal, stopping a child process, logging to stderr.

Not a benchmark (the Makefile's bench loop runs only bench/[!_]*.py).  A script run as
`python bench/NAME.py` has bench/ first on sys.path, so it imports this as `_common`;
importing it puts the repository root on sys.path too, for `engine`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.cluster.launcher import start_member, stop_pids, wait_ready  # noqa: E402
from engine.cluster.ports import free_ports  # noqa: E402 (the scripts import it from here too)
from engine.member.config import MirrorConfig, load_config  # noqa: E402
from engine.wire.admin_token import TOKEN_ENV  # noqa: E402

# the members a bench starts and the clients it opens share one admin token
os.environ.setdefault(TOKEN_ENV, os.urandom(16).hex())

if TYPE_CHECKING:
    from engine.client.app import Client


def stderr_log(bench: str) -> Callable[[str], None]:
    """A log(msg) that writes `[bench] msg` to stderr (stdout is for the results)."""

    def log(msg: str) -> None:
        print(f"[{bench}] {msg}", file=sys.stderr, flush=True)

    return log


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank over the sorted values; 0.0 if none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


# -- a throwaway mirror ---------------------------------------------------------------


def write_mirror_config(directory: Path, members: dict[str, str]) -> Path:
    """Mirror BENCH (database USER, data under directory) with members {name: type} on free
    loopback ports; failover members get a private address as well.  Returns the file."""
    ports = iter(free_ports(len(members) + list(members.values()).count("failover")))
    text = f'[mirror]\nname = "BENCH"\ndatabases = ["USER"]\ndata_root = "{directory}"\n'
    for name, member_type in members.items():
        text += f'\n[[members]]\nname = "{name}"\ntype = "{member_type}"\n'
        text += f'superserver = "127.0.0.1:{next(ports)}"\n'
        if member_type == "failover":
            text += f'private = "127.0.0.1:{next(ports)}"\n'
    path = directory / "bench.toml"
    path.write_text(text)
    return path


# The mirrors up now, each (its processes by member, its directory): what a SIGTERM must clean
# up, since the members run in their own sessions and nothing else stops them.
_RUNNING: list[tuple[dict[str, subprocess.Popen], Path]] = []


def _remove(procs: dict[str, subprocess.Popen], directory: Path) -> None:
    stop_pids([{"pid": p.pid, "member": n} for n, p in procs.items()])
    shutil.rmtree(directory, ignore_errors=True)


def _on_sigterm(*_) -> None:
    # clean up here rather than raise into whatever the bench is doing
    while _RUNNING:
        _remove(*_RUNNING.pop())
    os._exit(143)


def cleanup_on_sigterm() -> None:
    """On SIGTERM, stop the members of every mirror() up and remove their directories, then
    exit with 143."""
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def mirror(prefix: str, members: dict[str, str]) -> Iterator[tuple[MirrorConfig, Path]]:
    """Mirror BENCH of members {name: type} (write_mirror_config) in a fresh temporary
    directory, every member started and ready; yields (config, directory).  On exit the
    members are stopped and the directory removed."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    procs: dict[str, subprocess.Popen] = {}  # filled as members start, for a SIGTERM meanwhile
    entry = (procs, directory)
    _RUNNING.append(entry)
    try:
        cfg = load_config(write_mirror_config(directory, members))
        for m in cfg.members:
            procs[m.name] = start_member(cfg, m.name)
        wait_ready(cfg, procs)
        yield cfg, directory
    finally:
        _RUNNING[:] = [e for e in _RUNNING if e is not entry]
        _remove(procs, directory)


def wait_journal_received(primary: Client, member: Client, name: str, timeout: float) -> None:
    """Wait until member (named name in the error) holds all of the primary's journal."""
    end = primary.status()["journal_end"]
    deadline = time.monotonic() + timeout
    while member.status()["journal_end"] != end:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not receive the primary's journal in time")
        time.sleep(0.05)


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within timeout; waits for it."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
