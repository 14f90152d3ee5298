"""The steps the database operations share (engine/member/dbops.py, download.py, adopt.py,
dejournal_runner.py): the answer an operation gives, a control record journaled, a database
mounted, and catching a copy up from the member's own journal."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.storage.databases import DbEntry, Refused, attach, control_op, db_status
from engine.storage.durable import sync_store
from engine.storage.journal_codec import make_position, pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.dbops")


def db_result(membership: Membership, entry: DbEntry, already: bool = False, **extra) -> dict:
    if not already:
        log.info("database %s: %s", entry.name, db_status(membership, entry))
    return {
        "database": entry.name,
        "status": db_status(membership, entry),
        "already": already,
        **extra,
    }


def journal_control(membership: Membership, action: str, entry: DbEntry, result: dict):
    """Journal a control record; the reply waits until it is durable (and acknowledged)."""
    fut = membership.writer.submit([control_op(action, entry)])
    out = asyncio.get_running_loop().create_future()

    def done(f):
        if f.cancelled():
            out.cancel()
        elif f.exception() is not None:
            out.set_exception(f.exception())
        else:
            out.set_result(result)

    fut.add_done_callback(done)
    return out


def journal_covers(membership: Membership, op: str, db: str, since) -> None:
    start = membership.journal_reader().start_position()
    need = make_position(*since) if since is not None else None
    if start is None:
        return  # no journal yet: everything will come from the primary
    if (need is None and start.file_seq != 1) or (need is not None and need < start):
        raise Refused(
            op,
            db,
            f"this member's journal no longer holds every change since {since or 'the start'} "
            f"(it starts at {pos_wire(start)}); restore a newer copy from the primary",
        )


def mount_new(membership: Membership, entry: DbEntry, restored: bool = False) -> None:
    # a restored copy keeps its own position: activation checks it against `since`
    store = membership.open_store(entry.name, None if restored else entry.since)
    # the member takes an added copy as it is, with no journal behind it: durable before the
    # catalog counts it (engine/storage/durable.py); for a new empty one this costs little
    fsyncs = sync_store(store)
    log.info("database %s durable before it is mounted: %d fsyncs", entry.name, fsyncs)
    membership.catalog.entries[entry.name] = entry
    membership.catalog.save()
    membership.stores[entry.name] = store
    if membership.role != "primary" and entry.caught_up:
        attach(membership.dejournal.dj, entry.name, store)


def replay(membership: Membership, store, db: str) -> int:
    """Apply the local journal's records for db after the store's position."""
    reader = membership.journal_reader()
    n = 0
    for batch in reader.batches_from(store.applied_position, db):
        k = store.apply(batch)
        n += k
        if db in membership.catching_up:
            membership.catching_up[db] += k  # progress, shown in the status row
    return n


def _replay_started(membership: Membership, store, db: str) -> int:
    # logged by the worker thread as it begins, so the log shows when catch-ups overlap
    log.info("catch-up of %s started from %s", db, pos_wire(store.applied_position))
    return replay(membership, store, db)


async def catch_up_one(membership: Membership, entry: DbEntry) -> None:
    db = entry.name
    try:
        store = membership.stores[db]
        n = await asyncio.to_thread(_replay_started, membership, store, db)
        # the tail received meanwhile, on the loop thread: no chunk arrives in between, so
        # the dejournaler takes over exactly where this ends
        n += replay(membership, store, db)
        entry.caught_up = True
        attach(membership.dejournal.dj, db, store)
        membership.catalog.save()
        log.info("catch-up of %s done: %d records applied", db, n)
    except Exception as exc:
        membership.db_errors[db] = f"catch-up failed: {exc}"
        log.exception("catch-up of %s failed", db)
    finally:
        membership.catching_up.pop(db, None)
