"""Failover members keep contact with the mirror's arbiter and report their failover mode and
arbiter connection with the guide's strings (guide §3.3.5, §5.1.1; engine/member/
failover_watch.py, docs/failover.md).  A real arbiter process and real members."""

from __future__ import annotations

import pytest

from engine import rules
from engine.client.agent import AgentError
from tests.engine.agent_fixtures import instance_entries, start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import (  # noqa: F401
    free_ports,
    make_cluster_fixture,
    wait_for,
)
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.faults.mirror import arbiter_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def view(cluster, member: str) -> tuple[str, str]:
    st = cluster.status(member)
    return st.get("failover_mode"), st.get("arbiter_connection")


ARBITER_CONTROLLED = (rules.ARBITER_CONTROLLED, rules.ARBITER_BOTH)
AGENT_CONTROLLED_ALONE = (rules.AGENT_CONTROLLED, rules.ARBITER_NOT_CONNECTED)


def test_a_mirror_with_its_arbiter_is_arbiter_controlled_and_agent_controlled_without_it(
    make_cluster, arbiter
):
    cluster = make_cluster(
        ("failover", "failover", "dr"),
        mirror={"qos_timeout_ms": 1000, "arbiter": arbiter.address},
    )
    cluster.wait_backup_active()
    for member in "AB":
        wait_for(lambda m=member: view(cluster, m) == ARBITER_CONTROLLED, 15, f"{member} mode")
    assert "failover_mode" not in cluster.status("C")  # an async has none
    # the arbiter goes away (row 5 of Table 3-1): both carry on Agent Controlled
    arbiter.stop()
    for member in "AB":
        wait_for(lambda m=member: view(cluster, m) == AGENT_CONTROLLED_ALONE, 10, f"{member}")
    with cluster.client() as c:
        c.set("USER", "NoArbiter", (1,), "still written")
    # and back, with the backup still Active: Arbiter Controlled again
    arbiter.start()
    for member in "AB":
        wait_for(lambda m=member: view(cluster, m) == ARBITER_CONTROLLED, 15, f"{member} back")
    assert "failover mode Agent Controlled -> Arbiter Controlled" in cluster.log("A")


def test_the_backup_lost_leaves_the_primary_agent_controlled_seeing_only_itself(
    make_cluster, arbiter
):
    cluster = make_cluster(
        ("failover", "failover"), mirror={"qos_timeout_ms": 1000, "arbiter": arbiter.address}
    )
    cluster.wait_backup_active()
    wait_for(lambda: view(cluster, "A") == ARBITER_CONTROLLED, 15, "A Arbiter Controlled")
    cluster.kill9("B")  # row 6: the primary and the arbiter lose the backup
    wait_for(
        lambda: view(cluster, "A") == (rules.AGENT_CONTROLLED, rules.ARBITER_ONLY_THIS),
        10,
        "A alone with the arbiter",
    )
    cluster.start("B")
    cluster.wait_backup_active(timeout=20)
    wait_for(lambda: view(cluster, "A") == ARBITER_CONTROLLED, 15, "A Arbiter Controlled again")


def test_a_mirror_without_an_arbiter_stays_agent_controlled(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    assert view(cluster, "A") == view(cluster, "B") == AGENT_CONTROLLED_ALONE


def test_the_arbiter_is_set_on_the_primary_and_followed_by_both_members(hosts, arbiter):  # noqa: F811
    a, b = hosts.add("A"), hosts.add("B")
    a.admin("mirror_create", {"mirror": "ARB", "private": a.private})
    a.after_restart()
    b.admin(
        "mirror_join",
        {"mirror": "ARB", "address": a.superserver, "type": "failover", "private": b.private},
    )
    b.wait_state("Backup")
    assert (a.status()["failover_mode"], b.status()["failover_mode"]) == (
        rules.AGENT_CONTROLLED,
        rules.AGENT_CONTROLLED,
    )
    answer = a.admin("set_arbiter", {"arbiter": arbiter.address})
    assert answer["arbiter"] == arbiter.address
    for host in (a, b):
        wait_for(
            lambda h=host: (
                (h.status()["failover_mode"], h.status()["arbiter_connection"])
                == ARBITER_CONTROLLED
            ),
            15,
            f"{host.name} Arbiter Controlled",
        )
    assert a.admin("mirror_info")["arbiter"] == arbiter.address
    with pytest.raises(Exception, match="only the primary"):
        b.admin("set_arbiter", {"arbiter": None})
    a.admin("set_arbiter", {"arbiter": None})
    for host in (a, b):
        wait_for(
            lambda h=host: h.status()["arbiter_connection"] == rules.ARBITER_NOT_CONNECTED,
            10,
            f"{host.name} without an arbiter",
        )


def test_the_agent_sets_the_arbiter_on_the_primary(make_cluster, start_agent, arbiter):
    from_file = make_cluster(("failover", "failover"))  # a mirror file: no set_arbiter there
    agent = start_agent(instances=instance_entries(from_file))
    with agent.client(credential=agent.credential) as api:
        with pytest.raises(AgentError) as refused:
            api.set_arbiter("A", arbiter.address)
        assert refused.value.status == 409 and "created or joined through the agent" in str(
            refused.value
        )
        with pytest.raises(AgentError) as bad:
            api.set_arbiter("A", "no-port")
        assert bad.value.status == 400
