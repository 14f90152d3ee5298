"""The primary's write path: group commit to the journal, apply to the stores, wait for
the active backup's acknowledgement, then answer the clients.

Requests submitted in one event-loop iteration form one journal commit, done right there
with Journal.commit_sync (write + fdatasync on the loop thread) and applied to the stores,
so journal order, store order and reply order are the same.  The journal hands the batch
to replication (on_append) before it writes, so the backup receives it while the local
fsync runs.  Each batch's clients are answered when the Active backup's ack covers the
batch's end position (at once when there is no Active backup).  While the primary is in
trouble (it lost its Active backup, engine/replication/sender.py) nothing is committed: the
batches wait for the trouble to end.

Why blocking: measured with bench/replication.py-style load on this 2-core VM, the
thread hand-offs of the asynchronous Journal.commit() cost more than they save (one
client: p50 0.62 -> 0.50 ms, p99 ~4 -> 0.8 ms; 16 clients: ~7,000 -> ~11,000 ops/s).
While the loop is blocked, new requests and acks wait in the socket buffers and form
the next batch, which is group commit all the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from engine.member.requests import KILL
from engine.member.takeover import give_up_primary
from engine.wire import trace
from engine.wire.protocol import ErrorCode, RequestError

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.writer")


class Writer:
    def __init__(self, membership: Membership):
        self.membership = membership
        self._pending: list[tuple[list, asyncio.Future]] = []
        self._flush_scheduled = False
        self._held = False  # a flush waits for the primary's trouble to end
        self.frozen: Exception | None = None
        # txids must not repeat across restarts: start from the clock
        self._txid = time.time_ns() // 1000

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        _fail(self._pending, None)
        self._pending = []

    def submit(self, ops: list) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((ops, fut))
        if not self._flush_scheduled:
            # everything submitted in this loop iteration goes into one journal commit
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return fut

    def _entries(self, batch: list) -> list:
        make = self.membership.journal_entry
        entries = []
        for ops, _ in batch:
            self._txid += 1
            txid = self._txid
            for op, db, gname, subs, value in ops:
                entries.append(make(txid, db, op, gname, subs, None if op == KILL else value))
        return entries

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        if trace.ENABLED:
            trace.mark("p.flush")
        membership = self.membership
        if self.frozen is not None:
            err = f"journal frozen after a write error ({self.frozen}); no new updates accepted"
            _fail(batch, RequestError(ErrorCode.UNAVAILABLE, err))
            return
        trouble = membership.replicator.after_trouble() if membership.replicator else None
        if trouble is not None:
            # a primary in trouble commits nothing new (guide §3.3.5.1): hold the batch
            self._pending = batch + self._pending
            if not self._held:
                self._held = True
                trouble.add_done_callback(self._trouble_over)
            return
        try:
            # Blocking write + fdatasync on the loop thread: the batch is already shipped to
            # the members (Journal.on_append) before the fsync starts, and requests and acks
            # arriving meanwhile wait in the socket buffers and form the next batch.  This
            # saves two thread hand-offs per commit over Journal.commit().
            records = membership.journal.commit_sync(self._entries(batch))
            if trace.ENABLED:
                trace.mark("p.synced")
            membership.apply_records(records)
        except Exception as exc:
            # guide §3.2: freeze on journal error rather than journal around a hole
            self.frozen = exc
            log.exception("journal commit failed; %d requests failed, journal frozen", len(batch))
            # the bytes may have reached the backup (shipped before the fsync), or this disk
            why = (
                f"the journal write failed ({exc}): whether the mirror has this write is "
                "unknown; read it back from the primary"
            )
            _fail(batch, RequestError(ErrorCode.UNAVAILABLE, why))
            failed = give_up_primary(membership, f"journal write failed: {exc}")
            membership.run_in_background(failed)
            return
        if records:
            membership.replicator.when_acknowledged(records[-1].end, lambda e: _settle(e, batch))
        else:
            _resolve(batch)

    def _trouble_over(self, _fut) -> None:
        self._held = False
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)


def _resolve(batch: list) -> None:
    if trace.ENABLED:
        trace.mark("p.answered")
    for _, fut in batch:
        if not fut.done():
            fut.set_result(None)


def _settle(error: Exception | None, batch: list) -> None:
    """The backup's acknowledgement came (or the trouble ended): answered; or the wait failed
    (the primary stopped first): the batch's outcome is unknown, and said so."""
    if error is None:
        _resolve(batch)
    else:
        _fail(batch, error)


def _fail(batch: list, exc: Exception | None) -> None:
    for _, fut in batch:
        if not fut.done():
            if exc is None:
                fut.cancel()
            else:
                fut.set_exception(exc)
