"""kill -9 of the primary under load: every acknowledged write survives the restart."""

import asyncio
import threading

import pytest

from engine.client.app import AsyncClient, EngineError
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)


class Load:
    """Concurrent writers on their own event loop thread; records what was acknowledged."""

    def __init__(self, addresses, writers=8):
        self.addresses = addresses
        self.writers = writers
        self.acked: dict[tuple, str] = {}
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _writer(self, w: int) -> None:
        c = AsyncClient(self.addresses, retries=0, timeout=5)
        try:
            await c.connect()
        except EngineError:
            return
        i = 0
        while not self.stop.is_set():
            value = f"w{w}-{i}-" + "x" * 90
            try:
                await c.set("USER", "Load", (w, i), value)
            except (EngineError, OSError):
                self.failed += 1
                return  # the primary is gone: stop writing
            self.acked[(w, i)] = value
            i += 1

    async def _run(self) -> None:
        await asyncio.gather(*(self._writer(w) for w in range(self.writers)))


def test_acknowledged_writes_survive_kill9_of_the_primary_under_load(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    load = Load([cluster.address("A")])
    load.thread.start()
    wait_for(lambda: len(load.acked) >= 1500, timeout=30, what="1500 acknowledged writes")
    cluster.kill9("A")
    # no stop signal: each writer writes until a write fails, so every one saw the kill land
    # (with a stop set at once, a writer starved of the CPU could read the replies sent just
    # before the kill, then the stop, and end without a failed write)
    load.thread.join(30)
    load.stop.set()
    assert not load.thread.is_alive(), "writers still running after the kill"
    acked = dict(load.acked)
    assert len(acked) >= 1500 and load.failed > 0, (len(acked), load.failed)
    cluster.start("A")
    # A, the last primary, negotiates with B before it is primary again: on a loaded machine
    # that can outlast the client's own retries
    wait_for(lambda: cluster.role("A") == "primary", timeout=30, what="A primary again")
    with cluster.client() as c:
        got = c.pipeline([("get", "USER", "Load", k) for k in acked])
    missing = [k for k, v in zip(acked, got, strict=True) if acked[k] != v]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    # the restarted primary opened a new journal file and the backup follows it again
    st = cluster.status("A")
    assert st["journal_end"][0] >= 2, st
    cluster.wait_backup_active(timeout=20)
    with cluster.client() as c:
        c.set("USER", "AfterRestart", (1,), "ok")
        end = c.status()["journal_end"]
    b_end = cluster.status("B")["journal_end"]
    assert b_end >= end, (b_end, end, cluster.log("B")[-2000:])
    # a batch shipped to the backup just before the primary died unwritten is cut from the
    # backup when it reconnects, so the two converge
    cluster.wait_converged("B")
