"""Rebuild a member (guide §5.7, docs/takeover.md "Rebuilding a member").

A member whose journal holds what the mirror never had (two members forced primary in turn, a
restored copy gone wrong) is refused by the primary: "its data is inconsistent with the
mirror".  The guide's remedy is to take the member's databases from a member that is right,
let it join again with no journal of its own, and catch the copies up.  `rebuild_member` does
that in one step on the member itself:

    rebuild_member {"confirm": bool}

Without confirm it shows what is at stake: the journal end and the mirrored databases that
will be taken again from another member (dismounted or paused ones too: they come back
mounted and dejournaling), and why the primary refused it, if it did.  With
confirm it writes a marker file and restarts; the start that finds the marker:

  1. marks every mirrored database Needs Download (the mirrored attribute is kept), durably,
     before anything moves: a crash in the middle finds the marker and finishes the job (an
     Obsolete copy, whose name the primary gave to a new database, leaves the catalog: the new
     one shows as missing, to download);
  2. moves the journal directory and each database's files into `rebuilt-<UTC time>/` in the
     data directory, renamed, never deleted: the operator decides what to keep;
  3. removes the marker.

The member then joins with an empty journal (nothing for the primary to compare, so nothing
to refuse), receives the journal from the primary, and downloads each database from a member
that has it (engine/member/download.py), which catches it up from the copy's position.  Each
copy becomes the primary's database of its name as it is now (`follow_the_primary`): one made
anew while this member was refused is taken in its new incarnation.  The
primary refuses it: a mirror takes its data from its primary.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from engine.member.changes import TO_CONFIRM
from engine.member.node import write_json
from engine.member.status import waiting_reason
from engine.storage.databases import Refused
from engine.storage.durable import fsync_dir
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.rebuild")
OP = "rebuild_member"
REBUILD_FILE = "rebuild.json"  # present from the confirmed request until the files moved


def at_stake(membership: Membership) -> dict:
    return {
        "member": membership.member.name,
        "journal_end": pos_wire(membership.journal.end_position),
        "databases": sorted(membership.catalog.entries),
        "refused_because": waiting_reason(membership),
        "kept_in": "rebuilt-<time> in the member's data directory",
        "started_at": membership.started_at,
    }


def rebuild_member(membership: Membership, arg) -> dict:
    if arg is not None and not isinstance(arg, dict):
        raise Refused(OP, None, 'expected {"confirm": bool}')
    if membership.role == "primary" or membership.transition is not None:
        raise Refused(
            OP,
            None,
            f"member {membership.member.name} is the primary: a mirror takes its data from its "
            "primary, so rebuild the other members",
        )
    stake = at_stake(membership)
    if (arg or {}).get("confirm") is not True:
        warning = (
            "this member's journal and database files are set aside and every mirrored "
            "database is downloaded again from another member; it follows the primary's data"
        )
        return {**stake, "confirmed": False, "warning": warning, "to_confirm": TO_CONFIRM}
    marker = {"asked_at": time.time(), "journal_end": stake["journal_end"]}
    write_json(membership.data_dir / REBUILD_FILE, marker)
    fsync_dir(membership.data_dir)
    log.warning(
        "member %s is rebuilt: it restarts, sets its journal and databases aside and takes "
        "them again from the mirror (guide §5.7)",
        membership.member.name,
    )
    membership.request_restart()
    return {**stake, "confirmed": True, "restarting": True}


def finish_rebuild(membership: Membership) -> Path | None:
    """At start, before the journal and the databases open: carry out a confirmed rebuild.
    The directory the old files went to, or None when none was asked."""
    marker = membership.data_dir / REBUILD_FILE
    if not marker.exists():
        return None
    catalog = membership.catalog
    catalog.load(membership.member.databases, failover_db=membership.member.type != "rw_reporting")
    names = list(catalog.entries)
    for entry in catalog.entries.values():
        # every copy is taken again, whole and dejournaling: a dismounted one is mounted and a
        # paused one runs, since what the operator kept aside is in rebuilt-<time>
        entry.needs_download = entry.mounted = entry.rebuilt = True
        entry.activated = entry.caught_up = entry.paused = False
    catalog.save()
    stamp = time.strftime("rebuilt-%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = membership.data_dir / stamp, 1
    while aside.exists():  # a start after a crash, in the same second
        aside, n = membership.data_dir / f"{stamp}-{n}", n + 1
    (aside / "db").mkdir(parents=True)
    moves = [(membership.journal_dir, aside / "journal")]
    moves += [(membership.db_path(name), aside / "db" / name) for name in names]
    for source, target in moves:
        if source.exists():
            source.rename(target)
    fsync_dir(membership.data_dir)
    fsync_dir(aside / "db")
    # the primary gave an Obsolete copy's name to a new database: that one shows as missing, to
    # download (guide §4.8.3); dropped only now, so a start after a crash still moves its files
    catalog.entries = {n: e for n, e in catalog.entries.items() if not e.obsolete}
    catalog.save()
    membership.journal_dir.mkdir()
    marker.unlink()
    fsync_dir(membership.data_dir)
    log.warning(
        "rebuild: journal and %d database(s) set aside in %s; %d downloaded again",
        len(names),
        aside.name,
        len(catalog.entries),
    )
    return aside


ACTIONS = {OP: rebuild_member}
