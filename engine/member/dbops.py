"""Database and member operations of guide §4.8, §4.10.5, §5.8, §5.11.5 (admin requests).

Every operation is safe to retry: asking for a state the database is already in answers
{"already": true, ...}; a precondition that does not hold raises Refused with the reason.

New mirrored databases on the other members: creating a database on the primary journals a
control record.  A backup or DR async that reads it creates the database empty at that
journal position and dejournals it from there: every change of the new database comes after
the record, so the empty copy plus the journal is the primary's database (no download).  A
reporting async lists it and creates it on request (create_database), the same way, as long as
its journal still holds everything since the creation.  A database added with its existing
data is downloaded from another member (engine/member/download.py), or restored from a copy
of the primary's, then added, activated and caught up (guide §4.8.4).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from engine.member import adopt, download
from engine.member.db_steps import (
    catch_up_one,
    db_result,
    journal_control,
    journal_covers,
    mount_new,
    replay,
)
from engine.member.files import STOPPED_FILE
from engine.replication.receiver import ReplicaLink
from engine.storage.databases import (
    DbEntry,
    Refused,
    check_name,
    detach,
    new_incarnation,
    read_control,
)
from engine.storage.journal_codec import make_position, pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.dbops")


def _args(op: str, arg, **defaults) -> dict:
    """An admin argument: a database name, or a map with "name" and options."""
    if isinstance(arg, dict):
        out = dict(defaults)
        unknown = set(arg) - {"name", *defaults}
        if unknown:
            raise Refused(op, None, f"unknown options {sorted(unknown)}")
        out.update(arg)
        return out
    return {**defaults, "name": arg}


def _entry(membership: Membership, op: str, name) -> DbEntry:
    name = check_name(op, name)
    entry = membership.catalog.get(name)
    if entry is None:
        raise Refused(op, name, f"not a mirrored database on member {membership.member.name}")
    return entry


def _not_primary(membership: Membership, op: str, db: str | None) -> None:
    if membership.role == "primary":
        raise Refused(op, db, "not available on the primary")


# -- create / add ------------------------------------------------------------------------


def create_database(membership: Membership, arg):
    a = _args("create_database", arg, mirrored=True)
    name = check_name("create_database", a["name"])
    entry = membership.catalog.get(name)
    adopting = entry is not None and entry.needs_download and membership.role == "primary"
    if entry is not None and not adopting:
        return db_result(membership, entry, already=True)
    if not a["mirrored"]:
        _check_idle(membership, "create_database", name)
        if membership.db_path(name).exists():
            return {"database": name, "status": "local", "already": True}
        membership.open_store(name).close()
        return {"database": name, "status": "local", "already": False}
    if membership.db_path(name).exists() and not adopting:
        raise Refused(
            "create_database",
            name,
            "a local database of that name exists; add it with add_database",
        )
    if membership.role == "primary":
        if name in membership.downloading:
            return {"database": name, "status": "Downloading", "already": True}
        # another member may hold a valid copy to adopt (guide §4.8.3)
        return adopt.create_on_primary(membership, name)
    known = (membership.primary_db_info or {}).get(name)
    if known is None:
        raise Refused("create_database", name, "the primary has no mirrored database of that name")
    if not known["created"]:
        # added with its existing data: the journal alone cannot rebuild it (guide §4.8.3)
        return download.download_database(membership, name)
    journal_covers(membership, "create_database", name, known["since"])
    entry = DbEntry(name, known["incarnation"], since=known["since"], caught_up=False)
    entry.failover_db = membership.member.type != "rw_reporting"
    mount_new(membership, entry)
    return catchup(membership, name)


def add_database(membership: Membership, arg):
    name = check_name("add_database", _args("add_database", arg)["name"])
    entry = membership.catalog.get(name)
    if entry is not None:
        return db_result(membership, entry, already=True)
    _check_idle(membership, "add_database", name)  # a primary looking for a copy to adopt
    if not membership.db_path(name).exists():
        raise Refused(
            "add_database",
            name,
            f"no local database of that name on member {membership.member.name}",
        )
    if membership.role == "primary":
        entry = DbEntry(name, new_incarnation(), since=pos_wire(membership.journal.end_position))
        entry.created = False
        mount_new(membership, entry)
        return journal_control(membership, "add", entry, db_result(membership, entry))
    known = (membership.primary_db_info or {}).get(name)
    if known is None:
        raise Refused("add_database", name, "the primary has no mirrored database of that name")
    # a restored copy: guide §4.8.4, activate and catch up by hand
    entry = DbEntry(name, known["incarnation"], since=known["since"], activated=False)
    entry.caught_up = False
    entry.created = known["created"]
    entry.failover_db = membership.member.type != "rw_reporting"
    mount_new(membership, entry, restored=True)
    return db_result(membership, entry)


# -- activate / catch up -----------------------------------------------------------------


def activate(membership: Membership, arg):
    entry = _entry(membership, "activate", _args("activate", arg)["name"])
    _not_primary(membership, "activate", entry.name)
    if entry.activated:
        return db_result(membership, entry, already=True)
    _check_activatable(membership, "activate", entry)
    entry.activated = True
    membership.catalog.save()
    return db_result(membership, entry)


def _check_usable(membership: Membership, op: str, entry: DbEntry) -> None:
    if not entry.mounted:
        raise Refused(op, entry.name, "the database is dismounted; mount it first")
    if entry.obsolete:
        raise Refused(op, entry.name, "the database is obsolete; remove it from the mirror")
    if entry.needs_download or entry.name in membership.downloading:
        raise Refused(op, entry.name, "the database needs a download (download_database)")


def _check_activatable(membership: Membership, op: str, entry: DbEntry) -> None:
    _check_usable(membership, op, entry)
    applied = membership.stores[entry.name].applied_position
    if entry.since is not None and (applied is None or applied < make_position(*entry.since)):
        raise Refused(
            op,
            entry.name,
            f"the local copy (at {pos_wire(applied)}) is older than the database's addition to "
            f"the mirror (at {entry.since}); restore a copy made on the primary since then",
        )


def _names(op: str, arg) -> tuple[list[str], bool]:
    wait = False
    if isinstance(arg, dict):
        wait = bool(arg.get("wait", False))
        arg = arg.get("names", arg.get("name"))
    if isinstance(arg, str):
        arg = [x for x in arg.split(",") if x]
    if not isinstance(arg, list) or not arg:
        raise Refused(op, None, "give one or more database names")
    return [check_name(op, n) for n in arg], wait


def catchup(membership: Membership, arg):
    names, wait = _names("catchup", arg)
    _not_primary(membership, "catchup", None)
    entries = [_entry(membership, "catchup", n) for n in names]
    # check every database first: nothing starts unless all can
    for e in entries:
        if not e.activated:
            _check_activatable(membership, "catchup", e)
        _check_usable(membership, "catchup", e)
        if not e.caught_up and e.name not in membership.catching_up:
            applied = membership.stores[e.name].applied_position
            journal_covers(membership, "catchup", e.name, pos_wire(applied) or e.since)
    started, already = [], []
    for e in entries:
        if e.caught_up or e.name in membership.catching_up:
            already.append(e.name)
            continue
        if not e.activated:
            e.activated = True  # guide §4.8.5: the catch-up activates what needs it
        membership.catching_up[e.name] = 0
        membership.db_errors.pop(e.name, None)
        started.append(e)
    membership.catalog.save()
    task = membership.run_in_background(_run_catchups(membership, started))
    result = {"started": [e.name for e in started], "already": already}
    if not wait:
        return result
    out = asyncio.get_running_loop().create_future()
    task.add_done_callback(lambda _t: out.done() or out.set_result(result))
    return out


async def _run_catchups(membership: Membership, entries: list[DbEntry]) -> None:
    if membership.cfg.parallel_for(membership.member):
        await asyncio.gather(*(catch_up_one(membership, e) for e in entries))
    else:
        for e in entries:
            await catch_up_one(membership, e)


# -- mount / dismount / remove -----------------------------------------------------------


def dismount(membership: Membership, arg):
    entry = _entry(membership, "dismount", _args("dismount", arg)["name"])
    if not entry.mounted:
        return db_result(membership, entry, already=True)
    _check_idle(membership, "dismount", entry.name)
    _close(membership, entry.name)
    entry.mounted = False
    if membership.role != "primary":
        entry.caught_up = False  # stale until mounted and caught up (guide §5.11.5)
    membership.catalog.save()
    return db_result(membership, entry)


def _check_idle(membership: Membership, op: str, db: str) -> None:
    if db in membership.catching_up or db in membership.downloading:
        raise Refused(op, db, "a catch-up or download is running; wait for it to finish")


def _close(membership: Membership, db: str) -> None:
    if membership.dejournal is not None:
        detach(membership.dejournal.dj, db)  # which ends an operator's pause too
    entry = membership.catalog.get(db)
    if entry is not None:
        entry.paused = False
    store = membership.stores.pop(db, None)
    if store is not None:
        store.close()


def mount(membership: Membership, arg):
    a = _args("mount", arg, catchup=False)
    entry = _entry(membership, "mount", a["name"])
    if entry.mounted:
        if a["catchup"] and not entry.caught_up and membership.role != "primary":
            return catchup(membership, entry.name)
        return db_result(membership, entry, already=True)
    store = membership.open_store(entry.name, entry.since)
    entry.mounted = True
    if membership.role == "primary":
        # writes made while it was dismounted are in the journal
        replay(membership, store, entry.name)
        membership.stores[entry.name] = store
        membership.catalog.save()
        return db_result(membership, entry)
    membership.stores[entry.name] = store
    membership.catalog.save()
    if a["catchup"] and entry.activated and not entry.obsolete:
        return catchup(membership, entry.name)
    return db_result(membership, entry)


def remove(membership: Membership, arg):
    name = check_name("remove", _args("remove", arg)["name"])
    entry = membership.catalog.get(name)
    if entry is None:
        return {"database": name, "status": "not mirrored", "already": True}
    _check_idle(membership, "remove", name)
    _close(membership, name)
    del membership.catalog.entries[name]
    membership.catalog.save()
    membership.db_errors.pop(name, None)
    result = {"database": name, "status": "not mirrored", "already": False}
    if membership.role == "primary":
        # permanent (guide §4.10.5): the data stays as a local database
        return journal_control(membership, "remove", entry, result)
    return result


def clear_failover_db(membership: Membership, arg):
    """Clear the FailoverDB flag (guide §4.10.1, §4.10.3) of one database (a name, or {"name"}),
    of several ({"names": [...]}) or of every mirrored database here ({"all": true}, the
    "Clear FailoverDB Flags" button).  Several answer {"databases": [one result each]};
    nothing is cleared unless every database named is mirrored here."""
    op = "clear_failover_db"
    entries, several = _flag_entries(membership, arg)
    db = None if several else entries[0].name
    mtype = membership.member.type
    if mtype == "dr":
        raise Refused(op, db, "never allowed on a DR async (guide §4.10.1)")
    if mtype == "failover":
        raise Refused(op, db, "only on a read-only reporting async (guide §4.10.1)")
    results = []
    for entry in entries:
        already = not entry.failover_db
        entry.failover_db = False  # once cleared it cannot be set again
        results.append(db_result(membership, entry, already=already, failover_db=False))
    if not all(r["already"] for r in results):
        membership.catalog.save()
    return {"databases": results} if several else results[0]


def _flag_entries(membership: Membership, arg) -> tuple[list[DbEntry], bool]:
    """The databases asked for, and whether several were (a list, or all)."""
    op = "clear_failover_db"
    if not (isinstance(arg, dict) and ("names" in arg or "all" in arg)):
        return [_entry(membership, op, _args(op, arg)["name"])], False
    unknown = set(arg) - {"names", "all"}
    if unknown:
        raise Refused(op, None, f"unknown options {sorted(unknown)}")
    if "all" in arg:
        if "names" in arg or arg["all"] is not True:
            raise Refused(op, None, "give either 'names' or 'all': true")
        return list(membership.catalog.entries.values()), True
    names = arg["names"]
    if not isinstance(names, list) or not names:
        raise Refused(op, None, "'names' must be a non-empty list of database names")
    checked = dict.fromkeys(check_name(op, n) for n in names)  # once each, in order
    return [_entry(membership, op, n) for n in checked], True


# -- stop / start mirroring (guide §5.8) --------------------------------------------------


def stop_mirroring(membership: Membership, arg):
    _not_primary(membership, "stop_mirroring", None)
    if membership.mirroring_stopped:
        return {"status": "Stopped", "already": True}
    flag = membership.data_dir / STOPPED_FILE
    flag.write_text("stopped by operator\n")
    membership.mirroring_stopped = True
    log.warning("mirroring stopped by operator")

    async def run():
        await membership.replica.stop()
        return {"status": "Stopped", "already": False}

    return asyncio.get_running_loop().create_task(run())


def start_mirroring(membership: Membership, arg):
    _not_primary(membership, "start_mirroring", None)
    if not membership.mirroring_stopped:
        return {"status": "running", "already": True}
    (membership.data_dir / STOPPED_FILE).unlink(missing_ok=True)
    membership.mirroring_stopped = False
    old = membership.replica
    membership.replica = ReplicaLink(membership, membership.gate)
    membership.replica.disconnected_at = old.disconnected_at if old is not None else None
    membership.replica.start()
    log.info("mirroring started by operator")
    return {"status": "Synchronizing", "already": False}


# -- control records from the primary -----------------------------------------------------


def resume_downloads(membership: Membership) -> None:
    """At start-up, go on with every download a stop cut short (Needs Download)."""
    for entry in list(membership.catalog.entries.values()):
        if not entry.needs_download or entry.name in membership.downloading:
            continue
        log.info("resuming the download of %s", entry.name)
        if membership.role == "primary":
            adopt.create_on_primary(membership, entry.name)
        else:
            membership.downloading.add(entry.name)
            membership.run_in_background(download.download_in_background(membership, entry))


def primary_list_known(membership: Membership, databases: dict[str, dict], as_of) -> None:
    """The primary's list of its databases as of its journal end `as_of`, sent as the data
    channel opens: kept (control records from before `as_of` are already in it), and a rebuilt
    copy waiting to try its download again tries at once, now that it knows what to take."""
    membership.primary_db_info, membership.primary_db_info_as_of = databases, as_of
    for name, entry in membership.catalog.entries.items():
        if entry.rebuilt and entry.needs_download:
            download.retry_now(membership, name)


def _before_incarnation(entry: DbEntry, record) -> bool:
    return entry.since is not None and record.position < make_position(*entry.since)


def on_control_record(membership: Membership, record) -> None:
    try:
        action, info = read_control(record)
    except (ValueError, TypeError, IndexError):
        log.error("unreadable mirror control record at %s", record.position)
        return
    name = info["name"]
    known = membership.primary_db_info
    as_of = membership.primary_db_info_as_of
    # the list came from the primary when the data channel opened; a record from before then
    # (a journal taken from its start, after a rebuild) is history the list already tells
    if known is not None and (as_of is None or record.position >= as_of):
        if action == "remove":
            known.pop(name, None)
        else:
            known[name] = info
    entry = membership.catalog.get(name)
    if entry is not None and _before_incarnation(entry, record):
        return  # a journal replayed: the record is about an earlier database of that name
    if entry is not None and entry.rebuilt and entry.needs_download:
        # a rebuilt copy is to be the primary's, as it is now: never obsolete (guide §5.7)
        download.follow_the_primary(membership, entry)
        return
    if action == "remove":
        return
    if entry is not None:
        if entry.incarnation != info["incarnation"] and not entry.obsolete:
            # the primary made a new database of that name: this copy is obsolete (guide
            # §4.8.3): its data is kept, its dejournaling stops
            log.warning("database %s is obsolete: the primary recreated it", name)
            entry.obsolete = True
            entry.paused = False
            if membership.dejournal is not None:
                detach(membership.dejournal.dj, name)
            membership.catalog.save()
        return
    if action != "create" or membership.member.is_reporting:
        return  # listed as missing (backup/DR) or available to create (reporting)
    if membership.db_path(name).exists():
        log.warning("mirrored database %s not created: a local database has that name", name)
        return
    entry = DbEntry(name, info["incarnation"], since=info["since"])
    mount_new(membership, entry)
    log.info("mirrored database %s created (empty, dejournaled from %s)", name, entry.since)


ACTIONS = {
    "create_database": create_database,
    "add_database": add_database,
    "activate": activate,
    "catchup": catchup,
    "dismount": dismount,
    "mount": mount,
    "remove_database": remove,
    "clear_failover_db": clear_failover_db,
    "stop_mirroring": stop_mirroring,
    "start_mirroring": start_mirroring,
}
