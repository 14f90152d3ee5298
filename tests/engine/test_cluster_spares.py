"""Spare instances in a build plan: started beside the mirror with their certificate and TLS
files set through their agents, but joined to nothing, ready for a mirror made later in the
portal (engine/cluster/plan.py, build.py); and the plan's checks of them."""

from __future__ import annotations

import json

import pytest

from engine.client.app import Client
from engine.cluster.hosts import build_running
from engine.cluster.launcher import is_running, port_open
from engine.cluster.plan import PlanSpare, load_plan, parse_plan
from engine.member.config import ConfigError
from engine.wire.tls import superserver_client_context
from tests.engine.cluster_fixtures import ROOT, agent_for, cluster_cli, free_ports, log_tails

DN = "CN={},O=Mirror Portal"


def spare_plan(ports: list[int]) -> str:
    """One failover member; a spare with a private port on a host of its own, and one without
    beside the member."""
    agent1, agent2, a, a_private, spa, spa_private, spdr = ports
    return f"""
[mirror]
name = "FIRST"
data_root = "var"
tls = true

[[hosts]]
name = "h1"
agent = {agent1}
instances = ["A", "SPDR"]

[[hosts]]
name = "h2"
agent = {agent2}
instances = ["SPA"]

[[members]]
name = "A"
type = "failover"
superserver = {a}
private = {a_private}

[[spares]]
name = "SPA"
superserver = {spa}
private = {spa_private}

[[spares]]
name = "SPDR"
superserver = {spdr}
"""


@pytest.mark.timeout(240)
def test_a_spare_runs_with_its_certificate_in_no_mirror_until_down_stops_it(tmp_path):
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(spare_plan(free_ports(7)))
    plan = load_plan(plan_path)
    state_path = tmp_path / "var" / "cluster-state.json"

    build = cluster_cli("build", "-f", str(plan_path))

    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    try:
        assert build.returncode == 0, build.stdout + build.stderr + log_tails(tmp_path / "var")
        assert "spares among them: SPA, SPDR" in build.stdout
        tls_step = f"TLS set up on SPA (a spare, joined to no mirror): {DN.format('SPA')}"
        assert tls_step in build.stdout
        spa_line = next(line for line in build.stdout.splitlines() if line.startswith("  SPA "))
        assert "up, in no mirror" in spa_line and plan.instance("SPA").private in spa_line
        started = sorted((e["kind"], e["name"]) for e in state["processes"])
        assert started == [("agent", "h1"), ("agent", "h2")] + [
            ("instance", n) for n in ("A", "SPA", "SPDR")
        ]

        # what the portal's host check reads: up, in no mirror, a member of nothing, and
        # the certificate the build made for it
        with agent_for(state, "h2", "portal") as agent:
            (row,) = agent.instances()
        assert (row["name"], row["state"]) == ("SPA", "up")
        assert row["mirror"] is None and row["member"] is None
        assert row["certificate"]["subject_dn"] == DN.format("SPA")
        with agent_for(state, "h1") as agent:
            rows = {r["name"]: r for r in agent.instances()}
        assert rows["SPDR"]["mirror"] is None and rows["A"]["mirror"] == "FIRST"

        # the instance itself holds the TLS files the agent gave it (the agent's own
        # configuration only names the certificate); its superserver speaks TLS with them
        def reach(instance) -> dict:
            return {"ssl": superserver_client_context(plan.data_dir(instance))}

        for name in ("SPA", "SPDR"):
            spare = plan.instance(name)
            with Client([spare.superserver], follow_primary=False, timeout=10, **reach(spare)) as c:
                status = c.status()
            assert (status["type"], status["mirror"]) == ("Not Member", None)
            assert status["tls"]["subject_dn"] == DN.format(name)
        primary = plan.primary
        with Client([primary.superserver], follow_primary=False, timeout=10, **reach(primary)) as c:
            assert c.status()["members"] == []  # the primary knows of no other member
        # its private port is only kept for it: nothing binds it before it joins a mirror
        assert not port_open("127.0.0.1", plan.instance("SPA").private_port)

        # `make run` reuses a running build only if it has the plan's spares too
        assert build_running(plan)
        plan.spares.append(PlanSpare("SPNEW", plan.instance("SPA").superserver_port + 1, None))
        assert not build_running(plan)

        down = cluster_cli("down", "-f", str(plan_path))
        assert down.returncode == 0, down.stderr
        assert "5 processes stopped" in down.stdout  # 3 instances, 2 agents
        for e in state["processes"]:
            assert not is_running(e), f"{e['kind']} {e['name']} still runs after down"
    finally:
        if state_path.exists():
            cluster_cli("down", "-f", str(plan_path))


def test_the_example_plan_has_spares_for_a_second_mirror_made_in_the_portal():
    plan = load_plan(ROOT / "examples" / "mirror.toml")
    spares = {s.name: (s.host, s.superserver_port, s.private_port) for s in plan.spares}
    assert spares == {
        "SHOPA": ("hosta", 22140, 22141),
        "SHOPB": ("hostb", 22150, 22151),
        "SHOPDR": ("hostc", 22160, None),
    }
    # below the ephemeral range, as the file says, and each port once
    assert max(plan.ports) < 32768 and len(set(plan.ports)) == len(plan.ports)


def plan_data(**changes) -> dict:
    data = {
        "mirror": {"name": "M", "data_root": "var", "tls": True},
        "hosts": [
            {"name": "h", "agent": 7000, "instances": ["A", "S"]},
            {"name": "g", "agent": 7010, "instances": ["T"]},
        ],
        "members": [{"name": "A", "type": "failover", "superserver": 7001, "private": 7002}],
        "spares": [
            {"name": "S", "superserver": 7003, "private": 7004},
            {"name": "T", "superserver": 7005},
        ],
    }
    for key, change in changes.items():
        change(data[key])
    return data


def parse(data: dict, tmp_path):
    return parse_plan(data, tmp_path, tmp_path / "plan.toml")


def test_a_plan_with_spares_places_each_on_its_host_beside_the_members(tmp_path):
    plan = parse(plan_data(), tmp_path)

    assert [(s.name, s.host, s.superserver, s.private) for s in plan.spares] == [
        ("S", "h", "127.0.0.1:7003", "127.0.0.1:7004"),
        ("T", "g", "127.0.0.1:7005", None),
    ]
    assert [i.name for i in plan.instances] == ["A", "S", "T"]
    assert plan.data_dir(plan.instance("t")) == (tmp_path / "var" / "g" / "T").resolve()
    assert [m.name for m in plan.members] == ["A"]  # a spare is no member of the mirror


def test_a_plan_without_spares_has_none(tmp_path):
    data = plan_data(hosts=lambda hs: (hs[0].update(instances=["A"]), hs.pop()))
    del data["spares"]
    assert parse(data, tmp_path).spares == []


@pytest.mark.parametrize(
    "key, change, message",
    [
        ("spares", lambda ss: ss[0].update(name="A"), r"spares\[0\].name: A .*name of a member"),
        ("spares", lambda ss: ss[1].update(name="S"), r"spares\[1\].name: S .*another spare"),
        ("spares", lambda ss: ss[0].update(name="S 1"), r"spares\[0\].name: .*letters, digits"),
        (
            "spares",
            lambda ss: ss[0].pop("superserver"),
            r"spares\[0\].superserver: expected a port",
        ),
        ("spares", lambda ss: ss[0].update(private=0), r"spares\[0\].private: expected a port"),
        ("spares", lambda ss: ss[0].update(type="failover"), r"spares\[0\].type: a spare has only"),
        ("spares", lambda ss: ss[1].update(superserver=7001), r"distinct \(7001 given more"),
        ("spares", lambda ss: ss[0].update(private=7010), r"distinct \(7010 given more"),
        ("hosts", lambda hs: hs[1].update(instances=[]), "no host runs T"),
        ("hosts", lambda hs: hs[1].update(instances=["T", "S"]), "S is already on host h"),
        ("hosts", lambda hs: hs[1].update(instances=["T", "U"]), "no member or spare named U"),
    ],
)
def test_a_bad_spare_is_refused_naming_the_key(tmp_path, key, change, message):
    with pytest.raises(ConfigError, match=message):
        parse(plan_data(**{key: change}), tmp_path)


def test_spares_must_be_tables(tmp_path):
    data = plan_data()
    data["spares"] = {"name": "S", "superserver": 7003}  # [spares], not [[spares]]
    with pytest.raises(ConfigError, match=r"spares: expected \[\[spares\]\] tables"):
        parse(data, tmp_path)
