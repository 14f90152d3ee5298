"""A backup becoming primary while it runs (guide §3.3.2; docs/failover.md "Takeover").

Who decides is elsewhere (engine/member/failover_watch.py: the primary's request on graceful
shutdown, the arbiter's report, the negotiation at start-up); this module does the change of
role, in this order:

1. the data channel to the old primary is closed, so nothing more is taken from it;
2. dejournaling stops and the stores are closed; everything received is in the journal;
3. the new term is written durably (engine/failover/state.py), before any commit;
4. storage opens again as a primary's (each store is brought up to the end of the journal),
   and the Writer and Replicator start: the new primary begins a new journal file, and the
   other members, looking for the primary among the failover members, connect to it.

While this runs the member's status is Transition (guide §5.1.1.1).  A failure on the way
leaves the member down rather than half a primary: its process stops, and at the next start
it is a backup again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from engine.member.changes import config_changed
from engine.member.hooks import hooks_agree, run_hook
from engine.storage.journal_codec import pos_wire
from engine.wire.protocol import MsgType, encode_frame

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.takeover")
HANDOVER_WAIT_S = 2.0  # the longest a graceful stop waits at each step of a handover


async def become_primary(membership: Membership, reason: str, *, forced: bool = False) -> bool:
    """Make this backup the primary; False if it is not a backup (any more), a takeover is
    already under way, or the hooks never agreed (engine/member/hooks.py; an operator's
    `forced` takeover skips can_become_primary, not check_become_primary)."""
    if membership.role != "backup" or membership.transition is not None:
        return False
    if membership.stopping_started:
        return False
    if membership.hook_waiting is not None:
        return False  # another attempt waits for the hooks
    if forced:
        if not await run_hook(membership, "check_become_primary", reason):
            await run_hook(membership, "notify_become_primary_failed", reason)
            return False
    elif not await hooks_agree(membership, reason):
        return False
    if membership.role != "backup" or membership.transition is not None:
        return False
    if membership.stopping_started:
        return False
    started = time.monotonic()
    membership.transition = reason
    log.warning("member %s becomes primary: %s", membership.member.name, reason)
    try:
        if membership.replica is not None:
            await membership.replica.stop()
            membership.replica = None
        if membership.dejournal is not None:
            await membership.dejournal.close()
            membership.dejournal = None
        membership.journal.close()
        for store in membership.stores.values():
            store.close()
        membership.stores = {}
        former = membership.fstate.primary  # before start_primary writes the new term
        membership.role = "primary"
        membership._open_storage()
        membership.start_primary()
        membership.took_over_at = time.monotonic()  # engine/member/failover_watch.py
        membership.took_over_from = former if former != membership.member.name else None
        if membership.cfg.dynamic:
            # a new version: what was edited here meanwhile (guide §5.2 exception 3) reaches
            # every member as it connects
            config_changed(membership)
    except Exception:
        log.exception("taking over failed: stopping this member (it restarts as backup)")
        await run_hook(membership, "notify_become_primary_failed", reason)
        (membership.instance or membership).stop_requested.set()
        raise
    finally:
        membership.transition = None
    log.warning(
        "member %s is primary (term %d) after %.3f s",
        membership.member.name,
        membership.fstate.term,
        time.monotonic() - started,
    )
    membership.run_in_background(run_hook(membership, "notify_become_primary", reason))
    return True


async def give_up_primary(membership: Membership, why: str) -> None:
    """A primary whose journal can no longer be written (guide §3.2 freeze-on-error; a
    storage failure, scenario 4 of §3.3.3.1) cannot act as primary: as a hung primary does,
    it asks its Active backup to take over, then stops, and stays down until an operator
    restarts it.  Without an Active backup it stays, frozen: no write is accepted, and the
    operator decides."""
    log.error("primary %s cannot go on: %s", membership.member.name, why)
    if await hand_over(membership):
        (membership.instance or membership).stop_requested.set()
    else:
        log.error("no Active backup took over: this primary stays, refusing every write")


async def hand_over(membership: Membership) -> bool:
    """On graceful shutdown of a primary with an Active backup (guide §3.3.2.2, the primary's
    request): take no more writes, wait (at most QoS) until the backup has acknowledged the
    whole journal, then tell it to take over.  True if the backup was told; the caller then
    stops, and never acts as primary again in this process."""
    rep = membership.replicator
    if membership.role != "primary" or rep is None or membership.fstate.no_failover:
        return False
    link = rep.active
    if link is None or link.closed:
        log.info("graceful shutdown without an Active backup: no handover")
        return False
    for server in membership.servers:
        server.close()  # no new client; the writes under way finish below
    for conn in [c for c in membership.sessions if c.data_link is None]:
        conn.close()
    if membership.instance is not None:
        membership.instance.close_clients()
    end = _handed_end(membership.journal)
    # an Active backup acknowledges within milliseconds; a stop must not wait long for one
    # that will not (it may be stopping too)
    deadline = time.monotonic() + min(membership.cfg.qos_timeout_ms / 1000, HANDOVER_WAIT_S)
    while link.acked is None or link.acked < end:
        if link.closed or rep.active is not link or time.monotonic() > deadline:
            log.warning("backup %s did not acknowledge journal end %s: no handover", link.name, end)
            return False
        await asyncio.sleep(0.005)
        end = _handed_end(membership.journal)
    link.conn.write(encode_frame(MsgType.DC_HANDOVER, 0, [pos_wire(end), membership.fstate.term]))
    log.warning("handing over to backup %s at journal end %s", link.name, end)
    # the backup closes the data channel as it takes over; the journal is then its own
    closing = time.monotonic() + HANDOVER_WAIT_S
    while not link.closed and time.monotonic() < closing:
        await asyncio.sleep(0.005)
    return True


def _handed_end(journal):
    """Where the backup's copy must end before it may take over: the journal's end, or, when
    a write error froze the journal, the end of what reached the backup."""
    return journal.shipped_position if journal.failed is not None else journal.end_position
