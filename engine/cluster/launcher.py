"""Local cluster launcher: every member of one or more mirror files as its own process.

    python -m engine cluster up -f examples/cluster.toml
    python -m engine cluster down -f examples/cluster.toml

Each member runs `python -m engine instance --config FILE --member NAME` in its own
session (so a stray Ctrl-C in the launcher's terminal does not reach it), logging to
<data_dir>/instance.log.  `up` waits until every member answers on its superserver
port, prints the addresses and writes a state file (<data_root>/cluster-state.json,
next to the members' data directories) that `down` uses to stop exactly those
processes.

`cluster build -f PLAN` (engine/cluster/build.py) starts agents and non-member instances
instead and builds the mirror through the agents; `down` stops those too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.member.config import MirrorConfig, load_config

READY_TIMEOUT = 30.0


def state_path(cfg: MirrorConfig) -> Path:
    root = Path(cfg.members[0].data_dir).parent
    return root / "cluster-state.json"


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def spawn(args: list[str], log_path: Path, python: str = sys.executable) -> subprocess.Popen:
    """`python -m engine ARGS` in a session of its own, logging to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [python, "-m", "engine", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )


def start_member(cfg: MirrorConfig, name: str, python: str = sys.executable) -> subprocess.Popen:
    member = cfg.member(name)
    args = ["instance", "--config", str(cfg.source), "--member", member.name]
    return spawn(args, Path(member.data_dir) / "instance.log", python)


def wait_ready(
    cfg: MirrorConfig, procs: dict[str, subprocess.Popen], timeout: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(procs)
    while waiting:
        for name, proc in list(waiting.items()):
            m = cfg.member(name)
            if proc.poll() is not None:
                raise RuntimeError(
                    f"member {name} exited with code {proc.returncode}; "
                    f"see {Path(m.data_dir) / 'instance.log'}"
                )
            if port_open(m.superserver.host, m.superserver.port):
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"members not ready after {timeout}s: {', '.join(waiting)}")
        if waiting:
            time.sleep(0.05)


def _is_our_process(pid: int, token: str) -> bool:
    """pid runs `python -m engine ...` with `token` (a member name, a data directory, a
    configuration file) as one of its arguments: never a recycled pid."""
    cmdline = _cmdline(pid)
    return b"engine" in cmdline and token.encode() in cmdline


def _cmdline(pid: int, settle: float = 1.0) -> list[bytes]:
    """The arguments of a live process; [] when it is gone or a zombie. A process caught in
    execve shows an empty command line for a moment (Popen returns once the old image is
    dropped, before the kernel has set up the new one's arguments), so an empty one on a live
    process is read again."""
    deadline = time.monotonic() + settle
    while True:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return []
        if raw or state in (b"Z", b"X") or time.monotonic() > deadline:
            return raw.split(b"\0")
        time.sleep(0.005)


def is_running(entry: dict) -> bool:
    """entry: {"pid", "member"} or {"pid", "match"} (the argument that identifies it)."""
    return _is_our_process(entry["pid"], entry.get("match") or entry["member"])


def stop_pids(entries: list[dict], timeout: float = 10.0) -> None:
    live = [e for e in entries if is_running(e)]
    for e in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(e["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [e for e in live if is_running(e) and not _reaped(e["pid"])]
        if live:
            time.sleep(0.05)
    for e in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(e["pid"], signal.SIGKILL)


def _reaped(pid: int) -> bool:
    """True once the process is gone (also reaps it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def cluster_up(files: list[str]) -> int:
    configs = [load_config(f) for f in files]
    for cfg in configs:
        sp = state_path(cfg)
        if sp.exists():
            old = json.loads(sp.read_text())
            if any(is_running(e) for e in old["members"]):
                print(
                    f"mirror {cfg.name} is already up (state file {sp}); run 'cluster down' first",
                    file=sys.stderr,
                )
                return 1
        busy = [
            str(a)
            for m in cfg.members
            for a in (m.superserver, m.private)
            if a and port_open(a.host, a.port)
        ]
        if busy:
            print(
                f"mirror {cfg.name}: addresses already in use: {', '.join(busy)}", file=sys.stderr
            )
            return 1
    for cfg in configs:
        # the primary first, so the others connect at once
        order = [cfg.first_primary] + [m for m in cfg.members if m is not cfg.first_primary]
        procs = {m.name: start_member(cfg, m.name) for m in order}
        try:
            wait_ready(cfg, procs)
        except RuntimeError as exc:
            print(f"mirror {cfg.name}: {exc}", file=sys.stderr)
            stop_pids([{"pid": p.pid, "member": n} for n, p in procs.items()])
            return 1
        entries = [
            {
                "member": m.name,
                "type": m.type,
                "pid": procs[m.name].pid,
                "superserver": str(m.superserver),
                "private": str(m.private) if m.private else None,
                "data_dir": str(m.data_dir),
            }
            for m in order
        ]
        sp = state_path(cfg)
        sp.parent.mkdir(parents=True, exist_ok=True)
        sp.write_text(
            json.dumps(
                {"mirror": cfg.name, "config": str(cfg.source), "members": entries}, indent=2
            )
        )
        print(f"mirror {cfg.name} is up (state file {sp})")
        for e in entries:
            role = "primary" if e["member"] == cfg.first_primary.name else e["type"]
            private = f"  private {e['private']}" if e["private"] else ""
            print(
                f"  {e['member']:<12} {role:<13} superserver {e['superserver']}"
                f"{private}  pid {e['pid']}"
            )
    return 0


def cluster_down(files: list[str]) -> int:
    rc = 0
    for f in files:
        cfg = load_config(f)
        sp = state_path(cfg)
        if not sp.exists():
            print(f"mirror {cfg.name}: no state file {sp}; nothing to stop", file=sys.stderr)
            rc = 1
            continue
        entries = json.loads(sp.read_text())["members"]
        stop_pids(entries)
        sp.unlink()
        print(f"mirror {cfg.name} is down ({len(entries)} members stopped)")
    return rc
