"""What the agent knows about the instances on its host: up / down / hung, role, pid.

An instance is asked for INFO over its superserver (engine/wire/protocol.py), over TLS when
it speaks TLS (engine/wire/tls.py superserver_client_context, from its data directory).  A refused
connection means "down"; a connection or an answer that does not come within the probe
timeout means "hung" (a stopped or wedged process still has its listening socket, so the
kernel accepts the connection but nobody answers).

Force-down kills the instance's process with SIGKILL.  The process is found from
<data_dir>/instance.pid when the instance writes one, else as the `engine instance`
process holding files open under its data directory; either way /proc/<pid>/cmdline must
name an engine instance, so a recycled pid is never killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from engine.agent.config import InstanceEntry
from engine.member.files import PID_FILE
from engine.wire.protocol import FrameDecoder, FrameError, MsgType, encode_frame, unpack
from engine.wire.tls import TLSError, superserver_client_context

MAX_INFO_FRAME = 1 << 20


async def _ask_info(entry: InstanceEntry, timeout: float) -> dict:
    """INFO from the instance; raises ConnectionRefusedError, TimeoutError or OSError/ValueError."""
    host, port = entry.superserver.host, entry.superserver.port
    try:
        ssl = superserver_client_context(entry.data_dir)
    except TLSError as exc:  # a bad answer: the instance cannot be reached as it is
        raise ValueError(f"its superserver's TLS: {exc}") from None
    connecting = asyncio.open_connection(host, port, ssl=ssl)
    reader, writer = await asyncio.wait_for(connecting, timeout)
    try:
        writer.write(encode_frame(MsgType.INFO, 1, []))
        decoder = FrameDecoder(MAX_INFO_FRAME)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                raise ConnectionResetError("the instance closed the connection without answering")
            frames = decoder.feed(data)
            for frame in frames:
                if getattr(frame, "req_id", None) != 1 or not hasattr(frame, "body"):
                    raise ValueError(f"unexpected reply: {frame!r}")
                body = unpack(frame.body)
                if frame.type != MsgType.OK or not isinstance(body, dict):
                    raise ValueError(f"INFO refused: {body!r}")
                return body
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 0.5)


async def probe(entry: InstanceEntry, timeout: float) -> dict:
    """The instance's state as the agent reports it (GET /v1/instances)."""
    out = {
        "name": entry.name,
        "superserver": str(entry.superserver),
        "mirror": entry.mirror,
        "state": "down",
        "role": None,
        "type": None,
        "member": None,
        "primary": None,
        "detail": "",
        "pid": await asyncio.to_thread(find_pid, entry),
    }
    try:
        info = await _ask_info(entry, timeout)
    except ConnectionRefusedError:
        out["detail"] = f"connection to {entry.superserver} refused"
    except TimeoutError:
        out["state"] = "hung"
        out["detail"] = f"no answer from {entry.superserver} within {timeout:g} s"
    except (OSError, ValueError, FrameError) as exc:
        # it accepted the connection but did not speak the protocol properly
        out["state"] = "hung"
        out["detail"] = f"bad answer from {entry.superserver}: {exc}"
    else:
        out.update(
            state="up",
            role=info.get("role"),
            type=info.get("type"),
            member=info.get("member"),
            primary=info.get("primary"),
            mirror=info.get("mirror") or entry.mirror,
            detail="answering",
        )
    return out


# -- processes ----------------------------------------------------------------------


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _is_engine_instance(pid: int) -> bool:
    args = _cmdline(pid)
    return b"engine" in args and b"instance" in args  # python -m engine instance ...


def process_gone(pid: int) -> bool:
    """True once the process no longer runs (a zombie waiting for its parent counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _pid_from_file(data_dir: Path) -> int | None:
    try:
        text = (data_dir / PID_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _pid_holding(data_dir: Path) -> int | None:
    """The engine instance process with a file open under data_dir (its journal, its stores)."""
    root = os.path.realpath(data_dir) + os.sep
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid() or not _is_engine_instance(pid):
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(root):
                return pid
    return None


def find_pid(entry: InstanceEntry) -> int | None:
    """The pid of the running instance, or None when no such process runs."""
    pid = _pid_from_file(entry.data_dir)
    if pid is not None and _is_engine_instance(pid) and not process_gone(pid):
        return pid
    pid = _pid_holding(entry.data_dir)
    return pid if pid is not None and not process_gone(pid) else None


async def force_down(entry: InstanceEntry, wait: float = 10.0) -> dict:
    """SIGKILL the instance and wait until its process is gone."""
    pid = await asyncio.to_thread(find_pid, entry)
    if pid is None:
        return {
            "name": entry.name,
            "forced": False,
            "pid": None,
            "state": "down",
            "detail": "no running instance process found",
        }
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while not process_gone(pid):
        if time.monotonic() > deadline:
            return {
                "name": entry.name,
                "forced": True,
                "pid": pid,
                "state": "unknown",
                "detail": f"SIGKILL sent but pid {pid} still runs after {wait:g} s",
            }
        await asyncio.sleep(0.02)
    return {
        "name": entry.name,
        "forced": True,
        "pid": pid,
        "state": "down",
        "detail": f"pid {pid} killed (SIGKILL)",
    }
