"""Jobs on mirrored databases (guide §4.11, §5.3, §6.7): each goes to the member holding the
copy, waits for the copy's status where the operation takes time (a download, a catch-up), and
ends with a refresh."""

from __future__ import annotations

import time
from functools import partial

from members.agents import AgentConnectionError, AgentError, refusals
from members.models import DatabaseCopy
from members.operations.base import (
    member_of,
    member_status,
    mirror_of,
    primary,
    read,
    refresh,
    wait_s,
    where,
)
from tasks.errors import PermanentJobError

# A member may not yet know of a database the primary just created (the journal brings it):
# it refuses with this reason, and is asked again until the wait's bound.
NOT_YET = "primary has no mirrored database"
SETTLED = {"Dejournaling", "Normal"}
DONE = {"create": "created", "add": "added"}


def _row(place, mirror: str, db: str) -> dict | None:
    _, rows = member_status(place, mirror)
    return next((r for r in rows if r["name"] == db), None)


def _describe(row: dict | None) -> str:
    if row is None:
        return "not there yet"
    text = row["status"]
    if "download" in row:
        d = row["download"]
        total = d.get("total_bytes") or 0
        text += f", {d.get('received_bytes', 0):,} of {total:,} bytes from {d.get('source')}"
    if "records_applied" in row:
        text += f", {row['records_applied']:,} records applied"
    if row.get("error"):
        text += f" ({row['error']})"
    return text


def _wait_settled(run, place, mirror: str, db: str, progress) -> str:
    seen = {}

    def poll():
        row = _row(place, mirror, db)
        seen["row"] = row
        if row is not None and row.get("error"):
            raise PermanentJobError(f"{db} on {place.instance}: {row['error']}")
        download = (row or {}).get("download") or {}
        total = download.get("total_bytes")
        share = min(1.0, download.get("received_bytes", 0) / total) if total else None
        return row is not None and row["status"] in SETTLED, _describe(row), share

    run.wait(poll, what=f"{db} on {place.instance}", timeout=wait_s(run), progress=progress)
    return seen["row"]["status"]


def _ask(run, place, call, *args):
    """An operation a member may refuse only because it has not heard of the database yet: asked
    again (the job says it waits, and may be cancelled) until the wait's bound."""
    deadline = time.monotonic() + wait_s(run)
    told = False
    while True:
        try:
            return call(place.instance, *args)
        except AgentError as exc:
            if NOT_YET not in exc.message or time.monotonic() > deadline:
                _as_job_error(place, exc)
            if not told:
                run.step(f"{place.instance} has not heard of {args[0]} from the primary yet")
                told = True
        except AgentConnectionError as exc:
            _as_job_error(place, exc)
        run.check_cancel()
        time.sleep(0.2)


def _as_job_error(place, exc: Exception):
    with refusals(place.instance):
        raise exc


def create_database(run):
    """A database in the mirror: created empty (how=create), or an existing local database of
    the primary added with its data (how=add); then a copy on each member named (every other
    member by default) — from the journal, or downloaded (guide §4.11)."""
    mirror = mirror_of(run)
    name, how = run.params["name"].upper(), run.params.get("how", "create")
    view = read(mirror)
    holders = run.params.get("members")
    if holders is None:
        holders = [m.name for m in view.members if m.name != view.primary]
    with primary(mirror) as place, refusals(f"{name} on the primary {place.instance}"):
        existing = _row(place, mirror.name, name)
        if existing is None:
            if how == "add":
                answer = place.agent.add_database(place.instance, name, mirror=mirror.name)
            else:
                answer = place.agent.create_database(place.instance, name, mirror=mirror.name)
            run.step(
                f"{name} {DONE[how]} on the primary {place.instance}: {answer.get('status')}",
                progress=15,
            )
    for i, holder in enumerate(holders):
        with where(mirror.name, holder) as at:
            if _row(at, mirror.name, name) is None:
                # named: a reporting member may belong to several mirrors
                create = partial(at.agent.create_database, mirror=mirror.name)
                answer = _ask(run, at, create, name)
                run.step(f"{name} on {holder}: {answer.get('status', 'started')}")
            low = 20 + 75 * i // len(holders)
            status = _wait_settled(run, at, mirror.name, name, (low, low + 75 // len(holders)))
            run.step(f"{name} on {holder}: {status}")
    return refresh(run, mirror)


def _copy(run) -> DatabaseCopy:
    copy = (
        DatabaseCopy.objects.select_related("database", "member")
        .filter(pk=run.job.target_id)
        .first()
    )
    if copy is None:
        raise PermanentJobError("The database copy is no longer registered in the portal.")
    return copy


def _copy_op(run, method: str, *, settle: bool = False, **kwargs):
    copy, mirror = _copy(run), mirror_of(run)
    db, member = copy.database.name, copy.member.name
    with where(mirror.name, member) as place:
        with refusals(f"{method.replace('_', ' ')} {db} on {member}"):
            answer = getattr(place.agent, method)(place.instance, db, **kwargs)
        run.step(
            f"{db} on {member}: {method.replace('_', ' ')}: {answer.get('status', 'done')}",
            progress=30,
        )
        if settle:
            _wait_settled(run, place, mirror.name, db, (30, 95))
    return refresh(run, mirror)


def download_database(run):
    return _copy_op(run, "download", settle=True)


def activate_database(run):
    return _copy_op(run, "activate")


def mount_database(run):
    return _copy_op(run, "mount", catchup=bool(run.params.get("catchup")))


def dismount_database(run):
    return _copy_op(run, "dismount")


def remove_database(run):
    return _copy_op(run, "remove_database")


def pause_dejournaling(run):
    return _copy_op(run, "pause_database")


def resume_dejournaling(run):
    return _copy_op(run, "resume_database")


def catchup_databases(run):
    """Several databases of one member at once (in parallel where the mirror's setting allows,
    guide §4.11.3); the job shows each one's records applied until all are caught up."""
    member, mirror = member_of(run), mirror_of(run)
    names = [n.upper() for n in run.params["databases"]]
    with where(mirror.name, member.name) as place:
        for name in run.params.get("restored", []):
            if _row(place, mirror.name, name) is None:
                add = partial(place.agent.add_database, mirror=mirror.name)
                answer = _ask(run, place, add, name)
                run.step(f"Restored copy of {name} added on {member.name}: {answer.get('status')}")
        with refusals(f"Catching up {', '.join(names)} on {member.name}"):
            place.agent.catchup(place.instance, names)
        run.step(f"Catch-up of {', '.join(names)} started on {member.name}", progress=10)
        for i, db in enumerate(names):
            low = 10 + 85 * i // len(names)
            _wait_settled(run, place, mirror.name, db, (low, low + 85 // len(names)))
    return refresh(run, mirror)


def clear_failover_db(run):
    member, mirror = member_of(run), mirror_of(run)
    names = run.params.get("databases")
    with where(mirror.name, member.name) as place, refusals(f"FailoverDB on {member.name}"):
        if names:
            answer = place.agent.clear_failover_db(place.instance, names, mirror=mirror.name)
        else:
            answer = place.agent.clear_failover_db(
                place.instance, all_databases=True, mirror=mirror.name
            )
    cleared = [r.get("database") for r in answer.get("databases", [])]
    run.step(f"FailoverDB cleared on {member.name}: {', '.join(map(str, cleared)) or 'none'}")
    DatabaseCopy.objects.filter(member=member, database__name__in=cleared).update(failover_db=False)
    result = refresh(run, mirror)
    result["cleared"] = cleared
    return result


def add_database_copy(run):
    """The member adds an existing database (restored from a copy of the primary's files): it
    then needs activating and catching up (guide §4.11.2)."""
    member, mirror = member_of(run), mirror_of(run)
    name = run.params["name"]
    with where(mirror.name, member.name) as place:
        answer = _ask(
            run,
            place,
            lambda inst, db: place.agent.add_database(inst, db, mirror=mirror.name),
            name,
        )
    run.step(f"{name} added on {member.name}: {answer.get('status')}", progress=60)
    return refresh(run, mirror)
