"""Disaster recovery driven from the portal on real members (guide §5.5, §6.3; docs/takeover.md
"Promotion with no primary"): a mirror of two failover members and a DR async, built through
the REST API on three hosts. Both failover members are stopped; the DR async is promoted to
primary with no partner through the portal, after it said what is at stake, and the portal then
shows it as the primary and the old failover members as DR, as the new primary reports them.
ValidatedMember is then cleared on a stopped former failover member. Promoted with a partner
instead (procedure D2), the DR async copies the partner's journal through the partner's agent,
whose certificate it pins, and the partner comes back as its backup when its instance starts."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from engine.cluster.ports import free_ports
from tests.e2e.test_failover_through_the_portal import (
    HOSTS,
    MEMBERS,
    build,
    member_id,
    start_instance_again,
)
from tests.monitor.live_cluster import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(240)]


def join_dr(site, portal, mirror) -> None:
    """C joins as a DR async, with a mirror private address of its own to listen on."""
    hostc = portal.one("/hosts/", name="hostc")["id"]
    (port,) = free_ports(1)  # the plan gives no DR a private port
    portal.run(
        f"/mirrors/{mirror['id']}/join/",
        {"host": hostc, "instance": "C", "member_type": "dr", "private": f"127.0.0.1:{port}"},
    )
    wait_for(lambda: status_of(site, "C") == "Connected", 30, "C Connected")


def status_of(site, name: str) -> str:
    try:
        return site.agent_of(name).databases(name).get("status") or ""
    except Exception as exc:  # noqa: BLE001 - restarting: the status comes back
        return f"no answer: {exc}"


def test_a_dr_async_promoted_with_no_partner_through_the_portal_becomes_the_primary(
    fresh_hosts, portal, worker, admin_user
):
    site = fresh_hosts({**HOSTS, "hostc": ["C"]}, {**MEMBERS, "C": "dr"}, tls=False)
    worker()
    mirror = build(site, portal)
    join_dr(site, portal, mirror)
    a, b, c = (member_id(portal, name) for name in "ABC")
    # while A says it is the primary, C is not promoted to primary: nothing is asked of it
    refused = portal.post(f"/members/{c}/promote-to-primary/preview/", expect=409)
    assert refused["error"]["code"] == "has_primary"

    # both failover members lost: the backup first, then the primary, with nobody to take over
    portal.run(f"/members/{b}/stop-instance/")
    stopped = portal.run(f"/members/{a}/stop-instance/")
    assert stopped["result"]["new_primary"] is None
    assert {portal.one("/members/", name=n)["status"] for n in "AB"} == {"Down"}
    wait_for(lambda: status_of(site, "C") != "Connected", 30, "C no longer following A")

    # step one: C says what is at stake, and nothing changes
    preview = portal.run(f"/members/{c}/promote-to-primary/preview/", {"partner": None})
    stake = preview["result"]
    assert stake["confirmed"] is False and stake["partner"] is None
    assert stake["last_primary"] == "A" and stake["journal_end"]
    assert "lost" in stake["warning"] and "ValidatedMember" in stake["warning"]
    assert site.agents["hostc"].instance("C")["type"] == "dr"

    # step two: the mirror's name typed
    assert portal.post(f"/members/{c}/promote-to-primary/", {"confirm": "SWA"}, expect=400)
    promoted = portal.run(f"/members/{c}/promote-to-primary/", {"confirm": "swap"})

    # the job records what the members then reported: C the primary, A and B DR in its
    # configuration (they are down and do not say so themselves yet)
    result = promoted["result"]
    assert result["promoted"]["confirmed"] is True
    assert sorted(result["promoted"]["demoted"]) == ["A", "B"]
    assert result["primary"] == "C" and result["members"]["C"] == "Primary"
    assert result["types"] == {"A": "dr", "B": "dr", "C": "failover"}
    # the member says so itself
    assert status_of(site, "C") == "Primary"
    assert site.agents["hostc"].instance("C")["type"] == "failover"
    rows = {row["name"]: row for row in portal.get("/members/", mirror=mirror["id"])["results"]}
    assert (rows["C"]["member_type"], rows["C"]["status"]) == ("failover", "Primary")
    assert {(rows[n]["member_type"], rows[n]["status"]) for n in "AB"} == {("dr", "Down")}

    # the pages: C is the primary now (no promotion to primary offered), A and B may be cleared
    page = Client()
    page.force_login(admin_user)
    html = page.get(reverse("mirror-detail", args=["SWAP"])).content.decode()
    assert reverse("member-promote-to-primary-preview", args=["SWAP", c]) not in html
    for stopped_member in (a, b):
        assert reverse("member-clear-validated-member", args=["SWAP", stopped_member]) in html

    # ValidatedMember cleared on A, stopped, before it starts again; not on C, which runs
    running = portal.post(f"/members/{c}/clear-validated-member/", expect=409)
    assert running["error"]["code"] == "not_down"
    cleared = portal.run(f"/members/{a}/clear-validated-member/")
    assert cleared["result"]["cleared"]["validated"] is False
    assert cleared["result"]["primary"] == "C"
    event = AuditEvent.objects.get(action="member.clear_validated_member")
    assert (event.actor_name, event.object_id) == ("member A", str(a))
    assert site.agents["hosta"].instance("A")["state"] == "down"


def role(portal, name: str) -> tuple[str, str]:
    """The member's type and status, as the portal records them."""
    row = portal.one("/members/", name=name)
    return row["member_type"], row["status"]


def test_a_dr_async_promoted_with_its_partner_through_the_portal_has_it_back_as_the_backup(
    fresh_hosts, portal, worker
):
    site = fresh_hosts({**HOSTS, "hostc": ["C"]}, {**MEMBERS, "C": "dr"}, tls=False)
    worker()
    mirror = build(site, portal)
    join_dr(site, portal, mirror)
    a, b, c = (member_id(portal, name) for name in "ABC")

    # B lost, then A's instance stopped while its host and agent stay up: A is the partner
    portal.run(f"/members/{b}/stop-instance/")
    portal.run(f"/members/{a}/stop-instance/")
    wait_for(lambda: status_of(site, "C") != "Connected", 30, "C no longer following A")
    preview = portal.run(f"/members/{c}/promote-to-primary/preview/", {"partner": "A"})
    assert preview["result"]["partner"] == "A" and preview["result"]["confirmed"] is False

    promoted = portal.run(f"/members/{c}/promote-to-primary/", {"partner": "A", "confirm": "swap"})

    # C the primary, with A's journal beyond its own copied through A's (pinned) agent
    result = promoted["result"]
    assert result["promoted"]["partner"] == "A" and result["promoted"]["demoted"] == ["B"]
    assert isinstance(result["promoted"]["journal_fetched"], int)  # bytes (0: C had all of it)
    assert result["primary"] == "C" and result["types"] == {
        "A": "failover",
        "B": "dr",
        "C": "failover",
    }
    assert (status_of(site, "C"), site.agents["hostc"].instance("C")["type"]) == (
        "Primary",
        "failover",
    )
    assert role(portal, "C") == ("failover", "Primary")
    assert (role(portal, "A")[0], role(portal, "B")[0]) == ("failover", "dr")

    # A starts again (the portal has no start operation) and comes back as C's backup
    start_instance_again(site, "A")
    wait_for(lambda: status_of(site, "A") == "Backup", 60, "A the backup of C")
    portal.run(f"/mirrors/{mirror['id']}/refresh/")
    assert role(portal, "A") == ("failover", "Backup")
