"""Timestamps of the steps of a write, for bench/write_path.py (docs/performance.md "One
write's path").  Off unless ENGINE_TRACE_FILE names a file: then each process keeps
(step, CLOCK_MONOTONIC nanoseconds) in memory and writes them to "<file>.<pid>" as it exits.
CLOCK_MONOTONIC is one clock for every process of a host, so the steps of one write can be
lined up across the client, the primary and the backup.

Call sites test ENABLED first, so a member that is not traced pays one global read per step.
"""

from __future__ import annotations

import atexit
import os
import time

_PATH = os.environ.get("ENGINE_TRACE_FILE")
ENABLED = bool(_PATH)
_events: list[tuple[str, int]] = []


def mark(step: str) -> None:
    _events.append((step, time.monotonic_ns()))


def _dump() -> None:
    with open(f"{_PATH}.{os.getpid()}", "w") as f:
        f.writelines(f"{step} {ns}\n" for step, ns in _events)


if ENABLED:
    atexit.register(_dump)
