"""The rest of a mirror's life through the REST API against real members: pausing and resuming a
copy, clearing FailoverDB, removing a copy, new addresses and a new superserver port, a member
leaving, a member removed by the primary, and the whole mirror removed from every member (the
primary last, in its two steps) — each outcome asked of the members through their agents."""

import pytest

from engine.cluster.ports import free_ports
from tests.e2e.conftest import Portal, Site

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(300)]

HOSTS = {"hosta": ["A"], "hostb": ["B"], "hostc": ["DR", "REP"]}
MEMBERS = {"A": "failover", "B": "failover", "DR": "dr", "REP": "ro_reporting"}


def build(site: Site, portal: Portal) -> dict:
    hosts = {}
    for host in site.plan.hosts:
        body = {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port}
        row = portal.post("/hosts/", body, expect=201)
        portal.run(f"/hosts/{row['id']}/check/")
        hosts[host.name] = row["id"]
    a = site.plan.member("A")
    portal.run(
        "/mirrors/",
        {
            "host": hosts["hosta"],
            "instance": "A",
            "name": "life",
            "private": a.private,
            "requires_tls": False,
        },
    )
    mirror = portal.one("/mirrors/", name="LIFE")
    for name in ("B", "DR", "REP"):
        member = site.plan.member(name)
        body = {"host": hosts[member.host], "instance": name, "member_type": member.type}
        if member.private:
            body["private"] = member.private
        portal.run(f"/mirrors/{mirror['id']}/join/", body)
    portal.run("/databases/", {"mirror": mirror["id"], "name": "USER"})
    return mirror


def copy_on(portal: Portal, member: str) -> dict:
    member_id = portal.one("/members/", name=member)["id"]
    return portal.one("/database-copies/", member=member_id)


def statuses(site: Site, member: str) -> dict:
    answer = site.agent_of(member).databases(member)
    return {db["name"]: db for db in answer["databases"]}


def members_on_primary(site: Site) -> dict:
    info = site.agents["hosta"].mirror_info("A")
    return {m["name"]: m for m in info["members"]}


def test_a_mirror_lives_and_is_removed_through_the_api(fresh_hosts, portal, worker):
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    mirror = build(site, portal)

    # dejournaling one copy paused, then resumed
    dr_copy = copy_on(portal, "DR")
    portal.run(f"/database-copies/{dr_copy['id']}/pause/")
    assert statuses(site, "DR")["USER"]["status"] != "Dejournaling"
    portal.run(f"/database-copies/{dr_copy['id']}/resume/")
    assert statuses(site, "DR")["USER"]["status"] == "Dejournaling"

    # the read-only reporting async's FailoverDB flag cleared, then its copy removed
    rep = portal.one("/members/", name="REP")
    job = portal.run(f"/members/{rep['id']}/clear-failover-db/", {"databases": ["USER"]})
    assert job["result"]["cleared"] == ["USER"]
    assert statuses(site, "REP")["USER"]["failover_db"] is False
    portal.run(f"/database-copies/{copy_on(portal, 'REP')['id']}/remove/", {"confirm": "life"})
    assert "USER" not in statuses(site, "REP")
    assert portal.get("/database-copies/", member=rep["id"])["count"] == 0

    # DR's superserver named another way on the primary; REP moved to another port
    dr = portal.one("/members/", name="DR")
    port = site.plan.member("DR").superserver_port
    portal.run(f"/members/{dr['id']}/addresses/", {"superserver": f"localhost:{port}"})
    assert members_on_primary(site)["DR"]["superserver"] == f"localhost:{port}"
    assert portal.one("/members/", name="DR")["superserver_address"] == "localhost"
    (new_port,) = free_ports(1)
    portal.run(f"/members/{rep['id']}/superserver-port/", {"port": new_port})
    assert site.agent_of("REP").instance("REP")["superserver"].endswith(f":{new_port}")
    assert site.agent_of("REP").databases("REP")["status"] == "Connected"

    # DR leaves by itself; the primary removes REP
    portal.run(f"/members/{dr['id']}/leave/")
    portal.run(f"/members/{rep['id']}/remove/", {"confirm": "life"})
    assert set(members_on_primary(site)) == {"A", "B"}
    assert {m["name"] for m in portal.get("/members/", mirror=mirror["id"])["results"]} == {
        "A",
        "B",
    }

    # the mirror removed from every member: the backup first, then the primary in two steps
    refused = portal.post(f"/mirrors/{mirror['id']}/remove/", {"confirm": "other"}, expect=400)
    assert refused["error"]["fields"]["confirm"][0]["code"] == "not_confirmed"
    portal.run(f"/mirrors/{mirror['id']}/remove/", {"confirm": "life"})

    for name in ("A", "B"):
        row = site.agent_of(name).instance(name)
        assert row["member"] is None and row["role"] is None, row
    assert portal.get("/mirrors/")["count"] == 0
