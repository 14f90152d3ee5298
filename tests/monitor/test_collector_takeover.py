"""Several collectors (`manage.py runmonitor`, each a process, on one portal database): one
holds the lease and collects; when it is SIGKILLed another takes over within seconds, and what
happened while nobody collected is in the history once — not lost, not doubled."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.monitor.live_cluster import ROOT, wait_for

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture
def portal_files(live_cluster, tmp_path):
    """A portal database of its own (as `make run` keeps one), with the cluster imported."""
    env = dict(os.environ, PORTAL_VAR_DIR=str(tmp_path), PORTAL_LOG_LEVEL="INFO")
    for name in ("DATABASE_URL", "REDIS_URL"):  # the embedded default
        env.pop(name, None)
    env.update(
        {f"PORTAL_AGENT_TLS_{k.upper()}": v for k, v in live_cluster.state["portal"].items()}
    )
    # `manage.py migrate` then `manage.py ensure_demo_mirror`, in one process (one Django start)
    commands = [
        ["migrate", "--noinput", "-v0"],
        ["ensure_demo_mirror", "--state", str(live_cluster.state_file)],
    ]
    script = (
        "import json, sys, django; django.setup(); from django.core.management import "
        "call_command; [call_command(*args) for args in json.loads(sys.argv[1])]"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return env, tmp_path / "portal.sqlite3"


def start_collector(env, name: str, log_dir) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(
        [sys.executable, "manage.py", "runmonitor", "--name", name],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def query(path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(path, timeout=10) as db:
        return db.execute(sql, args).fetchall()


def holder(path) -> str | None:
    rows = query(path, "select holder from monitor_lease where expires_at > datetime('now')")
    return rows[0][0] if rows else None


def status(path, member: str) -> str | None:
    rows = query(
        path,
        "select s.status from monitor_memberstate s join members_member m on m.id = s.member_id"
        " where m.name = ?",
        member,
    )
    return rows[0][0] if rows else None


def b_status_events(path) -> list[tuple[str, str]]:
    return query(
        path,
        "select before, after from monitor_event where member_name = 'B' and kind = 'status'"
        " order by at, id",
    )


def test_a_second_collector_takes_over_and_the_history_has_each_change_once(
    live_cluster, portal_files, tmp_path
):
    env, database = portal_files
    one = start_collector(env, "one", tmp_path)
    wait_for(lambda: holder(database) == "one", timeout=15, what="collector one leading")
    two = start_collector(env, "two", tmp_path)
    try:
        wait_for(lambda: status(database, "B") == "Backup", timeout=20, what="B read")
        # two is up and waiting for the lease (it asks at once, then every second)
        wait_for(
            lambda: "collector two started" in (tmp_path / "two.log").read_text(),
            timeout=30,
            what="collector two up",
        )
        assert holder(database) == "one"

        one.send_signal(signal.SIGKILL)
        one.wait(10)
        argv = live_cluster.kill("B")  # while nobody collects
        started = time.monotonic()
        wait_for(lambda: holder(database) == "two", timeout=10, what="collector two leading")
        took_over_s = time.monotonic() - started
        wait_for(lambda: status(database, "B") == "Down", timeout=10, what="B down, seen by two")

        assert took_over_s < 6, f"takeover took {took_over_s:.1f} s"
        events = b_status_events(database)
        # killed: refused at once (Down), or first no answer in time from the dying process
        assert events in (
            [("", "Backup"), ("Backup", "Down")],
            [("", "Backup"), ("Backup", "Error"), ("Error", "Down")],
        ), events

        live_cluster.start_again("B", argv)
        wait_for(lambda: status(database, "B") == "Backup", timeout=60, what="B backup again")
        events = b_status_events(database)
        assert len(events) == len(set(events)), events  # nothing written twice
        assert events[-1][1] == "Backup"
    finally:
        for proc in (one, two):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    log = (tmp_path / "two.log").read_text()
    assert "collector two holds the lease (epoch 2)" in log
