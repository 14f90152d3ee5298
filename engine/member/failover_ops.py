"""Operator actions on failover (docs/takeover.md "Operator actions"):

force_primary      make this backup the primary when no primary runs (guide §6.2.3,
                   U4/U5 of docs/takeover.md).  Without {"confirm": true} it only shows
                   what is at stake: whether this member was the Active backup when it
                   lost the primary and where its journal ends, since anything the old
                   primary committed after that is not here.
set_no_failover    no automatic takeover until cleared (guide §3.4, §6.1.3); kept in
clear_no_failover  failover.json, and cleared when a primary starts.  The primary passes
                   its flag to its backup with every heartbeat.
demote_member      on the primary: the backup becomes a DR async (guide §5.6): the mirror
                   has one failover member, whose restart alone makes it primary again.
demote_to_dr       the same asked on the backup itself (guide §5.6 "Demote to DR Member"):
                   it asks its primary over the data channel (DC_DEMOTE).
promote_member     on the primary: a connected, caught-up DR async becomes a failover
                   member, its backup (guide §5.5, a primary running); the backup there
                   was is demoted to DR at the same time.

Promotion and demotion change member types in the mirror configuration, which only a mirror
configured through the agents carries (a mirror file's types are the file's).  The members
concerned restart their membership in the new type when the configuration reaches them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from engine import rules
from engine.failover import state as failover_state
from engine.member.changes import TO_CONFIRM, arg_map, config_changed, require_dynamic
from engine.member.takeover import become_primary
from engine.storage.databases import Refused
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.failover_ops")


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
        return _resume(membership, confirm)
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
                "and the last primary must stay down"
            ),
            "to_confirm": TO_CONFIRM,
        }
    membership.run_in_background(become_primary(membership, "forced by an operator", forced=True))
    return {**stake, "confirmed": True}


def _resume(membership: Membership, confirm: bool) -> dict:
    """A primary held in trouble with no timeout (cut off from its backup and the arbiter,
    Table 3-1 rows 7 and 8) resumes, by an operator's decision (guide §6.2, procedure U5):
    only right when the backup is down, never became primary and wrote no later journal."""
    rep = membership.replicator
    if rep is None or rep.trouble_held is None:
        why = f"member {membership.member.name} is the primary already, and not held in trouble"
        raise Refused("force_primary", None, why)
    stake = {**at_stake(membership), "held": rep.trouble_held}
    if not confirm:
        warning = (
            "the backup may have taken over meanwhile: resume only if it is down, never became "
            "primary and wrote no later journal file, or there will be two primaries"
        )
        return {**stake, "confirmed": False, "warning": warning, "to_confirm": TO_CONFIRM}
    log.warning("primary %s resumes: forced by an operator", membership.member.name)
    if membership.failover is not None:
        membership.failover.leave_arbiter_control("an operator forced this primary to resume")
    rep.release_trouble("forced by an operator to resume as primary")
    return {**stake, "confirmed": True}


def _set_no_failover(membership: Membership, value: bool, op: str) -> dict:
    _failover_member(membership, op)
    if membership.fstate.no_failover != value:
        membership.fstate = replace(membership.fstate, no_failover=value)
        failover_state.save(membership.data_dir, membership.fstate)
    if membership.replicator is not None:
        membership.replicator.beat_now()  # the backup knows before this answer is sent
    return {"member": membership.member.name, "no_failover": value}


def set_no_failover(membership: Membership, arg) -> dict:
    return _set_no_failover(membership, True, "set_no_failover")


def clear_no_failover(membership: Membership, arg) -> dict:
    return _set_no_failover(membership, False, "clear_no_failover")


def _member(membership: Membership, op: str, arg):
    require_dynamic(membership, op)
    if membership.role != "primary":
        raise Refused(op, None, f"{op} is done on the primary; {membership.member.name} is not")
    name = str(arg_map(op, arg, ("member",))["member"]).upper()
    member = membership.cfg.find(name)
    if member is None or member is membership.member:
        raise Refused(op, name, f"{name} is not another member of mirror {membership.cfg.name}")
    return member


def demote_member(membership: Membership, arg) -> dict:
    op = "demote_member"
    member = _member(membership, op, arg)
    if member.type != rules.FAILOVER:
        raise Refused(op, member.name, f"{member.name} is not a failover member")
    member.type = rules.DR
    try:
        config_changed(membership, restart_links=frozenset({member.name}))
    except Exception:
        member.type = rules.FAILOVER  # not saved, not sent: as it was
        raise
    log.warning("backup %s demoted to DR async", member.name)
    return {"member": member.name, "type": member.type}


def demote_to_dr(membership: Membership, arg) -> dict:
    """On the backup itself ("Demote to DR Member", guide §5.6): it asks its primary, which
    records the change for the whole mirror and sends it back; this membership then restarts
    as a DR async."""
    op = "demote_to_dr"
    require_dynamic(membership, op)
    _failover_member(membership, op)
    me = membership.member.name
    if membership.role == "primary" or membership.transition is not None:
        why = f"{me} is the primary: a primary is not demoted (demote the backup on it)"
        raise Refused(op, None, why)
    replica = membership.replica
    if replica is None or not replica.connected:
        why = f"{me} is not connected to its primary, which records the demotion: ask again then"
        raise Refused(op, None, why)
    replica.ask_demotion()
    log.warning("backup %s asked primary %s to demote it to DR async", me, replica.primary_name)
    return {"member": me, "asked_of": replica.primary_name, "type": rules.DR}


def promote_member(membership: Membership, arg) -> dict:
    op = "promote_member"
    member = _member(membership, op, arg)
    if member.type != rules.DR:
        why = f"only a DR async is promoted ({member.name} is {member.type_label})"
        raise Refused(op, member.name, why)
    if member.private is None:
        why = f"{member.name} has no mirror private address: set one first"
        raise Refused(op, member.name, why)
    link = membership.replicator.links.get(member.name)
    if link is None or link.closed or not link.live:
        raise Refused(op, member.name, f"{member.name} is not connected and caught up")
    demoted = [m for m in membership.cfg.failover_members if m is not membership.member]
    for m in demoted:
        m.type = rules.DR
    member.type = rules.FAILOVER
    config_changed(membership, restart_links=frozenset({member.name, *(m.name for m in demoted)}))
    names = [m.name for m in demoted]
    log.warning("DR async %s promoted to failover member; demoted: %s", member.name, names)
    return {"member": member.name, "type": member.type, "demoted": names}


ACTIONS = {
    "demote_member": demote_member,
    "demote_to_dr": demote_to_dr,
    "promote_member": promote_member,
    "force_primary": force_primary,
    "set_no_failover": set_no_failover,
    "clear_no_failover": clear_no_failover,
}
