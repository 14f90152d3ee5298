"""Member status values (guide §5.1.1.1, §5.1.1.2) and the `status` command."""

import json
import re
import subprocess
import sys
import time

import pytest

from engine.member.status import FIRST_RATE, format_duration, format_time, render_table
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(90)

TYPES = ("failover", "failover", "dr", "ro_reporting", "rw_reporting")
DISCONNECTED = re.compile(r"^Disconnected on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def test_each_member_reports_its_type_status_transfer_and_dejournaling(make_cluster):
    cluster = make_cluster(TYPES)
    cluster.wait_backup_active()
    with cluster.client() as c:
        c.set("USER", "S", (1,), "x")
    expect = {
        "A": ("Failover", "Primary", "N/A", "N/A"),
        "B": ("Failover", "Backup", "Active", "Caught up"),
        "C": ("Disaster Recovery", "Connected", "Caught up", "Caught up"),
        "D": ("Read-Only Reporting", "Connected", "Caught up", "Caught up"),
        "E": ("Read-Write Reporting", "Connected", "Caught up", "Caught up"),
    }
    for name, want in expect.items():

        def fields(name=name):
            st = cluster.status(name)
            return (st["type"], st["status"], st["journal_transfer"], st["dejournaling"])

        wait_for(lambda name=name, want=want: fields(name) == want, what=f"{name} status {want}")

    def row(name):
        return {r["member"]: r for r in cluster.status("A")["members"]}[name]

    assert row("B")["journal_transfer"] == "Active"
    # the primary's view follows C's acknowledgement, a moment after C's own
    connected = ("Connected", "Caught up")
    wait_for(lambda: (row("C")["status"], row("C")["journal_transfer"]) == connected)


def test_incoming_rate_shows_dashes_first_then_compressed_and_plain_formats(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_backup_active()
    assert cluster.status("B")["incoming_journal_rate"] == FIRST_RATE
    assert cluster.status("C")["incoming_journal_rate"] == FIRST_RATE
    with cluster.client() as c:
        c.pipeline([("set", "USER", "R", (i,), "y" * 100) for i in range(300)])
    cluster.wait_converged("C")
    plain = cluster.status("B")["incoming_journal_rate"]
    assert re.fullmatch(r"\d+ KB/s \(\d+s interval\)", plain), plain
    zstd = cluster.status("C")
    assert re.fullmatch(
        r"\d+ KB/s network; \d+ KB/s journal; ratio \d+\.\d\d:1 \(\d+s interval\)",
        zstd["incoming_journal_rate"],
    ), zstd["incoming_journal_rate"]
    assert zstd["incoming_journal_figures"]["ratio"] > 1


def test_members_show_disconnected_on_time_when_the_primary_is_gone(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_backup_active()
    cluster.kill9("A")
    st = wait_for(
        lambda: (s := cluster.status("C"))["journal_transfer"].startswith("Disconnected") and s,
        what="DR notices the primary is gone",
    )
    assert DISCONNECTED.match(st["journal_transfer"]), st
    assert DISCONNECTED.match(st["dejournaling"]), st
    assert st["status"] == "Synchronizing"
    b = wait_for(
        lambda: (s := cluster.status("B"))["journal_transfer"].startswith("Disconnected") and s
    )
    assert b["status"] == "Synchronizing"


def test_primary_lists_a_killed_member_as_down_with_its_disconnection_time(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_status("C", "status", "Connected")
    cluster.kill9("C")

    def row():
        return {r["member"]: r for r in cluster.status("A")["members"]}["C"]

    r = wait_for(lambda: row()["status"] == "Down" and row(), what="primary sees C down")
    assert DISCONNECTED.match(r["journal_transfer"]), r


def test_durations_read_as_words():
    assert format_duration(0) == "0 seconds"
    assert format_duration(1) == "1 second"
    assert format_duration(59.4) == "59 seconds"
    assert format_duration(125) == "2 minutes 5 seconds"
    assert format_duration(3 * 3600 + 60) == "3 hours 1 minute"
    assert format_time(0) == "1970-01-01 00:00:00 UTC"


def test_table_has_the_status_monitor_header_and_columns():
    rows = [
        {
            "member": "A",
            "type": "Failover",
            "status": "Primary",
            "journal_transfer": "N/A",
            "dejournaling": "N/A",
        }
    ]
    rows.append(
        {
            "member": "B",
            "type": "Disaster Recovery",
            "databases": [{"name": "USER", "status": "Needs Catchup", "applied": None}],
            "missing_mirrored_databases": ["APP"],
        }
    )
    out = render_table(rows, "MIR")
    assert re.search(r"^Mirrored databases on B:\n  USER\s+Needs Catchup$", out, re.M), out
    assert "Missing mirrored databases on B: APP" in out
    assert "Mirrored databases on A" not in out
    assert out.startswith("Status of Mirror MIR at ")
    assert "Member Name+Type" in out and "Journal Transfer" in out and "Dejournaling" in out
    assert "  Failover" in out


def test_the_table_shows_failover_mode_arbiter_connection_no_failover_and_waiting():
    rows = [
        {
            "member": "A",
            "status": "Waiting",
            "failover_mode": "Agent Controlled",
            "arbiter_connection": "This member is not connected to the arbiter",
            "no_failover": True,
            "waiting_reason": "cannot reach its partner B",
        },
        {"member": "C", "status": "Connected"},  # an async has no failover mode
    ]
    out = render_table(rows, "MIR")
    assert "Failover mode on A: Agent Controlled" in out
    assert "Arbiter connection of A: This member is not connected to the arbiter" in out
    assert "No failover is set on A" in out
    assert "A is waiting: cannot reach its partner B" in out
    assert "on C" not in out


def test_status_command_prints_a_table_json_and_down_members(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_backup_active()
    cmd = [sys.executable, "-m", "engine", "status", "--config", str(cluster.path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
    assert "Status of Mirror TEST" in out
    assert "Failover mode on B: Agent Controlled" in out
    assert re.search(r"^A\s+Primary\s+N/A\s+N/A", out, re.M), out
    assert re.search(r"^B\s+Backup\s+Active\s+Caught up", out, re.M), out
    cluster.kill9("C")
    data = json.loads(
        subprocess.run(
            cmd + ["--json"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    )
    by = {r["member"]: r for r in data["members"]}
    assert by["C"]["status"] == "Down" and by["A"]["status"] == "Primary"
    one = subprocess.run(
        cmd + ["--member", "b", "--json"], capture_output=True, text=True, check=True
    )
    assert [r["member"] for r in json.loads(one.stdout)["members"]] == ["B"]


def test_admin_command_stops_and_starts_dejournaling_on_a_member(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    cmd = [sys.executable, "-m", "engine", "admin", "--config", str(cluster.path), "--member", "B"]
    assert subprocess.run(cmd + ["dejournal_stop"], capture_output=True, text=True).stdout == "ok\n"
    assert cluster.status("B")["dejournaling"] == "Warning! Dejournaling is stopped."
    subprocess.run(cmd + ["dejournal_start"], check=True, capture_output=True)
    cluster.wait_status("B", "dejournaling", "Caught up")
    bad = subprocess.run(cmd + ["explode"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown admin action 'explode'" in bad.stderr
    digest = subprocess.run(cmd + ["digest", "USER"], capture_output=True, text=True, check=True)
    assert len(json.loads(digest.stdout)) == 64


def test_frequent_status_queries_do_not_shorten_each_others_rate_interval(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.status("B")
    time.sleep(1.2)
    for _ in range(5):  # e.g. an agent polling every few milliseconds
        cluster.status("B")
    figures = cluster.status("B")["incoming_journal_figures"]
    assert figures["interval_s"] >= 1.0, figures
