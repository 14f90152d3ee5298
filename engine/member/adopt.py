"""A mirrored database created on the primary under a name other members already hold
(guide §4.8.3).

Before it makes a new, empty database, the primary asks the other members (at once, briefly)
what they hold of that name.  When one has a valid copy (activated, FailoverDB not cleared)
the primary downloads it, backup first then the asyncs, and adopts it: the same incarnation,
so the members holding it go on dejournaling it.  Meanwhile the database is Downloading (its
status row shows the bytes received); when no source could send it, Needs Download with the
reason, tried again with a backoff (asking the members anew each time) until a valid copy
comes, and create_database again tries at once.  The adopted copy, its applied position set to
the primary's journal end, is fsync'ed before the catalog records it (engine/storage/durable.py).
With no valid copy anywhere, the database is created empty under a new incarnation and every
older copy elsewhere becomes Obsolete when the control record reaches it.  This is how a
primary that lost a database (removed from the mirror, files gone) gets it back without
losing what the others kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.client.app import AsyncClient, EngineError
from engine.member.db_steps import db_result, journal_control, mount_new
from engine.member.download import fetch_copy, may_hold_copy, retry_now, until_copied
from engine.member.node import peer_tls
from engine.storage import journal as jmod
from engine.storage.databases import DbEntry, new_incarnation
from engine.storage.durable import sync_store
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.download")
PROBE_TIMEOUT_S = 2.0


def create_on_primary(membership: Membership, name: str) -> asyncio.Task | dict:
    """Create the database on the primary, or start adopting a valid copy (status
    Downloading); the task's result is the create_database answer."""
    if retry_now(membership, name):  # an adoption waiting to try again: at once, not a second one
        return {"database": name, "status": "Downloading", "already": False}
    membership.downloading.add(name)
    return membership.run_in_background(_create(membership, name))


async def _create(membership: Membership, name: str) -> dict:
    try:
        found = await _valid_copies(membership, name)
    except BaseException:
        membership.downloading.discard(name)
        raise
    entry = membership.catalog.get(name)
    if found is None:
        membership.downloading.discard(name)
        if entry is not None:
            # an earlier adoption (e.g. resumed at start-up before the others are up): never
            # create it empty while a copy may come back; keep looking for one
            membership.downloading.add(name)
            membership.run_in_background(_adopt(membership, entry, []))
            return db_result(membership, entry, already=True)
        entry = DbEntry(name, new_incarnation(), since=pos_wire(membership.journal.end_position))
        mount_new(membership, entry)
        log.info("no valid copy of %s on another member: created empty", name)
        return await journal_control(membership, "create", entry, db_result(membership, entry))
    incarnation, sources = found
    if entry is None:
        entry = DbEntry(name, incarnation, created=False, needs_download=True)
        membership.catalog.entries[name] = entry
    entry.incarnation = incarnation
    membership.catalog.save()
    membership.db_errors.pop(name, None)
    membership.run_in_background(_adopt(membership, entry, sources))
    return db_result(membership, entry, source=sources[0].name)


async def _adopt(membership: Membership, entry: DbEntry, sources: list) -> None:
    name = entry.name
    first = True

    async def attempt():
        nonlocal first, sources
        if not first or not sources:  # who holds a valid copy may have changed meanwhile
            sources = await _holders(membership, name, entry.incarnation)
            if not sources:
                return None, ["no member holds a valid copy of it now"]
        first = False
        return await fetch_copy(membership, entry, sources)

    store = await until_copied(membership, entry, attempt, "no valid copy could be downloaded")
    if store is None:
        return
    # the copy is the database as of now on this primary: nothing older is ever replayed
    entry.since = pos_wire(membership.journal.end_position)
    store.apply([], upto=jmod.make_position(*entry.since))
    # that position must survive an OS crash too, or a start would replay older records of
    # the name into the copy: durable before the catalog records it (the copy's file already is)
    fsyncs = sync_store(store)
    log.info("adopted copy of %s durable: %d fsyncs", name, fsyncs)
    entry.needs_download = entry.rebuilt = False
    membership.stores[name] = store
    membership.catalog.save()
    log.info("adopted %s (incarnation %s) from another member", name, entry.incarnation)
    await journal_control(membership, "add", entry, {})


async def _valid_copies(membership: Membership, name: str) -> tuple[str, list] | None:
    """The incarnation of the first valid copy in source order, and the members holding a
    valid copy of that incarnation, in that order."""
    valid = await _all_valid(membership, name)
    if not valid:
        return None
    incarnation = valid[0][1]
    return incarnation, [m for m, i in valid if i == incarnation]


async def _holders(membership: Membership, name: str, incarnation: str) -> list:
    """The members holding a valid copy of that incarnation, in source order."""
    return [m for m, i in await _all_valid(membership, name) if i == incarnation]


async def _all_valid(membership: Membership, name: str) -> list[tuple]:
    """(member, incarnation) of every valid copy, backup first, then the asyncs."""
    me = membership.member.name
    candidates = [m for m in membership.cfg.failover_members if m.name != me]
    candidates += [m for m in membership.cfg.members if not m.is_failover]
    candidates = [m for m in candidates if may_hold_copy(m)]
    answers = await asyncio.gather(*(_copy_info(membership, m, name) for m in candidates))
    pairs = zip(candidates, answers, strict=True)
    return [(m, a["incarnation"]) for m, a in pairs if a and a["valid"]]


async def _copy_info(membership: Membership, member, name: str) -> dict | None:
    try:
        async with AsyncClient(
            [str(member.superserver)],
            follow_primary=False,
            timeout=PROBE_TIMEOUT_S,
            retries=0,
            **peer_tls(membership),
        ) as c:
            return await c.admin("copy_info", {"name": name, "mirror": membership.cfg.name})
    except (EngineError, OSError, TimeoutError) as exc:
        log.info("member %s not asked about %s: %s", member.name, name, exc)
        return None
