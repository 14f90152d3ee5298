"""Failover driven from the portal on real members: two failover members on two hosts, built
through the REST API, followed by a real collector. A graceful stop of the primary hands over to
the Active backup, and the portal then shows the new primary as its members report it, with the
takeover in the history and as an alert; forcing a primary shows what is at stake first. A DR
async with a mirror private address promoted through the portal becomes the backup, and the
backup there was a DR async, as the members then report their types."""

import threading
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from engine.cluster.launcher import spawn, stop_pids
from engine.cluster.ports import free_ports
from monitor.models import Alert, Event, MemberState
from tests.monitor.live_cluster import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(240)]

HOSTS = {"hosta": ["A"], "hostb": ["B"]}
MEMBERS = {"A": "failover", "B": "failover"}


def build(site, portal) -> dict:
    """Both hosts registered and checked, the mirror created on A and B joined: by the API."""
    hosts = {}
    for host in site.plan.hosts:
        row = portal.post(
            "/hosts/",
            {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port},
            expect=201,
        )
        portal.run(f"/hosts/{row['id']}/check/")
        hosts[host.name] = row["id"]
    plan = site.plan
    portal.run(
        "/mirrors/",
        {
            "host": hosts["hosta"],
            "instance": "A",
            "name": "swap",
            "private": plan.member("A").private,
            "requires_tls": False,
        },
    )
    mirror = portal.one("/mirrors/", name="SWAP")
    portal.run(
        f"/mirrors/{mirror['id']}/join/",
        {
            "host": hosts["hostb"],
            "instance": "B",
            "member_type": "failover",
            "private": plan.member("B").private,
        },
    )
    return mirror


@pytest.fixture
def collector(fresh_hosts):
    """The live monitor's collector, on a thread of this process (it shares the database)."""
    from monitor.collector import Collector

    running = Collector(holder="test")
    thread = threading.Thread(target=running.run, daemon=True)
    yield running, thread
    running.stop()
    if thread.is_alive():
        thread.join(10)


def live(name: str) -> MemberState | None:
    return MemberState.objects.filter(member__name=name).first()


def backup_is_active() -> bool:
    state = live("B")
    return bool(state and state.status == "Backup" and state.journal_transfer == "Active")


def member_id(portal, name: str) -> int:
    return portal.one("/members/", name=name)["id"]


def start_instance_again(site, name: str) -> None:
    """The instance `name` started again as the launcher first started it."""
    entry = site.entry("instance", name)
    superserver = next(i.superserver for i in site.plan.instances if i.name == name)
    args = ["instance", "--data-dir", entry["match"], "--name", name, "--superserver", superserver]
    entry["pid"] = spawn(args, site.plan.root / f"{name}-again.log").pid  # stopped at teardown


def test_a_graceful_stop_of_the_primary_shows_the_backup_as_the_new_primary_an_event_and_an_alert(
    fresh_hosts, portal, worker, collector
):
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    mirror = build(site, portal)
    running, thread = collector
    thread.start()
    wait_for(backup_is_active, 60, "B the Active backup, as the collector sees it")

    stopped = portal.run(f"/members/{member_id(portal, 'A')}/stop-instance/")

    # the job records what the members answered: A stopped, B took over and says Primary
    assert stopped["result"]["stopped"]["stopped"] is True
    assert stopped["result"]["new_primary"] == "B"
    assert stopped["result"]["primary"] == "B"
    assert stopped["result"]["members"]["B"] == "Primary"
    assert portal.one("/members/", name="B")["status"] == "Primary"
    # the Mirror Monitor follows the members' roles, not the order they were created in
    wait_for(lambda: live("B").status == "Primary", 15, "the collector to see B Primary")
    status = portal.get(f"/mirrors/{mirror['id']}/status/")
    assert status["primary"] == "B" and status["members"][0]["name"] == "B"
    assert status["failover_mode"] == "Agent Controlled"
    takeover = wait_for(
        lambda: Event.objects.filter(kind=Event.TAKEOVER, member_name="B").first(),
        15,
        "the takeover in the history",
    )
    assert (takeover.before, takeover.after) == ("backup", "primary")
    # whom B followed is named when the collector sampled B before its Transition began
    assert takeover.text.startswith("B: takeover, now the primary (was backup")
    assert takeover.mirror_name == "SWAP"
    alert = wait_for(
        lambda: Alert.objects.filter(rule=Alert.TAKEOVER, resolved_at=None).first(),
        15,
        "the takeover alert",
    )
    assert alert.member_name == "B" and alert.text.startswith("B took over as primary from A")


def test_forcing_a_primary_shows_what_is_at_stake_then_needs_the_mirrors_name(
    fresh_hosts, portal, worker
):
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    build(site, portal)
    a, b = member_id(portal, "A"), member_id(portal, "B")
    # no failover on the primary reaches its backup: stopping A, nobody takes over
    flagged = portal.run(f"/members/{a}/set-no-failover/")
    assert flagged["result"]["no_failover"] is True
    assert portal.one("/members/", name="A")["no_failover"] is True
    # while A says it is the primary, B cannot be forced: nothing is asked of it
    refused = portal.post(f"/members/{b}/force-primary/preview/", expect=409)
    assert refused["error"]["code"] == "has_primary"

    portal.run(f"/members/{a}/stop-instance/")
    portal.run(f"/members/{b}/stop-instance/")
    # A's host is lost with its agent (procedure U3c): nobody can confirm A down, so B, alone,
    # cannot tell who is primary now: it waits (with A's agent up, it would take over with
    # A's journal, docs/takeover.md "Asking the partner's agent")
    stop_pids([site.entry("agent", "hosta")])
    start_instance_again(site, "B")
    wait_for(
        lambda: site.agents["hostb"].instance("B").get("state") == "up", 30, "B answering again"
    )
    preview = portal.run(f"/members/{b}/force-primary/preview/")

    stake = preview["result"]
    assert stake["confirmed"] is False and stake["last_primary"] == "A"
    assert stake["journal_end"] and "was_active_backup" in stake
    assert portal.post(f"/members/{b}/force-primary/", {"confirm": "SWA"}, expect=400)
    forced = portal.run(f"/members/{b}/force-primary/", {"confirm": "swap"})
    assert forced["result"]["forced"]["confirmed"] is True
    assert forced["result"]["primary"] == "B"
    assert portal.one("/members/", name="B")["status"] == "Primary"


def test_a_dr_async_promoted_through_the_portal_becomes_the_backup_and_the_backup_dr(
    fresh_hosts, portal, worker, admin_user
):
    site = fresh_hosts({**HOSTS, "hostc": ["C"]}, {**MEMBERS, "C": "dr"}, tls=False)
    worker()
    mirror = build(site, portal)
    hostc = portal.one("/hosts/", name="hostc")["id"]
    (port,) = free_ports(1)  # the plan gives no DR a private port: one for C to listen on
    portal.run(
        f"/mirrors/{mirror['id']}/join/",
        {
            "host": hostc,
            "instance": "C",
            "member_type": "dr",
            "private": f"127.0.0.1:{port}",
        },
    )
    wait_for(
        lambda: site.agents["hostc"].databases("C").get("status") == "Connected", 30, "C Connected"
    )
    c = member_id(portal, "C")
    assert portal.post(f"/members/{c}/promote/", {"confirm": "SWA"}, expect=400)

    promoted = portal.run(f"/members/{c}/promote/", {"confirm": "swap"})

    # the job records what the members then reported, not what was asked
    result = promoted["result"]
    assert result["promoted"]["demoted"] == ["B"]
    assert result["types"] == {"C": "failover", "B": "dr"}
    assert result["members"]["C"] == "Backup" and result["members"]["B"] == "Connected"
    rows = {row["name"]: row for row in portal.get("/members/", mirror=mirror["id"])["results"]}
    assert (rows["C"]["member_type"], rows["C"]["status"]) == ("failover", "Backup")
    assert (rows["B"]["member_type"], rows["B"]["status"]) == ("dr", "Connected")
    assert rows["A"]["status"] == "Primary"
    # the members say so themselves
    assert site.agents["hostc"].instance("C")["type"] == "failover"
    assert site.agents["hostb"].instance("B")["type"] == "dr"
    # and the pages show it: C the Failover backup, B Disaster Recovery
    page = Client()
    page.force_login(admin_user)
    status = portal.get(f"/mirrors/{mirror['id']}/status/")
    types = {m["name"]: (m["type"], m["status"]) for m in status["members"]}
    assert types["C"] == ("Failover", "Backup") and types["B"][0] == "Disaster Recovery"
    html = page.get(reverse("mirror-detail", args=["SWAP"])).content.decode()
    assert reverse("member-demote", args=["SWAP", c]) in html  # C is the backup now
    assert reverse("member-promote", args=["SWAP", member_id(portal, "B")]) in html
    # C is a real backup: once Active, A's graceful stop hands over to it
    wait_for(
        lambda: site.agents["hostc"].databases("C").get("journal_transfer") == "Active",
        30,
        "C the Active backup",
    )
    stopped = portal.run(f"/members/{member_id(portal, 'A')}/stop-instance/")
    assert stopped["result"]["new_primary"] == "C"
    assert portal.one("/members/", name="C")["status"] == "Primary"


def test_a_member_rebuilt_through_the_portal_takes_its_databases_again_and_is_backup_again(
    fresh_hosts, portal, worker
):
    # guide §5.7: the member's data set aside on its host and taken again from the mirror
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    mirror = build(site, portal)
    portal.run("/databases/", {"mirror": mirror["id"], "name": "USER"})
    a, b = member_id(portal, "A"), member_id(portal, "B")

    def copies() -> dict:
        return {d["name"]: d["status"] for d in site.agents["hostb"].databases("B")["databases"]}

    settled = wait_for(lambda: copies().get("USER") == "Dejournaling" and copies(), 30, "USER")
    refused = portal.post(f"/members/{a}/rebuild/preview/", expect=409)
    assert refused["error"]["code"] == "primary"

    stake = portal.run(f"/members/{b}/rebuild/preview/")["result"]

    assert stake["confirmed"] is False and stake["databases"] == ["USER"]
    assert stake["refused_because"] is None and stake["journal_end"]
    assert portal.post(f"/members/{b}/rebuild/", {"confirm": "SWA"}, expect=400)
    rebuilt = portal.run(f"/members/{b}/rebuild/", {"confirm": "swap"})

    assert rebuilt["result"]["rebuilt"]["confirmed"] is True
    assert rebuilt["result"]["members"]["B"] == "Backup"
    assert any("databases to be taken again" in line["message"] for line in rebuilt["log"])
    assert copies() == settled
    assert portal.one("/members/", name="B")["status"] == "Backup"
    # what B had is kept on its host, beside the copies it took again
    data_dir = Path(site.entry("instance", "B")["match"])
    (aside,) = data_dir.glob("rebuilt-*")
    assert any((aside / "journal").iterdir()) and (aside / "db" / "USER").exists()
