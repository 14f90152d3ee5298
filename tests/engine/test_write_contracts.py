"""What an answered write promises, with real member processes: the Active backup holds it
in its journal (the primary waits for the backup's acknowledgement, SPEC §3.1), and the
journal was fsynced before the answer (the STATUS reply's journal_fsync_count)."""

import pytest

from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)


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
