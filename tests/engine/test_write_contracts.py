"""What an answered write promises, with real member processes: the Active backup holds it
in its journal (the primary waits for the backup's acknowledgement, guide §3.3.2.1), and the
journal was fsynced before the answer (the STATUS reply's journal_fsync_count)."""

import threading
import uuid
from pathlib import Path

import pytest

from engine.storage.journal_codec import file_content
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def journal_bytes(cluster, member: str) -> bytes:
    directory = Path(cluster.cfg.member(member).data_dir) / "journal"
    # the journal's content: not the zeros a running primary writes ahead of its end
    return b"".join(file_content(p.read_bytes()) for p in sorted(directory.glob("MIRROR-*")))


def backup_row(cluster, backup: str = "B", primary: str = "A") -> dict:
    return {r["member"]: r for r in cluster.status(primary)["members"]}[backup]


def test_write_waits_for_a_stopped_active_backup(make_cluster):
    # a QoS timeout far beyond the test: the primary must wait rather than revoke Active
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 60_000})
    with cluster.client() as c:
        c.set("USER", "Held", (0,), "before")  # an ack from B, whatever its timing
    cluster.wait_backup_active()
    marker = f"held-{uuid.uuid4().hex}"
    before = cluster.status("A")["journal_end"]
    answered = threading.Event()
    errors: list[Exception] = []

    def write():
        try:
            with cluster.client("A", timeout=60) as c:
                c.set("USER", "Held", (1,), marker)
        except Exception as exc:  # reported by the test thread below
            errors.append(exc)
        finally:
            answered.set()

    cluster.pause("B")
    try:
        threading.Thread(target=write, daemon=True).start()
        # the write is in the primary's journal ...
        end = wait_for(
            lambda: (e := cluster.status("A")["journal_end"]) > before and e,
            what="the write in A's journal",
        )
        # ... and stays unanswered while the Active backup cannot acknowledge it
        assert not answered.wait(2.0), f"answered without the stopped backup's ack ({errors})"
        assert backup_row(cluster)["journal_transfer"] == "Active"
        assert marker.encode() not in journal_bytes(cluster, "B")
    finally:
        cluster.resume("B")
    assert answered.wait(20), "the write is still unanswered after the backup resumed"
    assert errors == []
    # answered once the backup acknowledged it: the record is in the backup's journal
    assert cluster.status("B")["journal_end"] >= end
    assert marker.encode() in journal_bytes(cluster, "B")
    assert backup_row(cluster)["journal_transfer"] == "Active"


def test_acknowledged_writes_are_fsynced_on_the_primary_and_then_on_the_backup(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    primary_before = cluster.status("A")["journal_fsync_count"]
    backup_before = cluster.status("B")["journal_fsync_count"]
    with cluster.client() as c:
        # one write at a time: each is a journal batch of its own, answered after its fsync
        for i in range(20):
            c.set("USER", "Durable", (i,), "d" * 100)
    assert cluster.status("A")["journal_fsync_count"] >= primary_before + 20
    # the backup acknowledges receipt and makes the received journal durable soon after
    wait_for(
        lambda: cluster.status("B")["journal_fsync_count"] > backup_before,
        what="B to fsync the journal it received",
    )
