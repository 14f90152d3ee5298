"""The primary's trouble state in Agent Controlled mode (guide §3.3.5.1; docs/failover.md): after
losing its Active backup the primary commits nothing new and answers no write waiting for that
backup until the backup says it knows it is no longer Active, or the trouble timeout (2 x QoS)
passes.  Real member processes."""

import threading
import uuid

import pytest

from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.test_write_contracts import journal_bytes

pytestmark = pytest.mark.timeout(90)


def status_of(cluster, member: str = "A") -> str:
    return cluster.status(member)["status"]


class Write:
    """One client write on a thread of its own, to see when (and whether) it is answered."""

    def __init__(self, cluster, value: str):
        self.value = value
        self.answered = threading.Event()
        self.error: Exception | None = None
        threading.Thread(target=self._run, args=(cluster,), daemon=True).start()

    def _run(self, cluster):
        try:
            with cluster.client("A", timeout=60) as c:
                c.set("USER", "Trouble", (self.value,), self.value)
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.answered.set()


def test_a_primary_that_loses_its_active_backup_commits_nothing_until_the_trouble_timeout(
    make_cluster,
):
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 1500})
    cluster.wait_backup_active()
    cluster.pause("B")  # alive but silent: it will not say hello again
    try:
        waiting = Write(cluster, f"waiting-{uuid.uuid4().hex}")
        wait_for(lambda: status_of(cluster) == "In Trouble", 10, "A In Trouble")
        # a write sent in trouble is not even journaled
        later = Write(cluster, f"later-{uuid.uuid4().hex}")
        assert not later.answered.wait(1.0) and not waiting.answered.is_set()
        assert later.value.encode() not in journal_bytes(cluster, "A")
        assert status_of(cluster) == "In Trouble"
        # then the trouble timeout passes: both are committed and answered, B no longer Active
        assert waiting.answered.wait(15) and later.answered.wait(15)
        assert (waiting.error, later.error) == (None, None)
        assert later.value.encode() in journal_bytes(cluster, "A")
        assert status_of(cluster) == "Primary"
        log = cluster.log("A")
        assert "primary in trouble: no new commits until backup B" in log
        assert "out of trouble" in log and "the trouble timeout (2 x QoS) passed" in log
    finally:
        cluster.resume("B")
    cluster.wait_backup_active(timeout=20)


def test_the_trouble_ends_when_the_lost_backup_says_hello_again(make_cluster):
    # a trouble timeout far beyond the test: only B's hello can end it
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 20_000})
    cluster.wait_backup_active()
    cluster.kill9("B")
    wait_for(lambda: status_of(cluster) == "In Trouble", 10, "A In Trouble")
    held = Write(cluster, f"held-{uuid.uuid4().hex}")
    assert not held.answered.wait(1.0)
    cluster.start("B")
    assert held.answered.wait(30) and held.error is None
    assert "backup B reconnected, no longer Active" in cluster.log("A")
    assert status_of(cluster) == "Primary"
    cluster.wait_backup_active(timeout=20)


def test_losing_a_backup_that_is_not_active_is_no_trouble(make_cluster):
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 1000})
    cluster.wait_backup_active()
    cluster.kill9("B")
    wait_for(lambda: status_of(cluster) == "In Trouble", 10, "A In Trouble")
    wait_for(lambda: status_of(cluster) == "Primary", 10, "A out of trouble")
    # B is gone and not Active: a primary without an Active backup writes at once
    done = Write(cluster, "alone")
    assert done.answered.wait(5) and done.error is None
    assert status_of(cluster) == "Primary"
