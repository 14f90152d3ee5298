"""Operator actions on failover (docs/failover.md "Operator actions"):

force_primary      make this backup the primary when no primary runs (guide §6.2.3,
                   U4/U5 of docs/failover.md).  Without {"confirm": true} it only shows
                   what is at stake: whether this member was the Active backup when it
                   lost the primary and where its journal ends, since anything the old
                   primary committed after that is not here.
set_no_failover    no automatic takeover until cleared (guide §3.4, §6.1.3); kept in
clear_no_failover  failover.json, and cleared when a primary starts.  The primary passes
                   its flag to its backup with every heartbeat.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from engine.failover import state as failover_state
from engine.member.takeover import become_primary
from engine.storage.databases import Refused
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership


def _failover_member(membership: Membership, op: str) -> None:
    if not membership.member.is_failover:
        raise Refused(op, None, f"member {membership.member.name} is not a failover member")


def at_stake(membership: Membership) -> dict:
    """What an operator must see before forcing this member to become primary."""
    replica = membership.replica
    return {
        "member": membership.member.name,
        "role": membership.role,
        "was_active_backup": bool(replica and replica.active_when_lost),
        "journal_end": pos_wire(membership.journal.end_position),
        "last_primary": membership.fstate.primary,
        "term": membership.fstate.term,
    }


def force_primary(membership: Membership, arg) -> dict:
    op = "force_primary"
    _failover_member(membership, op)
    confirm = isinstance(arg, dict) and arg.get("confirm") is True
    replica = membership.replica
    if membership.role == "primary":
        raise Refused(op, None, f"member {membership.member.name} is the primary already")
    if membership.transition is not None:
        raise Refused(op, None, f"member {membership.member.name} is becoming primary already")
    if replica is not None and replica.connected:
        raise Refused(
            op,
            None,
            f"member {membership.member.name} follows primary {replica.primary_name}: a mirror "
            "has one primary; stop that one first",
        )
    stake = at_stake(membership)
    if not confirm:
        return {
            **stake,
            "confirmed": False,
            "warning": (
                "anything the last primary committed after this member's journal end is lost, "
                'and the last primary must stay down: confirm with {"confirm": true}'
            ),
        }
    membership.run_in_background(become_primary(membership, "forced by an operator", forced=True))
    return {**stake, "confirmed": True}


def _set_no_failover(membership: Membership, value: bool, op: str) -> dict:
    _failover_member(membership, op)
    if membership.fstate.no_failover != value:
        membership.fstate = replace(membership.fstate, no_failover=value)
        failover_state.save(membership.data_dir, membership.fstate)
    return {"member": membership.member.name, "no_failover": value}


def set_no_failover(membership: Membership, arg) -> dict:
    return _set_no_failover(membership, True, "set_no_failover")


def clear_no_failover(membership: Membership, arg) -> dict:
    return _set_no_failover(membership, False, "clear_no_failover")


ACTIONS = {
    "force_primary": force_primary,
    "set_no_failover": set_no_failover,
    "clear_no_failover": clear_no_failover,
}
