"""Disaster recovery: a DR async promoted to primary while no primary runs (guide §5.5, §6.3;
engine/member/promotion.py, docs/takeover.md "Promotion with no primary").  Procedures D1
(no partner; ValidatedMember cleared on the failover members before they start again) and
D2 (the partner's host is up, its instance is not: its journal comes through its agent).
Real instance processes, each with its own agent."""

from __future__ import annotations

import time
import uuid

import pytest

from engine.client.agent import AgentError
from engine.client.app import Client, Refused
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(180)
MIRROR = "DRP"


class Site:
    """A mirror of A (primary), B (backup) and C (DR async), each instance with its agent."""

    def __init__(self, hosts, start_agent):  # noqa: F811
        self.hosts = {n: hosts.add(n) for n in "ABC"}
        self.agents = {}
        for name, host in self.hosts.items():
            entry = {"name": name, "superserver": host.superserver, "data_dir": str(host.data_dir)}
            self.agents[name] = start_agent(instances=[entry])
        a, b, c = (self.hosts[n] for n in "ABC")
        create = {"mirror": MIRROR, "private": a.private, "agent": self.url("A")}
        # QoS 1 s: losing the backup costs the primary 2 s of trouble, not 16
        a.admin("mirror_create", {**create, "settings": {"qos_timeout_ms": 1000}})
        a.after_restart()
        for host, mtype in ((b, "failover"), (c, "dr")):
            arg = {"mirror": MIRROR, "address": a.superserver, "type": mtype}
            arg.update(private=host.private, agent=self.url(host.name))
            host.admin("mirror_join", arg)
            host.after_restart()
        b.wait_state("Backup")
        c.wait_state("Connected")
        self.db()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.agents[name].port}" if name in self.agents else ""

    def agent(self, name: str):
        agent = self.agents[name]
        return agent.client(credential=agent.credential)

    def db(self) -> None:
        self.hosts["A"].admin("create_database", "SHOP")
        for name in "BC":
            wait_for(lambda n=name: self._create_on(n), 30, f"SHOP on {name}")

    def _create_on(self, name: str) -> bool:
        try:
            self.hosts[name].admin("create_database", "SHOP")
        except Refused:
            return False  # the primary's database not heard of yet
        return True

    def write(self, name: str, key: str) -> None:
        with Client([self.hosts[name].superserver], timeout=5) as c:
            c.set("SHOP", "k", (key,), key)

    def read(self, name: str, key: str):
        with Client([self.hosts[name].superserver], follow_primary=False, timeout=5) as c:
            return c.get("SHOP", "k", (key,))

    def wait_read(self, name: str, key: str, timeout: float = 30) -> None:
        wait_for(lambda: self.read(name, key) == key, timeout, f"{key} on {name}")

    def digest(self, name: str):
        return self.hosts[name].admin("digest", "SHOP")

    def role(self, name: str) -> tuple[str, str]:
        st = self.hosts[name].status()
        return st.get("type"), st.get("status")


@pytest.fixture
def site(hosts, start_agent):  # noqa: F811
    return Site(hosts, start_agent)


def test_procedure_d1_promoted_with_no_partner_the_old_failover_members_rejoin_as_dr(site):
    a, b, c = (site.hosts[n] for n in "ABC")
    before = f"before-{uuid.uuid4().hex}"
    site.write("A", before)
    site.wait_read("C", before)
    a.stop()
    b.stop()  # both failover hosts lost
    with site.agent("C") as api:
        preview = api.promote_to_primary("C")
        assert preview["confirmed"] is False and preview["partner"] is None
        # A's graceful stop hands over to its Active backup B when B is still up: C may have
        # heard of B as primary before B stopped too (CI saw it on a loaded machine)
        assert "lost" in preview["warning"] and preview["last_primary"] in ("A", "B")
        # the warning is for a person (the portal quotes it); how to go ahead is apart
        assert "confirm" not in preview["warning"] and preview["to_confirm"] == {"confirm": True}
        done = api.promote_to_primary("C", confirm=True)
    assert done["confirmed"] is True and sorted(done["demoted"]) == ["A", "B"]
    c.wait_state("Primary", timeout=30)
    assert c.status()["type"] == "Failover"
    site.wait_read("C", before)
    after = f"after-{uuid.uuid4().hex}"
    site.write("C", after)
    # ValidatedMember=0 on each before it starts again; then, even with C out of reach, A and B
    # find each other but never make a primary of their own: A was the last one they knew
    c.stop()
    for host in (a, b):
        with site.agent(host.name) as api:
            assert api.clear_validated_member(host.name)["validated"] is False
        host.start()
    time.sleep(4)  # several rounds of looking for a primary (QoS 1 s)
    assert {site.role(n)[1] for n in "AB"} == {"Waiting"}, "no primary but the promoted one"
    assert "ValidatedMember is cleared" in a.status()["waiting_reason"]
    # C back: each takes its role from it, a DR async, and catches up
    c.start()
    for host in (a, b):
        wait_for(lambda h=host: site.role(h.name)[0] == "Disaster Recovery", 40, f"{host.name} DR")
        host.wait_state("Connected", timeout=30)
        site.wait_read(host.name, after)
    assert c.status()["status"] == "Primary"


def test_procedure_d2_promoted_with_the_primarys_host_as_partner_nothing_is_lost(site):
    a, b, c = (site.hosts[n] for n in "ABC")
    b.stop()  # the backup is lost first: A's later writes are on A alone
    a.wait_state("Primary")  # after the trouble timeout
    only_on_a = f"only-on-a-{uuid.uuid4().hex}"
    site.write("A", only_on_a)
    site.wait_read("C", only_on_a)  # C is asynchronous: make it lag by stopping it next
    c.admin("stop_mirroring")
    later = f"later-{uuid.uuid4().hex}"
    site.write("A", later)
    a.stop()  # A's instance cannot start; its host and agent are up
    c.admin("start_mirroring")
    with site.agent("C") as api:
        done = api.promote_to_primary("C", partner="A", confirm=True)
    assert done["partner"] == "A" and done["demoted"] == ["B"] and done["journal_fetched"] > 0
    c.wait_state("Primary", timeout=30)
    site.wait_read("C", later)  # copied from A's journal through A's agent
    # A learned who took over while it was down: restarted, it is C's backup
    a.start()
    a.wait_state("Backup", timeout=40)
    assert site.role("A")[0] == "Failover"
    site.write("C", f"fresh-{uuid.uuid4().hex}")
    # a backup serves no reads: its copy of SHOP matches the primary's
    wait_for(lambda: site.digest("A") == site.digest("C"), 30, "A's SHOP the same as C's")


def test_a_dr_async_is_not_promoted_to_primary_while_a_primary_runs(site):
    with site.agent("C") as api, pytest.raises(AgentError, match="primary A runs"):
        api.promote_to_primary("C", confirm=True)
    with pytest.raises(Refused, match="only a DR async is promoted"):
        site.hosts["B"].admin("promote_to_primary", {"confirm": True})


def test_a_partner_still_running_is_never_replaced_by_a_promotion(site):
    a, b, c = (site.hosts[n] for n in "ABC")
    b.stop()
    a.wait_state("Primary")
    c.admin("stop_mirroring")  # C no longer follows A, which still runs as primary
    with pytest.raises(Refused, match="A is primary, not down"):
        c.admin("promote_to_primary", {"partner": "A", "confirm": True}, timeout=30)
    assert a.status()["status"] == "Primary"
    assert site.role("C") == ("Disaster Recovery", "Stopped")


def test_clearing_validated_member_is_refused_while_the_instance_runs(site):
    with site.agent("B") as api, pytest.raises(AgentError, match="is running"):
        api.clear_validated_member("B")
