"""Jobs for failover (guide §3.4, §6.1 - §6.2; engine/agent/failover.py): stopping a member's
instance gracefully (a primary hands over to its Active backup on the way), setting and clearing
"no failover", and forcing a member to become primary in two steps — a preview that asks the
member what is at stake, then the forcing itself once an operator has seen it and typed the
mirror's name (members.actions.force_primary).

Promoting a DR async to failover member and demoting the backup to DR (guide §5.5, §5.6) are
asked of the primary; the members concerned restart in their new type, and the job waits until
each of them reports that type itself before it records it.

Each records what the member answered (its own words for the outcome), waits for the members to
show it, and ends with a refresh: after a takeover, the new primary is whoever says so."""

from __future__ import annotations

from engine import rules as catalog
from members import reconcile, sync
from members.agents import refusals
from members.models import Member
from members.operations.base import (
    Where,
    member_of,
    member_status,
    mirror_of,
    read,
    refresh,
    wait_connected,
    wait_s,
    where,
)
from tasks.errors import PermanentJobError, TransientJobError


def stop_instance(run):
    """Graceful shutdown of the member's instance. When it is the primary and its partner is
    the Active backup, that partner takes over: the job waits until it says Primary."""
    member, mirror = member_of(run), mirror_of(run)
    before = read(mirror)
    was_primary = before.primary == member.name
    heir = next(
        (
            m
            for m in before.members
            if m.name != member.name
            and m.type == catalog.FAILOVER
            and m.journal_transfer == catalog.ACTIVE
        ),
        None,
    )
    with where(mirror.name, member.name) as place, refusals(f"Stopping {member.name}"):
        answer = place.agent.stop_instance(place.instance)
    run.step(f"{member.name}: {answer.get('detail') or answer}", progress=40)
    result = {"stopped": answer, "new_primary": None}
    if was_primary and heir is not None:
        # it hands over within a QoS timeout; with no failover set it does not (the portal may
        # not know the flag: it is the members'), so not taking over is an outcome, not a failure
        run.step(f"{heir.name} was the Active backup: waiting for it to take over", progress=50)
        bound = min(wait_s(run), 2 * mirror.qos_timeout_ms / 1000 + 5)
        with where(mirror.name, heir.name) as at_heir:
            try:
                _wait_primary(run, at_heir, mirror.name, (50, 90), timeout=bound)
                result["new_primary"] = heir.name
            except PermanentJobError as exc:
                run.step(f"{heir.name} did not take over: {exc}")
    elif was_primary:
        run.step("No Active backup reported: no member takes over", progress=50)
    try:
        return {**refresh(run, mirror), **result}
    except PermanentJobError as exc:  # it was the last member running: nobody to read
        run.step(f"Not read after the stop: {exc}")
        return {"mirror": mirror.name, "primary": None, **result}


def _wait_primary(run, place: Where, mirror: str, progress, timeout=None) -> None:
    def poll():
        status, _ = member_status(place, mirror)
        return status in catalog.PRIMARY_STATUSES, status or "no status yet"

    run.wait(
        poll,
        what=f"{place.instance} to be Primary",
        timeout=timeout or wait_s(run),
        progress=progress,
    )


def _no_failover(run, method: str):
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place, refusals(f"{member.name}"):
        answer = getattr(place.agent, method)(place.instance)
    flag = bool(answer.get("no_failover"))
    reconcile.record_no_failover(member, flag)
    run.step(f"{answer.get('member') or member.name}: no failover {'set' if flag else 'cleared'}")
    return {**refresh(run, mirror), "no_failover": flag}


def set_no_failover(run):
    return _no_failover(run, "set_no_failover")


def clear_no_failover(run):
    return _no_failover(run, "clear_no_failover")


def stake_lines(answer: dict) -> list[str]:
    """What a force-primary answer says is at stake, as log lines."""
    active = "was" if answer.get("was_active_backup") else "was NOT"
    end = answer.get("journal_end")
    return [
        f"{answer.get('member')} {active} the Active backup when it lost the primary",
        f"its journal ends at {':'.join(map(str, end)) if end else 'nothing yet'}",
        f"the last primary it knew: {answer.get('last_primary') or 'none'} "
        f"(term {answer.get('term')})",
    ]


def _preview(run, method: str, lines) -> dict:
    """Step one of a two-step operation: the member answers `method` without confirm, which
    changes nothing; what it says is at stake is logged line by line (`lines(answer)`)."""
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place, refusals(f"{member.name}"):
        answer = getattr(place.agent, method)(place.instance, confirm=False)
    for line in lines(answer):
        run.step(line)
    return answer


def _confirmed(run, place: Where, method: str, what: str, lines) -> dict:
    """Step two of a two-step operation: the member answers `method` with confirm; what it
    says was at stake at that moment is logged line by line (`lines(answer)`)."""
    with refusals(what):
        answer = getattr(place.agent, method)(place.instance, confirm=True)
    if answer.get("confirmed") is not True:
        raise PermanentJobError(f"{member_of(run).name} did not confirm: {answer}")
    for line in lines(answer):
        run.step(line)
    return answer


def preview_force_primary(run):
    """Step one: the member says what forcing it would put at risk; nothing changes."""
    return _preview(run, "force_primary", stake_lines)


def force_primary(run):
    """Step two, confirmed: the member becomes primary at a new term. The job records the
    stake as the member saw it at that moment (it may differ from the preview's)."""
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place:
        status, _ = member_status(place, mirror.name)
        if status in catalog.PRIMARY_STATUSES:  # a retry after the member already became primary
            run.step(f"{member.name} already says {status}")
            answer = {"member": member.name, "confirmed": None, "already": status}
        else:
            what = f"Forcing {member.name} to become primary"
            answer = _confirmed(run, place, "force_primary", what, stake_lines)
            run.step(f"{member.name} becomes primary", progress=40)
        _wait_primary(run, place, mirror.name, (40, 90))
    return {**refresh(run, mirror), "forced": answer}


# --- Rebuilding a member (guide §5.7) -----------------------------------------------------
def rebuild_stake_lines(answer: dict) -> list[str]:
    end = answer.get("journal_end")
    return [
        f"{answer.get('member')}'s journal ends at "
        f"{':'.join(map(str, end)) if end else 'nothing yet'}",
        f"databases to take again: {', '.join(answer.get('databases') or []) or 'none'}",
        f"the primary refused it: {answer.get('refused_because') or 'no'}",
    ]


def preview_rebuild_member(run):
    """Step one: the member says what a rebuild would set aside; nothing changes."""
    return _preview(run, "rebuild_member", rebuild_stake_lines)


def rebuild_member(run):
    """Step two, confirmed: the member restarts with its journal and databases set aside, and
    the job waits until it runs in its role again with every database taken again. Never
    retried once it has asked: a second run would set aside what the first one took again."""
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place:
        try:
            what = f"Rebuilding {member.name}"
            answer = _confirmed(run, place, "rebuild_member", what, rebuild_stake_lines)
            run.step(f"{member.name} restarts with its journal and databases set aside", 10)
            _wait_restarted(run, place, mirror.name, answer.get("started_at"), (10, 20))
            wait_connected(run, place, mirror.name, member.member_type, progress=(20, 50))
            _wait_databases_taken(run, place, mirror.name, (50, 95))
            return {**refresh(run, mirror), "rebuilt": answer}
        except TransientJobError as exc:
            raise PermanentJobError(
                f"{exc}. {member.name} may be rebuilding already: see its databases on the "
                "Mirror Monitor before asking again"
            ) from None


def _wait_restarted(run, place: Where, mirror: str, before, progress) -> None:
    """Until the member answers from its new start (the one that sets its files aside)."""

    def poll():  # not answering while it restarts is transient (run.wait tries again)
        with refusals(f"{place.instance} on {place.host.name}"):
            started = place.agent.databases(place.instance, mirror=mirror).get("started_at")
        return started != before, "started again" if started != before else "not restarted yet"

    run.wait(poll, what=f"{place.instance} to restart", timeout=wait_s(run), progress=progress)


# databases still on their way back after a rebuild (guide §4.8.3)
TAKING_AGAIN = frozenset({"Needs Download", "Downloading", "Needs Catchup", "Catchup Running"})


def _wait_databases_taken(run, place: Where, mirror: str, progress) -> None:
    def poll():
        _, rows = member_status(place, mirror)
        pending = sorted(r.get("name", "?") for r in rows if r.get("status") in TAKING_AGAIN)
        return not pending, f"still taking {', '.join(pending)}" if pending else "all taken"

    run.wait(
        poll,
        what=f"{place.instance}'s databases to be taken again",
        timeout=wait_s(run),
        progress=progress,
    )


# --- Promotion and demotion (guide §5.5, §5.6) ----------------------------------------------
# what a member of each type says once it runs in it again (guide §5.1.1.1)
SETTLED = {catalog.FAILOVER: catalog.BACKUP, catalog.DR: catalog.CONNECTED}


def promote_member(run):
    """The primary makes the DR async a failover member, and the failover member that was the
    backup a DR async; the job waits until both say so themselves."""
    member, mirror = member_of(run), mirror_of(run)
    at_primary, answer = _ask_primary(run, member, mirror, catalog.FAILOVER)
    demoted = list(answer.get("demoted") or [])
    run.step(
        f"{at_primary}: {answer.get('member')} becomes a failover member"
        + (f"; {', '.join(demoted)} becomes DR" if demoted else ""),
        progress=30,
    )
    wanted = {member.name: catalog.FAILOVER, **dict.fromkeys(demoted, catalog.DR)}
    reported = _wait_types(run, mirror, wanted, (30, 90))
    return {**_record_types(run, mirror, reported), "promoted": answer}


def demote_member(run):
    """The primary makes its backup a DR async; the job waits until the member says so."""
    member, mirror = member_of(run), mirror_of(run)
    at_primary, answer = _ask_primary(run, member, mirror, catalog.DR)
    run.step(f"{at_primary}: {answer.get('member')} becomes a DR async", progress=30)
    reported = _wait_types(run, mirror, {member.name: catalog.DR}, (30, 90))
    return {**_record_types(run, mirror, reported), "demoted": answer}


# what the primary is asked to make a member of each type: its agent's method, the job's verb,
# the type in the job's words
RETYPE = {
    catalog.FAILOVER: ("promote_member", "Promoting", "a failover member"),
    catalog.DR: ("demote_member", "Demoting", "a DR async"),
}


def _ask_primary(run, member: Member, mirror, new_type: str) -> tuple[str, dict]:
    """The primary's name and its answer to making `member` a `new_type`; on a retry after the
    primary did so already (it lists the member in that type), that instead of asking again."""
    method, verb, in_words = RETYPE[new_type]
    view = read(mirror)
    if not view.primary:
        raise PermanentJobError(
            f"Mirror {mirror.name} has no primary right now: "
            f"{verb.lower()} {member.name} is asked of the primary."
        )
    listed = view.member(member.name)
    if listed is not None and listed.type == new_type:  # a retry after it was done
        run.step(f"{member.name} is {in_words} already, as {view.primary} lists it")
        return view.primary, {"member": member.name, "type": new_type, "already": True}
    with where(mirror.name, view.primary) as place, refusals(f"{verb} {member.name}"):
        answer = getattr(place.agent, method)(place.instance, member.name, mirror=mirror.name)
    return view.primary, answer


def _wait_types(run, mirror, wanted: dict[str, str], progress) -> dict[str, str]:
    """Wait until each member in `wanted` (name -> type) reports that type itself and runs in
    it (a failover member as Backup, a DR async Connected); the types they reported."""
    reported: dict[str, str] = {}
    share = (progress[1] - progress[0]) // max(1, len(wanted))
    for i, (name, mtype) in enumerate(sorted(wanted.items())):
        low = progress[0] + i * share
        with where(mirror.name, name) as place:

            def poll(place=place, name=name, mtype=mtype):
                with refusals(f"{place.instance} on {place.host.name}"):
                    own = place.agent.instance(place.instance).get("type") or ""
                status = ""
                if own == mtype:
                    try:
                        status, _ = member_status(place, mirror.name)
                    except PermanentJobError as exc:  # between two memberships: not yet
                        status = str(exc)
                reported[name] = own
                label = catalog.MEMBER_TYPE_LABELS.get(own, own or "no type yet")
                done = own == mtype and status == SETTLED[mtype]
                return done, f"{label}, {status or 'restarting'}"

            run.wait(
                poll,
                what=f"{name} to run as {catalog.MEMBER_TYPE_LABELS[mtype]}",
                timeout=wait_s(run),
                progress=(low, low + share),
            )
            # its host's instance rows say the new type too (discovery reads each instance);
            # the member has answered already, so a host that does not is only a log line
            try:
                sync.discover_host(place.host)
            except (PermanentJobError, TransientJobError) as exc:
                run.step(f"{place.host.name}'s instances not read again: {exc}")
    return reported


def _record_types(run, mirror, reported: dict[str, str]) -> dict:
    """The refresh, then each member's type as the member itself reported it (the members are
    the truth: a configuration read from a member that lags does not undo it)."""
    result = refresh(run, mirror)
    for member in Member.objects.filter(mirror=mirror, name__in=list(reported)):
        if reconcile.record_member_type(member, reported[member.name]):
            run.step(f"member {member.name}: member_type {reported[member.name]}, as it reports")
    return {**result, "types": reported}
