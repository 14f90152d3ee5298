"""Stop / start mirroring on a member (SPEC §5.8): status Stopped, no automatic restart, kept
across a restart of the member until started again; dejournaling controls."""

import pytest

from engine.client import EngineError
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def admin(cluster, member: str, action: str, arg=None):
    with cluster.client(member) as c:
        return c.admin(action, arg)


def write(cluster, tag: str, n: int = 100) -> None:
    with cluster.client() as c:
        c.pipeline([("set", "USER", "S", (tag, i), i) for i in range(n)])
        c.pipeline([("set", "APP", "S", (tag, i), str(i)) for i in range(n)])


def primary_row(cluster, member: str) -> dict:
    return {r["member"]: r for r in cluster.status("A")["members"]}[member]


def test_stopped_backup_stays_stopped_across_a_restart_until_started(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    assert admin(cluster, "B", "stop_mirroring") == {"status": "Stopped", "already": False}
    assert admin(cluster, "B", "stop_mirroring")["already"] is True
    assert cluster.status("B")["status"] == "Stopped"
    wait_for(lambda: primary_row(cluster, "B")["status"] == "Down", what="A sees B down")
    write(cluster, "while-stopped")  # the primary carries on without its backup
    cluster.stop("B")
    cluster.start("B")
    st = cluster.status("B")
    assert st["status"] == "Stopped"
    assert st["journal_end"] < cluster.status("A")["journal_end"]
    assert primary_row(cluster, "B")["status"] == "Down"
    assert admin(cluster, "B", "start_mirroring")["already"] is False
    cluster.wait_status("B", "status", "Backup")
    cluster.wait_backup_active()
    cluster.wait_converged("B")
    write(cluster, "after")
    cluster.wait_converged("B")
    # started stays started across a restart
    cluster.stop("B")
    cluster.start("B")
    cluster.wait_status("B", "status", "Backup")


def test_stopped_async_reconnects_as_connected_and_catches_up(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    admin(cluster, "B", "stop_mirroring")
    write(cluster, "gap")
    assert cluster.status("B")["status"] == "Stopped"
    assert admin(cluster, "B", "start_mirroring") == {"status": "Synchronizing", "already": False}
    assert admin(cluster, "B", "start_mirroring")["already"] is True
    cluster.wait_status("B", "status", "Connected")
    cluster.wait_converged("B")


def test_dejournal_stop_and_pause_are_refused_where_they_do_not_apply(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    with cluster.client("B") as c, pytest.raises(EngineError) as info:
        c.admin("dejournal_stop")
    assert info.value.code == "refused" and "backup" in info.value.details["reason"]
    with cluster.client("A") as c, pytest.raises(EngineError) as info:
        c.admin("start_mirroring")
    assert "primary" in info.value.details["reason"]
    admin(cluster, "C", "dismount", "APP")
    with cluster.client("C") as c, pytest.raises(EngineError) as info:
        c.admin("pause_database", "APP")
    assert "Database Dismounted" in info.value.details["reason"]
    admin(cluster, "C", "pause_database", "USER")
    rows = {r["name"]: r["status"] for r in cluster.status("C")["databases"]}
    assert rows == {"USER": "Dejournaling Stopped", "APP": "Database Dismounted"}
    admin(cluster, "C", "resume_database", "USER")
    admin(cluster, "C", "mount", {"name": "APP", "catchup": True})
    write(cluster, "x")
    cluster.wait_converged("C")
    rows = {r["name"]: r["status"] for r in cluster.status("C")["databases"]}
    assert rows == {"USER": "Dejournaling", "APP": "Dejournaling"}
