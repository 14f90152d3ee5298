"""Jobs for failover (guide §3.4, §6.1 - §6.2; engine/agent/failover.py): stopping a member's
instance gracefully (a primary hands over to its Active backup on the way), setting and clearing
"no failover", and forcing a member to become primary in two steps — a preview that asks the
member what is at stake, then the forcing itself once an operator has seen it and typed the
mirror's name (members.actions.force_primary).

Each records what the member answered (its own words for the outcome), waits for the members to
show it, and ends with a refresh: after a takeover, the new primary is whoever says so."""

from __future__ import annotations

from engine import rules as catalog
from members import reconcile
from members.agents import refusals
from members.operations.base import (
    Where,
    member_of,
    member_status,
    mirror_of,
    read,
    refresh,
    wait_s,
    where,
)
from tasks.errors import PermanentJobError

# A member that says one of these is the primary (In Trouble: a primary that lost its backup).
PRIMARY_STATUSES = (catalog.PRIMARY, catalog.IN_TROUBLE)


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
        return status in PRIMARY_STATUSES, status or "no status yet"

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


def preview_force_primary(run):
    """Step one: the member says what forcing it would put at risk; nothing changes."""
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place, refusals(f"{member.name}"):
        answer = place.agent.force_primary(place.instance, confirm=False)
    for line in stake_lines(answer):
        run.step(line)
    return answer


def force_primary(run):
    """Step two, confirmed: the member becomes primary at a new term. The job records the
    stake as the member saw it at that moment (it may differ from the preview's)."""
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place:
        status, _ = member_status(place, mirror.name)
        if status in PRIMARY_STATUSES:  # a retry after the member already became primary
            run.step(f"{member.name} already says {status}")
            answer = {"member": member.name, "confirmed": None, "already": status}
        else:
            with refusals(f"Forcing {member.name} to become primary"):
                answer = place.agent.force_primary(place.instance, confirm=True)
            if answer.get("confirmed") is not True:
                raise PermanentJobError(f"{member.name} did not confirm: {answer}")
            for line in stake_lines(answer):
                run.step(line)
            run.step(f"{member.name} becomes primary", progress=40)
        _wait_primary(run, place, mirror.name, (40, 90))
    return {**refresh(run, mirror), "forced": answer}
