"""The primary's write path: group commit to the journal, apply to the stores, wait for
the active backup's acknowledgement, then answer the clients.

Requests submitted in one event-loop iteration form one journal commit; commits are
started without waiting for the previous one, so the journal groups everything that
arrives while an fsync is in flight (group commit).  One completer task takes the
commits in journal order, applies them to the stores in that order, and answers each
batch's clients when the Active backup's ack covers the batch's end position (at once
when there is no Active backup).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from engine.instance_ops import KILL
from engine.protocol import ErrorCode
from engine.session import RequestError

if TYPE_CHECKING:
    from engine.instance import Instance

log = logging.getLogger("engine.writer")


class Writer:
    def __init__(self, inst: Instance):
        self.inst = inst
        self._pending: list[tuple[list, asyncio.Future]] = []
        self._flush_scheduled = False
        self._inflight: deque[tuple[asyncio.Task, list]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # txids must not repeat across restarts: start from the clock
        self._txid = time.time_ns() // 1000

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._complete(), name="writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task, batch in self._inflight:
            task.cancel()
            _fail(batch, None)
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

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        # The journal assigns positions when the task starts; tasks start in creation
        # order, so journal order is submission order.  Commits are not awaited here: the
        # journal batches whatever arrives while an fsync is in flight (group commit).
        task = asyncio.ensure_future(self.inst.journal.commit(self._entries(batch)))
        self._inflight.append((task, batch))
        self._wake.set()

    def _entries(self, batch: list) -> list:
        make = self.inst.journal_entry
        entries = []
        for ops, _ in batch:
            self._txid += 1
            txid = self._txid
            for op, db, gname, subs, value in ops:
                entries.append(make(txid, db, op, gname, subs, None if op == KILL else value))
        return entries

    async def _complete(self) -> None:
        """Apply committed batches to the stores in journal order, then answer (after the
        backup's ack when there is an Active backup)."""
        inst = self.inst
        inflight = self._inflight
        while True:
            await self._wake.wait()
            self._wake.clear()
            while inflight:
                task, batch = inflight[0]
                try:
                    records = await task
                    inst.apply_records(records)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("journal commit failed; %d requests refused", len(batch))
                    _fail(
                        batch, RequestError(ErrorCode.UNAVAILABLE, f"journal write failed: {exc}")
                    )
                    inflight.popleft()
                    continue
                inflight.popleft()
                waiter = inst.replicator.ack_waiter(records[-1].end) if records else None
                if waiter is None:
                    _resolve(batch)
                else:
                    waiter.add_done_callback(lambda _f, b=batch: _resolve(b))


def _resolve(batch: list) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_result(None)


def _fail(batch: list, exc: Exception | None) -> None:
    for _, fut in batch:
        if not fut.done():
            if exc is None:
                fut.cancel()
            else:
                fut.set_exception(exc)
