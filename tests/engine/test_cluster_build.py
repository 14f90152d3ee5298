"""`python -m engine cluster build`: a whole TLS mirror built through the agents alone, from a
build plan, as real processes (engine/cluster/build.py); and the plan's checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.client.app import Client
from engine.cluster.hosts import build_running, clear_build
from engine.cluster.launcher import is_running
from engine.cluster.plan import load_plan, parse_plan
from engine.cluster.watch import BuildError
from engine.member.config import ConfigError
from engine.wire.tls import superserver_client_context
from tests.engine.cluster_fixtures import ROOT, agent_for, cluster_cli, free_ports, log_tails

MEMBERS = {"A": "failover", "B": "failover", "DR": "dr", "REP": "ro_reporting"}
HOSTS = {"h1": ["A", "DR"], "h2": ["B", "REP"]}
DATABASES = {"USER": "create", "APP": "download", "LEGACY": "restore"}


def plan_text(ports: list[int]) -> str:
    ports = iter(ports)
    lines = ["[mirror]", 'name = "BUILT"', 'data_root = "var"', "tls = true", ""]
    for host, instances in HOSTS.items():
        lines += ["[[hosts]]", f'name = "{host}"', f"agent = {next(ports)}"]
        lines += [f"instances = {json.dumps(instances)}", ""]
    for name, mtype in MEMBERS.items():
        lines += ["[[members]]", f'name = "{name}"', f'type = "{mtype}"']
        lines.append(f"superserver = {next(ports)}")
        if mtype == "failover":
            lines.append(f"private = {next(ports)}")
        lines.append("")
    for db, how in DATABASES.items():
        lines += ["[[databases]]", f'name = "{db}"', f'how = "{how}"', "rows = 300", ""]
    return "\n".join(lines)


@pytest.fixture
def built(tmp_path):
    """The plan built by a real `cluster build` process; `cluster down` at the end."""
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(free_ports(len(HOSTS) + len(MEMBERS) + 2)))
    build = cluster_cli("build", "-f", str(plan))
    state_path = tmp_path / "var" / "cluster-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    try:
        assert build.returncode == 0, build.stdout + build.stderr + log_tails(tmp_path / "var")
        yield plan, state, build.stdout
    finally:
        if state_path.exists():
            cluster_cli("down", "-f", str(plan))
        for e in (state or {}).get("processes", []):
            assert not is_running(e), f"{e['kind']} {e['name']} still runs"


def superserver(plan: Path, member: str) -> str:
    return load_plan(plan).member(member).superserver


def reach(plan: Path, member: str) -> dict:
    """A TLS mirror's superservers speak TLS: reached as its host's tools reach it."""
    loaded = load_plan(plan)
    return {"ssl": superserver_client_context(loaded.data_dir(loaded.member(member)))}


@pytest.mark.timeout(240)
def test_a_tls_mirror_with_three_databases_is_built_through_the_agents_then_taken_down(built):
    plan, state, out = built
    assert "mirror BUILT built in" in out
    for step in ("B joined as Failover (pending authorization)", "B authorized on A"):
        assert step in out
    assert "LEGACY: restored on DR: Needs Activation -> activated" in out
    assert "APP: created on REP: Downloading" in out

    def status(member: str) -> dict:
        with Client(
            [superserver(plan, member)], follow_primary=False, timeout=10, **reach(plan, member)
        ) as c:
            return c.status()

    b = status("B")
    assert (b["status"], b["journal_transfer"]) == ("Backup", "Active")
    assert status("DR")["status"] == "Connected"
    assert status("REP")["status"] == "Connected"
    primary_view = {m["member"]: m for m in status("A")["members"]}
    assert primary_view["B"]["journal_transfer"] == "Active"
    assert all(m["authorized"] for m in primary_view.values())
    assert status("A")["tls"]["subject_dn"] == "CN=A,O=Mirror Portal"

    # the status command reads the build plan as it reads a mirror file
    command = [sys.executable, "-m", "engine", "status", "--config", str(plan), "--json"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["mirror"] == "BUILT"
    rows = {row["member"]: row["status"] for row in report["members"]}
    assert rows == {"A": "Primary", "B": "Backup", "DR": "Connected", "REP": "Connected"}

    # through the agents, with the launcher's own certificate
    for host, names in HOSTS.items():
        with agent_for(state, host) as agent:
            assert agent.health()["identity"] == "CN=cluster-launcher,O=Mirror Portal"
            for name in names:
                rows = {r["name"]: r["status"] for r in agent.databases(name)["databases"]}
                want = "Normal" if name == "A" else "Dejournaling"
                assert rows == dict.fromkeys(DATABASES, want), name
    # and with the portal's, which the build made for it and every agent admits too
    assert "PORTAL_AGENT_TLS_CERT=" + state["portal"]["cert"] in out
    for host, names in HOSTS.items():
        with agent_for(state, host, "portal") as agent:
            assert agent.health()["identity"] == "CN=portal,O=Mirror Portal"
            assert agent.mirror_info(names[0])["name"] == "BUILT"
    assert build_running(load_plan(plan))

    for db in DATABASES:
        digests = set()
        for member in MEMBERS:
            with Client(
                [superserver(plan, member)], follow_primary=False, timeout=10, **reach(plan, member)
            ) as c:
                digests.add(c.admin("digest", db))
        assert len(digests) == 1, f"{db} differs between members"

    # the restored database holds its existing data, what was written before the copy,
    # and what only the journal held
    with Client(
        [superserver(plan, "REP")], follow_primary=False, timeout=10, **reach(plan, "REP")
    ) as c:
        assert c.get("LEGACY", "Existing", (7,)) == "existing 7"
        assert c.get("LEGACY", "Build", ("after-copy", 299)) == "after-copy 299"

    again = cluster_cli("build", "-f", str(plan))
    assert again.returncode == 1
    assert "is running" in again.stderr and "cluster down" in again.stderr
    with pytest.raises(BuildError, match="is running"):
        clear_build(load_plan(plan))

    down = cluster_cli("down", "-f", str(plan))
    assert down.returncode == 0, down.stderr
    assert "6 processes stopped" in down.stdout  # 4 instances, 2 agents
    for e in state["processes"]:
        assert not is_running(e), f"{e['kind']} {e['name']} still runs after down"
    assert not build_running(load_plan(plan))

    # what a fresh build needs gone, and only that
    (plan.parent / "var" / "notes.txt").write_text("kept")
    clear_build(load_plan(plan))
    assert sorted(p.name for p in (plan.parent / "var").iterdir()) == ["notes.txt"]


def plan_data(**changes) -> dict:
    data = {
        "mirror": {"name": "M", "data_root": "var", "tls": True},
        "hosts": [{"name": "h", "agent": 7000, "instances": ["A", "R"]}],
        "members": [
            {"name": "A", "type": "failover", "superserver": 7001, "private": 7002},
            {"name": "R", "type": "ro_reporting", "superserver": 7003},
        ],
        "databases": [{"name": "USER", "how": "create"}],
    }
    for key, change in changes.items():
        change(data[key])
    return data


@pytest.mark.parametrize(
    "key, change, message",
    [
        ("mirror", lambda m: m.update(colour="blue"), r"mirror.colour: unknown setting"),
        ("mirror", lambda m: m.update(tls="yes"), r"mirror.tls: must be true or false"),
        ("members", lambda ms: ms[0].pop("private"), r"members\[0\].private"),
        ("members", lambda ms: ms[1].update(superserver=7000), "distinct"),
        ("hosts", lambda hs: hs[0].update(instances=["A"]), "no host runs R"),
        ("hosts", lambda hs: hs[0].update(instances=["A", "R", "X"]), "no member or spare named X"),
        ("databases", lambda ds: ds[0].update(how="clone"), "create, download, restore"),
        ("databases", lambda ds: ds[0].update(members=["R"]), "missing A"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_key(tmp_path, key, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_plan(plan_data(**{key: change}), tmp_path, tmp_path / "plan.toml")


def test_a_reporting_async_may_hold_only_some_databases(tmp_path):
    data = plan_data(databases=lambda ds: ds[0].update(members=["A"]))
    plan = parse_plan(data, tmp_path, tmp_path / "plan.toml")
    assert plan.databases[0].members == ["A"] and plan.primary.name == "A"
    assert plan.data_dir(plan.member("r")) == (tmp_path / "var" / "h" / "R").resolve()


def test_up_with_a_plan_and_build_with_a_mirror_file_say_which_command_fits():
    up = cluster_cli("up", "-f", str(ROOT / "examples" / "mirror.toml"))
    assert up.returncode == 2 and "use 'cluster build" in up.stderr
    build = cluster_cli("build", "-f", str(ROOT / "examples" / "cluster.toml"))
    assert build.returncode == 2 and "for 'cluster up', not a build plan" in build.stderr


def test_the_example_plan_builds_the_mirror_of_the_goal():
    plan = load_plan(ROOT / "examples" / "mirror.toml")
    assert plan.tls and plan.primary.name == "MIRRORA"
    assert sorted(m.type for m in plan.members) == ["dr", "failover", "failover", "ro_reporting"]
    assert sorted(d.how for d in plan.databases) == ["create", "download", "restore"]
