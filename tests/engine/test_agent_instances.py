"""The agent knows the instances on its host: up (with role), down, hung; and forces one down.
Real member processes started with the engine's launcher, a real agent process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.client.agent import AgentError
from tests.engine.agent_fixtures import (  # noqa: F401
    instance_entries,
    pki_fixture,
    start_agent_fixture,
)
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def mirror_and_agent(make_cluster, pki, start_agent):
    cluster = make_cluster(types=("failover", "failover", "dr"))
    agent = start_agent(pki=pki, instances=instance_entries(cluster))
    return cluster, agent


def states(agent) -> dict[str, dict]:
    with agent.client() as c:
        return {row["name"]: row for row in c.instances()}


def test_instances_report_up_with_their_roles_and_pids(mirror_and_agent):
    cluster, agent = mirror_and_agent
    rows = states(agent)
    assert {n: r["state"] for n, r in rows.items()} == {"A": "up", "B": "up", "C": "up"}
    assert {n: r["role"] for n, r in rows.items()} == {"A": "primary", "B": "backup", "C": "async"}
    assert rows["C"]["type"] == "dr"
    assert {r["primary"] for r in rows.values()} == {"A"}
    assert {n: r["pid"] for n, r in rows.items()} == {n: p.pid for n, p in cluster.procs.items()}


def test_a_killed_instance_is_down_and_the_others_stay_up(mirror_and_agent):
    cluster, agent = mirror_and_agent
    cluster.kill9("C")
    rows = wait_for(lambda: (r := states(agent))["C"]["state"] == "down" and r, 15, "C down")
    assert "refused" in rows["C"]["detail"]
    assert rows["C"]["pid"] is None
    assert rows["A"]["state"] == rows["B"]["state"] == "up"
    with agent.client() as c:
        assert c.instance("c")["state"] == "down"


def test_a_stopped_instance_is_hung_and_force_down_kills_it(mirror_and_agent):
    cluster, agent = mirror_and_agent
    proc = cluster.procs["B"]
    cluster.pause("B")
    with agent.client() as c:
        row = c.instance("B")
        assert row["state"] == "hung"
        assert "no answer" in row["detail"]
        result = c.force_down("B")
        assert result["forced"] is True
        assert result["pid"] == proc.pid
        assert result["state"] == "down"
        assert proc.wait(10) == -9
        assert c.instance("B")["state"] == "down"
        assert c.instance("A")["state"] == "up"
    assert "force-down of instance B requested by CN=portal,O=Mirror Portal" in agent.log()


def test_force_down_of_a_running_primary_then_again_is_safe(mirror_and_agent):
    cluster, agent = mirror_and_agent
    proc = cluster.procs["A"]
    with agent.client() as c:
        assert c.force_down("A")["forced"] is True
        assert proc.wait(10) == -9
        again = c.force_down("A")
        assert again["forced"] is False and again["state"] == "down"
        assert c.instance("A")["state"] == "down"


def test_force_down_never_kills_a_process_named_by_a_stale_pid_file(mirror_and_agent):
    cluster, agent = mirror_and_agent
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster.kill9("C")
        pid_file = cluster.cfg.member("C").data_dir / "instance.pid"
        pid_file.write_text(f"{bystander.pid}\n")
        with agent.client() as c:
            result = c.force_down("C")
        assert result["forced"] is False
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(5)


def test_an_unknown_instance_is_404(mirror_and_agent):
    _, agent = mirror_and_agent
    with agent.client() as c:
        for call in (c.instance, c.force_down):
            with pytest.raises(AgentError) as err:
                call("NOPE")
            assert err.value.status == 404
            assert "NOPE" in err.value.message


def test_force_down_finds_the_instance_without_its_pid_file(mirror_and_agent):
    cluster, agent = mirror_and_agent
    proc = cluster.procs["C"]
    pid_file = cluster.cfg.member("C").data_dir / "instance.pid"
    pid_file.unlink(missing_ok=True)
    with agent.client() as c:
        assert c.instance("C")["pid"] == proc.pid  # found by the files it holds open
        assert c.force_down("C")["pid"] == proc.pid
    assert proc.wait(10) == -9
