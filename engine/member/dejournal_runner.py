"""Dejournaling on a backup/async: received records are queued and applied by the
storage helper's Dejournaler after the chunk has been acknowledged, so applying never
delays the acknowledgement of journal data (the backup's acks are on the primary's
commit path).  Batches run on the event loop thread in slices of MAX_SLICE records:
handing small batches to a worker thread costs more than applying them, because the
loop thread then waits for the GIL to come back.

Stopping dejournaling keeps receiving (guide §5.9): the Dejournaler holds the records of a
stopped member or a paused database and applies them, in order, when started/resumed.
Both the stop and a database's pause are kept across a restart; what the journal held for
them at start-up is replayed when they are started / resumed.
Lag figures for the status come from record timestamps: the last one received vs the
last one applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from engine.member.db_steps import replay
from engine.member.files import DEJOURNAL_STOPPED_FILE
from engine.storage.databases import Refused, db_status

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.storage.dejournal")
MAX_SLICE = 2000


class DejournalRunner:
    def __init__(self, dejournaler):
        self.dj = dejournaler
        self._queue: deque = deque()
        self._wake = asyncio.Event()
        self._busy = False
        self.received_ts: float | None = None
        self.applied_ts: float | None = None
        self.applied_records = 0
        self.error: str | None = None
        self._task: asyncio.Task | None = None

    def start_task(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dejournal")

    @property
    def stopped(self) -> bool:
        return self.dj.stopped

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.dj.close)

    def submit(self, records) -> None:
        if not records:
            return
        self._queue.append(records)
        self.received_ts = records[-1].timestamp
        self._wake.set()

    # -- operator actions ---------------------------------------------------
    def stop(self) -> None:
        self.dj.stop()
        log.info("dejournaling stopped")

    def start(self) -> None:
        self.error = None
        self.dj.start()
        self._wake.set()
        log.info("dejournaling started")

    def pause_database(self, db: str) -> None:
        self.dj.pause_database(db)

    def resume_database(self, db: str) -> None:
        self.dj.resume_database(db)
        self._wake.set()

    def paused_databases(self) -> set:
        return set(self.dj.paused)

    # -- status figures -----------------------------------------------------
    def caught_up(self) -> bool:
        return not self._queue and not self._busy and not self.dj.held_records()

    def lag_seconds(self) -> float | None:
        if self.caught_up() or self.received_ts is None:
            return None
        return max(0.0, self.received_ts - (self.applied_ts or self.received_ts))

    async def wait_idle(self) -> None:
        while not self.caught_up():
            await asyncio.sleep(0.005)

    # -- the loop -------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and self.error is None:
                batch = []
                while self._queue and len(batch) < MAX_SLICE:
                    batch.extend(self._queue.popleft())
                self._busy = True
                try:
                    self.dj.apply(batch)
                    self.applied_records += len(batch)
                    if not self.dj.held_records():
                        self.applied_ts = batch[-1].timestamp
                except Exception as exc:
                    # guide §5.9: an error stops dejournaling until restarted; keep the records.
                    self._queue.appendleft(batch)
                    self.error = str(exc)
                    self.dj.stop()
                    log.exception("dejournaling failed; stopped")
                finally:
                    self._busy = False
                await asyncio.sleep(0)  # let the data channel read and ack between slices


# -- operator controls (guide §5.9) -----------------------------------------------------

DEJOURNAL_CONTROLS = ("dejournal_stop", "dejournal_start", "pause_database", "resume_database")


def dejournal_control(membership: Membership, action: str, arg) -> None:

    runner = membership.dejournal
    if runner is None:
        raise Refused(
            action, None, f"member {membership.member.name} is the primary; it does not dejournal"
        )
    if action == "dejournal_stop":
        if membership.role == "backup":
            raise Refused(action, None, "not available on the backup (guide §5.9)")
        runner.stop()
        # stays stopped until started by the same option, restarts included
        (membership.data_dir / DEJOURNAL_STOPPED_FILE).write_text("stopped by operator\n")
        return None
    if action == "dejournal_start":
        (membership.data_dir / DEJOURNAL_STOPPED_FILE).unlink(missing_ok=True)
        membership.dejournal_stopped_at_start = False
        for db in list(membership.unreplayed):
            if db not in runner.paused_databases():
                _replay_held(membership, db)
        runner.start()
        return None
    db = str(arg.get("name") if isinstance(arg, dict) else arg).upper()
    entry = membership.catalog.get(db)
    if entry is None:
        membership.store_for(db)  # the usual "not mirrored here" error
    if db not in membership.dj_stores:
        why = db_status(membership, entry)
        raise Refused(action, db, f"the database is not being dejournaled ({why})")
    if action == "pause_database":
        runner.pause_database(db)
    else:
        if not runner.stopped:  # else dejournal_start replays it
            _replay_held(membership, db)
        runner.resume_database(db)
    entry.paused = action == "pause_database"
    membership.catalog.save()
    return None


def _replay_held(membership: Membership, db: str) -> None:
    """Apply what the journal held for db at start-up (never applied: it was stopped or
    paused then); the records received since are held by the dejournaler and come after."""
    store = membership.dj_stores.get(db)
    if db in membership.unreplayed and store is not None:
        replay(membership, store, db)
    membership.unreplayed.discard(db)
