"""Every admin action a membership takes, by name (engine/PROTOCOL.md, "Admin actions").

The operations live in their own modules (databases: dbops, download; membership:
membership_ops; dejournaling: dejournal_runner); this table is the one place that knows them
all, so that a membership, which they all act on, need not import them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.member import dbops, download, failover_ops, membership_ops, promotion, rebuild
from engine.member.dejournal_runner import DEJOURNAL_CONTROLS, dejournal_control
from engine.storage.databases import Refused
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

ACTIONS = {
    **dbops.ACTIONS,
    **download.ACTIONS,
    **membership_ops.ACTIONS,
    **failover_ops.ACTIONS,
    **promotion.ACTIONS,
    **rebuild.ACTIONS,
}


def admin_action(membership: Membership, action, arg):
    if action in ACTIONS:
        return ACTIONS[action](membership, arg)
    if action == "digest":
        return membership.store_for(str(arg)).digest()
    if action == "positions":
        return {db: pos_wire(s.applied_position) for db, s in membership.stores.items()}
    if action == "purge_journal":
        if membership.replicator is None:
            raise Refused(action, None, f"member {membership.member.name} is not the primary")
        return membership.replicator.purge_journal()
    if action in DEJOURNAL_CONTROLS:
        return dejournal_control(membership, action, arg)
    known = ["digest", "positions", "purge_journal", "dejournal_stop", "dejournal_start"]
    known += ["pause_database", "resume_database", *ACTIONS]
    raise ValueError(f"unknown admin action {action!r} (known: {', '.join(known)})")
