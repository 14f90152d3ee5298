"""A real mirror for the live monitor's tests: `python -m engine cluster build` starts agents and
instances as processes (A primary, B backup, DR async, on two hosts, TLS), once for the whole
tests/monitor package (a build and its `cluster down` take 6-7 s); each module gets it whole
(whatever a test killed and did not start again is started again, and every member is back in
its role, B Active); each test imports it into its own portal database with
`manage.py ensure_demo_mirror`.

tests/monitor/conftest.py imports the fixtures for every module of the package (the shared
cluster is package-scoped, so it is built once however many modules take `live_cluster`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from engine.client.agent import AgentClient
from engine.client.errors import AgentConnectionError, AgentError
from engine.cluster.launcher import is_running
from tests.engine.cluster_fixtures import free_ports

ROOT = Path(__file__).resolve().parents[2]
HOSTS = {"alpha": ["A"], "beta": ["B", "DR"]}
MEMBERS = {"A": "failover", "B": "failover", "DR": "dr"}


def plan_text(ports) -> str:
    ports = iter(ports)
    lines = ["[mirror]", 'name = "LIVE"', 'data_root = "var"', "tls = true", ""]
    for host, instances in HOSTS.items():
        lines += ["[[hosts]]", f'name = "{host}"', f"agent = {next(ports)}"]
        lines += [f"instances = {json.dumps(instances)}", ""]
    for name, mtype in MEMBERS.items():
        lines += ["[[members]]", f'name = "{name}"', f'type = "{mtype}"']
        lines.append(f"superserver = {next(ports)}")
        if mtype == "failover":
            lines.append(f"private = {next(ports)}")
        lines.append("")
    lines += ["[[databases]]", 'name = "ORDERS"', 'how = "create"', "rows = 10", ""]
    return "\n".join(lines)


def cluster(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


class LiveCluster:
    def __init__(self, plan: Path, state: dict):
        self.plan = plan
        self.state = state
        self.state_file = plan.parent / "var" / "cluster-state.json"
        self.restarted: list[subprocess.Popen] = []
        self.killed: dict[tuple[str, str], list[str]] = {}  # (kind, name) -> its argv

    def agent(self, host: str) -> AgentClient:
        """A client of `host`'s agent with the portal's certificate."""
        ident = self.state["portal"]
        return AgentClient(
            self.state["agents"][host],
            cert=ident["cert"],
            key=ident["key"],
            ca=ident["ca"],
            timeout=5,
        )

    def process(self, name: str, kind: str = "instance") -> dict:
        return next(e for e in self.state["processes"] if e["kind"] == kind and e["name"] == name)

    def kill(self, name: str, kind: str = "instance") -> list[str]:
        """SIGKILL the instance (or agent) `name`; its command line, to start it again."""
        entry = self.process(name, kind)
        argv = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().split(b"\0")[:-1]
        os.kill(entry["pid"], signal.SIGKILL)
        self.killed[(kind, name)] = [a.decode() for a in argv]
        deadline = time.monotonic() + 10
        while is_running(entry) and time.monotonic() < deadline:
            time.sleep(0.02)
        return [a.decode() for a in argv]

    def start_again(self, name: str, argv: list[str], kind: str = "instance") -> None:
        entry = self.process(name, kind)
        log = open(entry["log"], "ab")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        entry["pid"] = proc.pid  # so the teardown stops this one
        self.state_file.write_text(json.dumps(self.state, indent=2))
        self.restarted.append(proc)
        self.killed.pop((kind, name), None)

    def restore(self, timeout: float = 60.0) -> None:
        """Start again what a test killed and left down, then wait until every agent answers
        and every member is in its role as built: A Primary, B Backup and Active, DR
        Connected (what the tests of the next module start from)."""
        for (kind, name), argv in list(self.killed.items()):
            self.start_again(name, argv, kind)
        hosts = {name: host for host, names in HOSTS.items() for name in names}
        want = {"A": ("Primary", "N/A"), "B": ("Backup", "Active"), "DR": ("Connected", None)}

        def in_role(name: str) -> bool:
            with self.agent(hosts[name]) as api:
                row = api.databases(name)
            status, transfer = want[name]
            return row.get("status") == status and transfer in (None, row.get("journal_transfer"))

        def healthy() -> bool:
            try:
                return all(in_role(name) for name in MEMBERS)
            except (AgentError, AgentConnectionError, OSError):
                return False

        wait_for(healthy, timeout, "the live cluster back as built (A Primary, B Backup Active)")


@pytest.fixture(scope="package")
def shared_live_cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("live")
    plan = directory / "plan.toml"
    plan.write_text(plan_text(free_ports(len(HOSTS) + 2 * len(MEMBERS))))
    build = cluster("build", "-f", str(plan))
    state_path = directory / "var" / "cluster-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    site = LiveCluster(plan, state)
    try:
        assert build.returncode == 0, build.stdout + build.stderr
        yield site
    finally:
        if state_path.exists():
            cluster("down", "-f", str(plan))
        for proc in site.restarted:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def live_cluster(shared_live_cluster):
    """The package's cluster, as built, for the tests of one module."""
    shared_live_cluster.restore()
    return shared_live_cluster


@pytest.fixture
def live_portal(live_cluster, settings, monkeypatch, transactional_db):
    """The cluster imported into this test's portal database, the portal holding the
    certificate the build made for it (as `make run` arranges)."""
    for key, value in live_cluster.state["portal"].items():
        monkeypatch.setenv(f"PORTAL_AGENT_TLS_{key.upper()}", value)
    settings.PORTAL_AGENT_TLS = dict(live_cluster.state["portal"])
    out = io.StringIO()
    call_command("ensure_demo_mirror", "--state", str(live_cluster.state_file), stdout=out)
    assert "imported from" in out.getvalue(), out.getvalue()
    return live_cluster


@pytest.fixture
def collector(live_portal):
    """A collector following the live cluster, on a thread of the test process (so it shares
    the test database and the in-memory channel layer with `asgi_server`)."""
    from monitor.collector import Collector

    running = Collector(holder="test")
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield running
    running.stop()
    thread.join(10)


def wait_for(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
