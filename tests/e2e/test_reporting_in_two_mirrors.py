"""A read-only reporting async joins a second mirror (guide §3.3.3: up to ten), through the
REST API against real agents and instances. Joining restarts the instance as a member of both;
the job ends when the second mirror's primary holds it pending authorization, and once
authorized the member is Connected in both mirrors, as its agent says, and a database created
in the second reaches it there."""

import pytest

from engine.cluster.hosts import ORG, member_tls
from tests.e2e.test_rest_builds_a_mirror import write

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(300)]

HOSTS = {"hosta": ["A"], "hostb": ["C"], "hostc": ["REP"]}
MEMBERS = {"A": "failover", "C": "failover", "REP": "ro_reporting"}


def set_up(site, portal) -> dict[str, int]:
    hosts = {}
    for host in site.plan.hosts:
        body = {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port}
        hosts[host.name] = portal.post("/hosts/", body, expect=201)["id"]
        portal.run(f"/hosts/{hosts[host.name]}/check/")
    for member in site.plan.members:
        instance = portal.one("/instances/", name=member.name)
        cert, key, ca = member_tls(site.plan, member)
        body = {"cert": str(cert), "key": str(key), "ca": str(ca)}
        portal.run(f"/instances/{instance['id']}/tls/", body)
    return hosts


def mirror_on(portal, site, hosts, primary: str, name: str) -> dict:
    member = site.plan.member(primary)
    body = {"host": hosts[member.host], "instance": primary, "name": name}
    portal.run("/mirrors/", body | {"private": member.private, "requires_tls": True})
    return portal.one("/mirrors/", name=name)


def join_reporting(portal, hosts, mirror: dict) -> dict:
    body = {"host": hosts["hostc"], "instance": "REP", "member_type": "ro_reporting"}
    job = portal.run(f"/mirrors/{mirror['id']}/join/", body)
    pending = portal.one("/pending-members/", mirror=mirror["id"])
    assert (pending["name"], pending["x509_dn"]) == ("REP", f"CN=REP,O={ORG}")
    portal.run(f"/pending-members/{pending['id']}/authorize/")
    return job


def test_a_reporting_member_joins_a_second_mirror_and_is_connected_in_both(
    fresh_hosts, portal, worker
):
    site = fresh_hosts(HOSTS, MEMBERS)
    worker()
    hosts = set_up(site, portal)
    first = mirror_on(portal, site, hosts, "A", "ONE")
    join_reporting(portal, hosts, first)
    portal.run("/databases/", {"mirror": first["id"], "name": "sales"})
    write(site, "SALES", "one", rows=20)

    second = mirror_on(portal, site, hosts, "C", "TWO")
    job = join_reporting(portal, hosts, second)

    assert job["result"]["pending"] is True  # ended at the authorization, not after a timeout
    rep = site.agent_of("REP")
    assert rep.databases("REP", mirror="ONE")["status"] == "Connected"
    assert rep.databases("REP", mirror="TWO")["status"] == "Connected"
    assert portal.one("/members/", mirror=second["id"], name="REP")["status"] == "Connected"

    # a database of the second mirror reaches the member in both (told which mirror it is for)
    portal.run("/databases/", {"mirror": second["id"], "name": "stock"})
    copies = rep.databases("REP", mirror="TWO")["databases"]
    assert {d["name"]: d["status"] for d in copies} == {"STOCK": "Dejournaling"}
    assert {d["name"] for d in rep.databases("REP", mirror="ONE")["databases"]} == {"SALES"}
