"""Database download from another member (SPEC §6.7.2), over the members' superserver ports.

The member that needs a copy asks sources in the order backup -> primary -> asyncs (skipping
itself and read-write reporting asyncs, whose FailoverDB flag is cleared), moving to the next
one when a source is unreachable, refuses, or goes away mid-download (the partial copy is
thrown away).  A source answers `export_begin` with its database's applied journal position
P, then pages of rows (`export_page`).  The pages are read while the source goes on applying
journal, so the copy is a mix of states between P and the last page; since journal records
are SET/KILL (the last record touching a node decides its value), replaying this member's
own journal from P over it gives exactly the state at the journal's end.  So after the copy
the database is caught up from P automatically (Downloading -> Catchup Running ->
Dejournaling).  With no source able to supply it, the database is left Needs Download;
`download_database` retries.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import TYPE_CHECKING

from engine.client import AsyncClient, EngineError
from engine.databases import DbEntry, Refused, check_name, db_status
from engine.journal_codec import make_position
from engine.store import Store

if TYPE_CHECKING:
    from engine.instance import Instance

log = logging.getLogger("engine.download")
PAGE_ROWS = 5000


# -- source side ------------------------------------------------------------------------


def _source_store(inst: Instance, op: str, name):
    name = check_name(op, name)
    entry = inst.catalog.get(name)
    if entry is None:
        raise Refused(op, name, f"not a mirrored database on member {inst.member.name}")
    status = db_status(inst, entry)
    if status not in ("Normal", "Dejournaling") or not entry.failover_db:
        raise Refused(op, name, f"not a valid download source here (status {status})")
    return entry, inst.stores[name]


def export_begin(inst: Instance, arg):
    entry, store = _source_store(inst, "export_begin", arg)
    applied = store.applied_position
    return {
        "database": entry.name,
        "incarnation": entry.incarnation,
        "applied": None if applied is None else [applied.file_seq, applied.offset],
        "globals": store.globals(),
    }


def export_page(inst: Instance, arg):
    if not isinstance(arg, dict):
        raise Refused("export_page", None, "expects {name, global, after, limit}")
    _, store = _source_store(inst, "export_page", arg.get("name"))
    gname, after = arg.get("global"), arg.get("after")
    limit = min(int(arg.get("limit") or PAGE_ROWS), PAGE_ROWS)
    start = None if after is None else tuple(after)
    rows = store.query(gname, start=start, limit=limit + 1)
    out = [[list(s), v] for s, v in rows]
    if start is not None and out and tuple(out[0][0]) == start:
        out = out[1:]  # the row the previous page ended with
    return out[:limit]


# -- destination side ---------------------------------------------------------------------


def _sources(inst: Instance) -> list:
    cfg, me = inst.cfg, inst.member.name
    primary = cfg.first_primary
    backups = [m for m in cfg.failover_members if m.name not in (primary.name, me)]
    asyncs = [m for m in cfg.members if not m.is_failover and m.type != "rw_reporting"]
    return [m for m in [*backups, primary, *asyncs] if m.name != me]


def download_database(inst: Instance, arg):
    """Start downloading a database the primary has (retry-safe)."""
    name = check_name("download_database", arg.get("name") if isinstance(arg, dict) else arg)
    if inst.role == "primary":
        raise Refused("download_database", name, "not available on the primary")
    entry = inst.catalog.get(name)
    if entry is not None and name in inst.downloading:
        return {"database": name, "status": "Downloading", "already": True}
    if entry is not None and not entry.needs_download:
        return {"database": name, "status": db_status(inst, entry), "already": True}
    known = (inst.primary_db_info or {}).get(name)
    if known is None:
        raise Refused(
            "download_database", name, "the primary has no mirrored database of that name"
        )
    if entry is None and inst.db_path(name).exists():
        raise Refused(
            "download_database", name, "a local database of that name exists; remove it first"
        )
    if entry is None:
        entry = DbEntry(name, known["incarnation"], since=known["since"], mounted=True)
        entry.caught_up = entry.activated = False
        entry.created = known["created"]
        entry.failover_db = inst.member.type != "rw_reporting"
        inst.catalog.entries[name] = entry
    entry.needs_download = True
    inst.catalog.save()
    inst.downloading.add(name)
    inst.db_errors.pop(name, None)
    asyncio.get_running_loop().create_task(_download(inst, entry))
    return {"database": name, "status": "Downloading", "already": False}


def _write_rows(store: Store, gname: str, rows: list) -> None:
    with store.transaction():
        for subs, value in rows:
            store.set(gname, tuple(subs), value)


async def _copy_from(inst: Instance, entry: DbEntry, source) -> Store | None:
    path = inst.db_path(entry.name)
    async with AsyncClient(
        [str(source.superserver)], follow_primary=False, timeout=10, retries=0
    ) as c:
        info = await c.admin("export_begin", entry.name)
        if info["incarnation"] != entry.incarnation:
            log.warning("%s on %s is another incarnation; skipped", entry.name, source.name)
            return None
        shutil.rmtree(path, ignore_errors=True)
        store = Store.open(str(path))
        try:
            for gname in info["globals"]:
                after = None
                while True:
                    page = {"name": entry.name, "global": gname, "after": after}
                    rows = await c.admin("export_page", {**page, "limit": PAGE_ROWS})
                    if rows:
                        await asyncio.to_thread(_write_rows, store, gname, rows)
                        after = rows[-1][0]
                    if len(rows) < PAGE_ROWS:
                        break
            if info["applied"] is not None:
                store.apply([], upto=make_position(*info["applied"]))
        except BaseException:
            store.close()
            shutil.rmtree(path, ignore_errors=True)
            raise
    return store


def info_pos(store: Store) -> list | None:
    p = store.applied_position
    return None if p is None else [p.file_seq, p.offset]


async def _download(inst: Instance, entry: DbEntry) -> None:
    from engine.instance_dbops import _catch_up_one, _journal_covers

    name = entry.name
    store = None
    errors = []
    try:
        for source in _sources(inst):
            try:
                store = await _copy_from(inst, entry, source)
            except (EngineError, OSError, TimeoutError) as exc:
                errors.append(f"{source.name}: {exc or type(exc).__name__}")
                log.warning("download of %s from %s failed: %s", name, source.name, exc)
                continue
            if store is not None:
                log.info("downloaded %s from %s; catching up", name, source.name)
                break
    finally:
        inst.downloading.discard(name)
    if inst.catalog.get(name) is not entry:  # removed meanwhile
        if store is not None:
            store.close()
        return
    if store is None:
        inst.db_errors[name] = "no source could supply it: " + "; ".join(errors)
        inst.catalog.save()
        return
    try:
        _journal_covers(inst, "download_database", name, info_pos(store))
    except Refused as exc:
        store.close()
        inst.db_errors[name] = exc.message
        return
    entry.needs_download = False
    entry.activated = True
    inst.stores[name] = store
    inst.catching_up[name] = 0
    inst.catalog.save()
    await _catch_up_one(inst, entry)


ACTIONS = {
    "export_begin": export_begin,
    "export_page": export_page,
    "download_database": download_database,
}
