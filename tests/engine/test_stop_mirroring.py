"""Stop / start mirroring on a member (guide §5.8): status Stopped, no automatic restart, kept
across a restart of the member until started again; dejournaling controls."""

import json
import subprocess
import sys

import pytest

from engine.client.app import EngineError
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


def test_a_paused_database_stays_paused_across_a_restart_until_resumed(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    admin(cluster, "B", "pause_database", "USER")
    write(cluster, "held")
    cluster.stop("B")
    cluster.start("B")
    rows = {r["name"]: r["status"] for r in cluster.status("B")["databases"]}
    assert rows == {"USER": "Dejournaling Stopped", "APP": "Dejournaling"}
    with cluster.client("A") as c:
        want = c.admin("digest", "USER")
    assert admin(cluster, "B", "digest", "USER") != want
    admin(cluster, "B", "resume_database", "USER")
    wait_for(lambda: admin(cluster, "B", "digest", "USER") == want, what="USER applied on B")
    cluster.stop("B")
    cluster.start("B")
    rows = {r["name"]: r["status"] for r in cluster.status("B")["databases"]}
    assert rows == {"USER": "Dejournaling", "APP": "Dejournaling"}


def test_starting_a_stopped_dejournaler_leaves_a_paused_database_paused(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    admin(cluster, "B", "pause_database", "USER")
    admin(cluster, "B", "dejournal_stop")
    write(cluster, "held")
    cluster.stop("B")
    cluster.start("B")
    with cluster.client("A") as c:
        want = {db: c.admin("digest", db) for db in ("USER", "APP")}
    admin(cluster, "B", "dejournal_start")
    wait_for(lambda: admin(cluster, "B", "digest", "APP") == want["APP"], what="APP applied")
    assert admin(cluster, "B", "digest", "USER") != want["USER"]
    admin(cluster, "B", "resume_database", "USER")
    wait_for(lambda: admin(cluster, "B", "digest", "USER") == want["USER"], what="USER applied")


def test_command_line_stops_and_starts_mirroring_and_mounts_with_json_options(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    cmd = [sys.executable, "-m", "engine", "admin", "--config", str(cluster.path), "--member", "B"]
    out = subprocess.run(cmd + ["stop_mirroring"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"status": "Stopped", "already": False}
    refused = subprocess.run(cmd + ["clear_failover_db", "USER"], capture_output=True, text=True)
    assert refused.returncode == 1 and "never allowed on a DR async" in refused.stderr
    subprocess.run(cmd + ["dismount", "APP"], check=True, capture_output=True)
    st = cluster.status("B")
    assert st["dejournaling"] == "Warning! Some databases need attention."
    subprocess.run(cmd + ["start_mirroring"], check=True, capture_output=True)
    arg = json.dumps({"name": "APP", "catchup": True})
    subprocess.run(cmd + ["mount", arg], check=True, capture_output=True)
    write(cluster, "cli")
    cluster.wait_status("B", "status", "Connected")
    cluster.wait_converged("B")
    bad = subprocess.run(cmd + ["mount", "{oops"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def test_stopped_dejournaling_on_a_dr_stays_stopped_across_a_restart(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    admin(cluster, "B", "dejournal_stop")
    write(cluster, "held")
    cluster.stop("B")
    cluster.start("B")
    cluster.wait_status("B", "journal_transfer", "Caught up")
    st = cluster.status("B")
    assert st["dejournaling"] == "Warning! Dejournaling is stopped."
    assert {r["status"] for r in st["databases"]} == {"Dejournaling Stopped"}
    with cluster.client("B") as c:
        assert c.get("USER", "S", ("held", 1)) is None  # not applied at start-up either
    admin(cluster, "B", "dejournal_start")
    write(cluster, "more")
    cluster.wait_converged("B")
