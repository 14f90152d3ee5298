"""Promoting a DR async to primary when no primary runs (guide §5.5, §6.3; docs/takeover.md
"Promotion with no primary").

    promote_to_primary   on the DR async itself, with {"partner": NAME | null, "confirm": bool}

The disaster-recovery way out when both failover members are lost.  Without confirm it only
shows what is at stake: where this member's journal ends, the last primary it knew, and the
partner it would take.  With confirm:

- with a partner (a failover member whose host is up but whose instance is down): the
  partner's agent confirms it down (or forces it down) and is told who takes over at which
  term before the partner can start again (engine/agent/partner.py); this member then copies
  the partner's journal beyond its own through that agent, so nothing the partner had is
  lost, and the partner rejoins later as its backup;
- with no partner: whatever the failover members committed after this member's journal end
  is lost, and each of them must have ValidatedMember cleared before it starts again
  (engine/agent/failover.py clear-validated-member), or it may negotiate itself primary.

The configuration then names this member and its partner the failover members (any other is
a DR async now), and the member restarts as primary at the next term.  A primary still
running is never replaced this way: a DR async connected to one is promoted through it
(engine/member/failover_ops.py promote_member) and becomes its backup.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from engine import rules
from engine.failover import state as failover_state
from engine.member import mirror_file as ms
from engine.member.agent_confirm import AgentUnreachable, ask_partner_agent, fetch_latest_journal
from engine.member.changes import TO_CONFIRM, arg_map, require_dynamic
from engine.storage.databases import Refused
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.config import MemberConfig
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.promotion")
OP = "promote_to_primary"


def _partner(membership: Membership, name) -> MemberConfig | None:
    if name is None:
        return None
    partner = membership.cfg.find(str(name).upper())
    if partner is None or not partner.is_failover:
        raise Refused(OP, str(name), f"{name} is not a failover member of {membership.cfg.name}")
    if partner.agent is None or membership.cfg.secret is None:
        why = f"{partner.name}'s agent is not known here: promote with no partner instead"
        raise Refused(OP, partner.name, why)
    return partner


def _check(membership: Membership) -> None:
    require_dynamic(membership, OP)
    me = membership.member
    if me.type != rules.DR:
        raise Refused(OP, me.name, f"only a DR async is promoted ({me.name} is {me.type_label})")
    replica = membership.replica
    if replica is not None and replica.connected:
        why = (
            f"primary {replica.primary_name} runs: promote {me.name} through it "
            "(promote_member), which makes it the backup"
        )
        raise Refused(OP, me.name, why)
    if membership.transition is not None:
        raise Refused(OP, me.name, f"member {me.name} is becoming primary already")


def promote_to_primary(membership: Membership, arg):
    _check(membership)
    args = arg_map(OP, arg)
    partner = _partner(membership, args.get("partner"))
    stake = {
        "member": membership.member.name,
        "partner": partner.name if partner else None,
        "journal_end": pos_wire(membership.journal.end_position),
        "last_primary": membership.fstate.primary,
        "term": membership.fstate.term,
    }
    if args.get("confirm") is not True:
        if partner:
            warning = (
                f"{partner.name}'s agent must confirm it down; its journal beyond this member's "
                "is copied first"
            )
        else:
            warning = (
                "whatever the failover members committed after this member's journal end is "
                "lost; clear ValidatedMember on each of them before it starts again"
            )
        return {**stake, "confirmed": False, "warning": warning, "to_confirm": TO_CONFIRM}
    return asyncio.get_running_loop().create_task(_promote(membership, partner, stake))


async def _promote(membership: Membership, partner: MemberConfig | None, stake: dict) -> dict:
    _check(membership)  # again: a primary may have been found meanwhile
    me, cfg = membership.member, membership.cfg
    term = membership.fstate.term + 1
    membership.transition = "promoted by an operator"
    try:
        fetched = await _from_partner(membership, partner, term) if partner else 0
        demoted = [m for m in cfg.failover_members if m is not partner]
        for m in demoted:
            m.type = rules.DR
        me.type = rules.FAILOVER
        cfg.version += 1
        ms.save_local(cfg, me.name, membership.data_dir)
        membership.fstate = replace(
            membership.fstate, term=term, primary=me.name, start_as_primary=True, validated=True
        )
        failover_state.save(membership.data_dir, membership.fstate)
    finally:
        membership.transition = None
    names = [m.name for m in demoted]
    log.warning(
        "DR async %s promoted to primary (term %d), partner %s; demoted to DR: %s; "
        "%d bytes of journal fetched: restarting as primary",
        me.name,
        term,
        partner.name if partner else "none",
        names,
        fetched,
    )
    membership.request_restart()
    return {
        **stake,
        "confirmed": True,
        "type": me.type,
        "term": term,
        "demoted": names,
        "journal_fetched": fetched,
    }


async def _from_partner(membership: Membership, partner: MemberConfig, term: int) -> int:
    """The partner confirmed down by its agent (and told of the new primary), and its
    journal beyond this member's copied here; Refused otherwise."""
    try:
        answer = await ask_partner_agent(membership, partner, term=term)
    except AgentUnreachable as exc:
        why = f"cannot reach {partner.name}'s agent ({exc}): choose another partner or none"
        raise Refused(OP, partner.name, why) from None
    state = answer.get("state")
    if state not in ("down", "forced_down"):
        why = f"{partner.name} is {state}, not down: a mirror has one primary"
        raise Refused(OP, partner.name, why)
    try:
        return await fetch_latest_journal(membership, partner, answer.get("files") or [])
    except AgentUnreachable as exc:
        why = f"{partner.name}'s journal could not be copied: {exc}"
        raise Refused(OP, partner.name, why) from None


ACTIONS = {OP: promote_to_primary}
