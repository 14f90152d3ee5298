"""Jobs for disaster recovery, when no primary runs (guide §5.5, §6.3; docs/takeover.md
"Promotion with no primary"; engine/member/promotion.py): a DR async promoted to primary on
itself, in two steps — a preview that asks it what is at stake with the partner chosen, then the
promotion once an operator has seen it and typed the mirror's name
(members.failover_actions.promote_to_primary) — and clearing ValidatedMember on a stopped
former failover member, so that it takes its role from the primary it finds when it starts.

The promoted member restarts as the primary: the job waits until it says so itself (type
Failover, status Primary), then records the mirror as that member reports it — its
configuration is the mirror's now, which names the other failover members DR even while they
are down and their own configurations still say otherwise."""

from __future__ import annotations

import contextlib

from engine import rules as catalog
from members import reconcile, sync
from members.agents import open_agent, refusals
from members.operations.base import (
    Where,
    member_of,
    member_status,
    mirror_of,
    refresh,
    wait_s,
    where,
)
from tasks.errors import PermanentJobError, TransientJobError

# the agent gives a promotion with a partner 120 s to hear from the partner's agent and copy
# its journal (engine/agent/failover.py PROMOTE_WAIT_S): the call may take that long
PROMOTE_TIMEOUT_S = 130.0


def stake_lines(answer: dict) -> list[str]:
    """What a promote-to-primary answer says is at stake, as log lines. A preview's term is
    the last one the member heard; a confirmed answer's is the new one (said apart)."""
    end = answer.get("journal_end")
    partner = answer.get("partner")
    term = f" (term {answer.get('term')})" if answer.get("confirmed") is False else ""
    lines = [
        f"{answer.get('member')}'s journal ends at "
        f"{':'.join(map(str, end)) if end else 'nothing yet'}",
        f"the last primary it knew: {answer.get('last_primary') or 'none'}{term}",
        f"partner: {partner}"
        if partner
        else "no partner: what the failover members committed after that journal end is lost",
    ]
    if answer.get("warning"):
        lines.append(f"{answer.get('member')} says: {answer['warning']}")
    return lines


def preview_promote_to_primary(run):
    """Step one: the DR async says what its promotion would put at risk; nothing changes."""
    member, mirror = member_of(run), mirror_of(run)
    partner = run.params.get("partner")
    with where(mirror.name, member.name) as place, refusals(f"{member.name}"):
        answer = place.agent.promote_to_primary(place.instance, partner=partner, confirm=False)
    for line in stake_lines(answer):
        run.step(line)
    return answer


def _own_role(place: Where, mirror: str) -> tuple[str, str]:
    """The member's type and status as it reports them now; ("", "") while it restarts."""
    with refusals(f"{place.instance} on {place.host.name}"):
        own = place.agent.instance(place.instance).get("type") or ""
    if not own:
        return "", ""
    try:
        status, _ = member_status(place, mirror)
    except (PermanentJobError, TransientJobError):  # between two memberships: not yet
        return own, ""
    return own, status


def promote_to_primary(run):
    """Step two, confirmed: the DR async restarts as the primary at a new term (with the
    partner's journal beyond its own first, when it has one). The job records the stake as
    the member saw it at that moment, waits until it says Primary, and records the mirror as
    it then reports it."""
    member, mirror = member_of(run), mirror_of(run)
    partner = run.params.get("partner")
    with where(mirror.name, member.name) as place:
        own, status = _own_role(place, mirror.name)
        if own == catalog.FAILOVER:
            # a retry after the member was promoted (it may still be restarting): not asked again
            run.step(f"{member.name} is a failover member already ({status or 'restarting'})")
            answer = {"member": member.name, "partner": partner, "confirmed": None}
        else:
            answer = _promote(run, place, member.name, partner)
        _wait_primary(run, place, mirror.name, (40, 85))
        view = sync.read_mirror(place.host, place.instance, mirror.name)
        try:  # its host's instance rows say its new type too (discovery reads each instance)
            sync.discover_host(place.host)
        except (PermanentJobError, TransientJobError) as exc:
            run.step(f"{place.host.name}'s instances not read again: {exc}")
    result = refresh(run, mirror, view=view)
    if reconcile.record_member_type(member, catalog.FAILOVER):
        run.step(f"member {member.name}: member_type failover, as it reports")
    return {**result, "promoted": answer, "types": {m.name: m.type for m in view.members}}


def _promote(run, place: Where, name: str, partner: str | None) -> dict:
    with (
        contextlib.closing(open_agent(place.host, timeout=PROMOTE_TIMEOUT_S)) as agent,
        refusals(f"Promoting {name} to primary"),
    ):
        answer = agent.promote_to_primary(place.instance, partner=partner, confirm=True)
    if answer.get("confirmed") is not True:
        raise PermanentJobError(f"{name} did not confirm: {answer}")
    for line in stake_lines(answer)[:3]:
        run.step(line)
    demoted = ", ".join(answer.get("demoted") or []) or "no member"
    run.step(
        f"{name} restarts as the primary at term {answer.get('term')}; DR now: {demoted}; "
        f"{answer.get('journal_fetched') or 0} bytes of journal copied from the partner",
        progress=40,
    )
    return answer


def _wait_primary(run, place: Where, mirror: str, progress) -> None:
    def poll():
        own, status = _own_role(place, mirror)
        done = own == catalog.FAILOVER and status in catalog.PRIMARY_STATUSES
        label = catalog.MEMBER_TYPE_LABELS.get(own, own or "no type yet")
        return done, f"{label}, {status or 'restarting'}"

    run.wait(
        poll,
        what=f"{place.instance} to be the Failover primary",
        timeout=wait_s(run),
        progress=progress,
    )


def clear_validated_member(run):
    """ValidatedMember=0 on the member's stopped instance; the agent refuses while it runs."""
    member, mirror = member_of(run), mirror_of(run)
    with (
        where(mirror.name, member.name) as place,
        refusals(f"Clearing ValidatedMember on {member.name}"),
    ):
        answer = place.agent.clear_validated_member(place.instance)
    if answer.get("validated") is not False:
        raise PermanentJobError(f"{member.name} did not clear ValidatedMember: {answer}")
    reconcile.record_validated_cleared(member)
    run.step(
        f"{member.name}: ValidatedMember cleared; at its next start it takes its role from "
        "the primary it finds"
    )
    try:
        result = refresh(run, mirror)
    except PermanentJobError as exc:  # no member of the mirror runs: nobody to read
        run.step(f"Not read after clearing: {exc}")
        result = {"mirror": mirror.name, "primary": None}
    return {**result, "cleared": answer}
