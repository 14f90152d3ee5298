"""Journal files served by the agent to peers that catch up (guide §3.1.3).

The list of a mirror's journal files, and a file's bytes from an offset (routes and parameters
in engine/agent_api.yaml).

The mirror in the path picks the journal: an instance configured through the agent keeps
its first membership in its data directory and each further one (a reporting async in up to
ten mirrors, guide §3.1.2) in mirrors/<MIRROR>/ under it (engine/member/join.py membership_dir),
each with its own journal/ directory (see journal_dir).

A file is served only if its name is one the journal layer lists for that mirror in that
journal directory (engine.storage.journal_files.list_files), so no request can reach any other
path.  Without `records`, the bytes are the file's raw bytes from `offset`
(a byte-identical copy is the concatenation of the pieces); with `records=1` only whole,
checksum-valid records are returned (JournalReader.read_from) and the header
X-Journal-Next-Offset says where the next request starts.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from aiohttp import web

from engine.agent.config import AgentConfig, InstanceEntry
from engine.agent.errors import CONFIG, api_error
from engine.member.mirror_file import MIRROR_FILE, MIRRORS_DIR
from engine.storage.journal_files import JournalGap, JournalReader, list_files, validate_mirror_name

DEFAULT_LENGTH = 1 << 20
MAX_LENGTH = 16 << 20


def journal_dir(entry: InstanceEntry, mirror: str) -> Path:
    """The directory holding the instance's journal of `mirror`: that of the membership
    whose mirror.json names the mirror (the data directory or mirrors/<MIRROR>/ under it);
    else, for an instance configured from a file or a membership that ended (leaving keeps
    the journal), whichever of the two holds files of that mirror, the data directory first.
    `mirror` is a checked name (letters, digits, _), so the path stays under data_dir."""
    homes = (Path(entry.data_dir), Path(entry.data_dir) / MIRRORS_DIR / mirror)
    for home in homes:
        if _membership_in(home) == mirror:
            return home / "journal"
    for home in homes:
        if _files(home / "journal", mirror):
            return home / "journal"
    return homes[0] / "journal"


def _membership_in(home: Path) -> str | None:
    """The mirror of the membership kept in `home`, or None (no or unreadable mirror.json)."""
    try:
        name = json.loads((home / MIRROR_FILE).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name.upper() if isinstance(name, str) else None


def _files(directory: Path, mirror: str) -> list[tuple[int, str]]:
    try:
        return list_files(directory, mirror)
    except OSError:
        return []


def _holds(entry: InstanceEntry, mirror: str) -> bool:
    if entry.mirror is not None and entry.mirror != mirror:
        return False
    return bool(_files(journal_dir(entry, mirror), mirror))


def _mirror(request: web.Request) -> str:
    mirror = request.match_info["mirror"]
    try:
        return validate_mirror_name(mirror).upper()
    except ValueError as exc:
        raise api_error(400, "bad_request", str(exc)) from None


def _instance_for(cfg: AgentConfig, request: web.Request, mirror: str) -> InstanceEntry:
    wanted = request.query.get("instance")
    if wanted is not None:
        entry = cfg.instance(wanted)
        if entry is None:
            raise api_error(404, "not_found", f"no instance named {wanted!r} on this host")
        if not _holds(entry, mirror):
            raise api_error(
                404, "not_found", f"instance {entry.name} holds no journal of mirror {mirror}"
            )
        return entry
    holders = [e for e in cfg.instances if _holds(e, mirror)]
    if not holders:
        raise api_error(404, "not_found", f"no instance on this host holds journal of {mirror}")
    if len(holders) > 1:
        names = ", ".join(e.name for e in holders)
        raise api_error(
            400,
            "ambiguous_instance",
            f"several instances on this host hold journal of mirror {mirror} ({names}); "
            "choose one with ?instance=NAME",
        )
    return holders[0]


def _int_param(request: web.Request, key: str, default: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise api_error(400, "bad_request", f"{key} must be a non-negative integer, got {raw!r}")
    value = int(raw)
    if value > high:
        raise api_error(400, "bad_request", f"{key} must be at most {high}, got {value}")
    return value


async def list_journal_files(request: web.Request) -> web.Response:
    cfg: AgentConfig = request.app[CONFIG]
    mirror = _mirror(request)
    entry = _instance_for(cfg, request, mirror)
    directory = journal_dir(entry, mirror)

    def listing() -> list[dict]:
        rows = []
        for seq, name in list_files(directory, mirror):
            try:
                size = os.path.getsize(directory / name)
            except OSError:
                continue  # purged between listing and stat
            rows.append({"seq": seq, "name": name, "size": size})
        return rows

    files = await asyncio.to_thread(listing)
    return web.json_response({"mirror": mirror, "instance": entry.name, "files": files})


def _read_raw(path: Path, offset: int, length: int) -> tuple[bytes, int]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset > size:
            return b"", size
        return os.pread(f.fileno(), min(length, size - offset), offset), size


async def read_journal_file(request: web.Request) -> web.Response:
    cfg: AgentConfig = request.app[CONFIG]
    mirror = _mirror(request)
    entry = _instance_for(cfg, request, mirror)
    name = request.match_info["name"]
    directory = journal_dir(entry, mirror)
    files = dict((n, seq) for seq, n in await asyncio.to_thread(list_files, directory, mirror))
    if name not in files:
        raise api_error(
            404, "not_found", f"no journal file {name!r} of mirror {mirror} on {entry.name}"
        )
    offset = _int_param(request, "offset", 0, 1 << 62)
    length = _int_param(request, "length", DEFAULT_LENGTH, MAX_LENGTH)
    records = request.query.get("records", "0")
    if records not in ("0", "1"):
        raise api_error(400, "bad_request", f"records must be 0 or 1, got {records!r}")
    try:
        data, size = await asyncio.to_thread(_read_raw, directory / name, offset, length)
    except FileNotFoundError:
        raise api_error(404, "not_found", f"journal file {name} was purged") from None
    if offset > size:
        raise api_error(
            416, "offset_out_of_range", f"offset {offset} is past the end of {name} ({size} bytes)"
        )
    next_offset = offset + len(data)
    if records == "1" and length:
        reader = JournalReader(directory, mirror)
        try:
            data, pos = await asyncio.to_thread(reader.read_from, (files[name], offset), length)
        except JournalGap as exc:
            raise api_error(404, "not_found", str(exc)) from None
        # read_from moves to the next file's start at the end of a finished file
        next_offset = pos[1] if pos[0] == files[name] else offset + len(data)
    return web.Response(
        body=data,
        content_type="application/octet-stream",
        headers={
            "X-Journal-File-Size": str(size),
            "X-Journal-Offset": str(offset),
            "X-Journal-Next-Offset": str(next_offset),
        },
    )
