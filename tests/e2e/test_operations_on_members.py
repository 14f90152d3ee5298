"""Operations whose outcome only the members can show, through the REST API against real agents:
a DN update made on a member, a setting changed behind the portal's back, an agent that dies
while its job runs."""

import os
import signal

import pytest

from engine import rules
from engine.cluster.hosts import ORG
from engine.cluster.launcher import spawn
from engine.wire.tls import load_ca, make_cert
from members.agents import agent_client_for
from members.models import Host
from tests.engine.agent_fixtures import StreamFollower
from tests.faults.mirror import Arbiter

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(240)]

HOSTS = {"hosta": ["A"], "hostb": ["DR"]}
MEMBERS = {"A": "failover", "DR": "dr"}


def build(site, portal, *, tls: bool, joins=("DR", "dr")) -> dict:
    """Hosts registered and checked, certificates given (TLS), the mirror created on A, DR
    joined (and authorized), one database: all through the API."""
    plan, hosts = site.plan, {}
    for host in plan.hosts:
        row = portal.post(
            "/hosts/",
            {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port},
            expect=201,
        )
        portal.run(f"/hosts/{row['id']}/check/")
        hosts[host.name] = row["id"]
    if tls:
        certs = plan.certs
        for name in MEMBERS:
            instance = portal.one("/instances/", name=name)
            files = {"cert": f"{certs}/{name}.pem", "key": f"{certs}/{name}-key.pem"}
            portal.run(f"/instances/{instance['id']}/tls/", {**files, "ca": f"{certs}/ca.pem"})
    portal.run(
        "/mirrors/",
        {
            "host": hosts["hosta"],
            "instance": "A",
            "name": "ops",
            "private": plan.member("A").private,
            "requires_tls": tls,
        },
    )
    mirror = portal.one("/mirrors/", name="OPS")
    joined = portal.run(
        f"/mirrors/{mirror['id']}/join/",
        {
            "host": hosts["hostb"],
            "instance": joins[0],
            "member_type": joins[1],
            **({"private": plan.member(joins[0]).private} if joins[1] == "failover" else {}),
        },
    )
    if tls:
        assert joined["result"]["pending"] is True
        pending = portal.one("/pending-members/", mirror=mirror["id"])
        portal.run(f"/pending-members/{pending['id']}/authorize/")
    portal.run("/databases/", {"mirror": mirror["id"], "name": "USER"})
    return mirror


def test_a_dn_update_made_on_a_member_shows_after_refresh_and_once_authorized_it_reconnects(
    fresh_hosts, portal, worker
):
    site = fresh_hosts(HOSTS, MEMBERS, tls=True)
    worker()
    mirror = build(site, portal, tls=True)
    # DR's certificate is renewed under another name: the primary holds it until authorized
    renewed = make_cert(load_ca(site.plan.certs), site.plan.certs, "DR-2027", name="DR-renewed")
    instance = portal.one("/instances/", name="DR")
    portal.run(
        f"/instances/{instance['id']}/tls/",
        {"cert": str(renewed.cert), "key": str(renewed.key), "ca": f"{site.plan.certs}/ca.pem"},
    )
    new_dn = f"CN=DR-2027,O={ORG}"
    # DR reconnects with it by itself; the primary then holds the new DN for a decision
    wait_until(
        lambda: site.agents["hosta"].mirror_info("A")["dn_updates"] == {"DR": new_dn},
        "the primary to hold DR's new DN",
    )

    refreshed = portal.run(f"/mirrors/{mirror['id']}/refresh/")
    update = portal.one("/dn-updates/", state="pending")

    assert any("presents a new DN" in line for line in refreshed["result"]["changes"])
    assert update["member_name"] == "DR" and update["new_dn"] == new_dn
    assert site.agents["hostb"].databases("DR")["status"] != "Connected"

    portal.run(f"/dn-updates/{update['id']}/authorize/")

    assert site.agents["hostb"].databases("DR")["status"] == "Connected"
    info = site.agents["hosta"].mirror_info("A")
    assert info["dn_updates"] == {}
    assert {m["name"]: m["dn"] for m in info["members"]}["DR"] == new_dn
    assert portal.one("/members/", name="DR")["x509_dn"] == new_dn
    assert portal.get(f"/dn-updates/{update['id']}/")["state"] == "authorized"


def test_a_setting_changed_through_an_agent_is_drift_until_the_portal_reapplies_it(
    fresh_hosts, portal, worker
):
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    mirror = build(site, portal, tls=False)
    portal.run(f"/mirrors/{mirror['id']}/settings/", {"qos_timeout_ms": 6000})
    assert site.agents["hosta"].mirror_info("A")["qos_timeout_ms"] == 6000

    site.agents["hosta"].edit_mirror("A", qos_timeout_ms=9000)  # behind the portal's back
    portal.run(f"/mirrors/{mirror['id']}/refresh/")
    drift = portal.one("/drifts/", mirror=mirror["id"])

    assert (drift["setting"], drift["desired"], drift["observed"]) == (
        "qos_timeout_ms",
        "6000",
        "9000",
    )

    portal.run(f"/mirrors/{mirror['id']}/reapply-settings/")

    assert site.agents["hosta"].mirror_info("A")["qos_timeout_ms"] == 6000
    assert portal.get("/drifts/", mirror=mirror["id"])["count"] == 0
    assert portal.get(f"/mirrors/{mirror['id']}/")["qos_timeout_ms"] == 6000


def test_an_arbiter_set_in_the_portal_reaches_the_primary_which_keeps_contact_with_it(
    fresh_hosts, portal, worker, tmp_path
):
    # two failover members: a lone one keeps no arbiter (nothing could take over from it)
    site = fresh_hosts({"hosta": ["A"], "hostb": ["B"]}, {"A": "failover", "B": "failover"}, False)
    worker()
    mirror = build(site, portal, tls=False, joins=("B", "failover"))
    arbiter = Arbiter(tmp_path)
    arbiter.start()
    try:
        # "localhost", not the members' 127.0.0.1: the arbiter belongs on a host of its own
        done = portal.run(
            f"/mirrors/{mirror['id']}/settings/",
            {"arbiter_host": "localhost", "arbiter_port": arbiter.port},
        )

        assert done["result"]["arbiter"] == f"localhost:{arbiter.port}"  # the primary's word
        assert site.agents["hosta"].mirror_info("A")["arbiter"] == f"localhost:{arbiter.port}"
        # the primary's own status, as its agent streams it: in contact with the arbiter
        follower = StreamFollower(agent_client_for(Host.objects.get(name="hosta")))
        try:
            follower.until_state(
                lambda s: s.instances.get("A", {}).get("arbiter_connection") == rules.ARBITER_BOTH,
                20,
                "the primary in contact with the arbiter",
            )
        finally:
            follower.close()
        recorded = portal.get(f"/mirrors/{mirror['id']}/")
        assert (recorded["arbiter_host"], recorded["arbiter_port"]) == ("localhost", arbiter.port)

        portal.run(f"/mirrors/{mirror['id']}/settings/", {"arbiter_host": ""})

        assert site.agents["hosta"].mirror_info("A")["arbiter"] is None
        assert portal.get(f"/mirrors/{mirror['id']}/")["arbiter_host"] == ""
    finally:
        arbiter.stop()


def test_a_job_whose_agent_dies_fails_with_the_reason_and_succeeds_when_retried(
    fresh_hosts, portal, worker
):
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    build(site, portal, tls=False)
    dr = portal.one("/members/", name="DR")
    agent = site.entry("agent", "hostb")
    os.kill(agent["pid"], signal.SIGKILL)

    failed = portal.wait(portal.post(f"/members/{dr['id']}/stop-dejournaling/"))

    assert failed["state"] == "failed"
    assert "unreachable" in failed["error"] and "gave up after 3 retries" in failed["error"]
    assert sum("retrying" in line["message"] for line in failed["log"]) == 3

    restarted = spawn(["agent", "--config", agent["match"]], site.plan.root / "agent-again.log")
    agent["pid"] = restarted.pid  # stopped at teardown
    wait_for_agent(site.agents["hostb"])
    retried = portal.run(f"/jobs/{failed['id']}/retry/")

    assert retried["retry_of"] == failed["id"]
    copies = {db["name"]: db["status"] for db in site.agents["hostb"].databases("DR")["databases"]}
    assert copies == {"USER": "Dejournaling Stopped"}


def wait_for_agent(agent, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            agent.health()
            return
        except Exception:  # noqa: BLE001 - still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_job_waiting_on_a_member_can_be_cancelled_and_retried_later(fresh_hosts, portal, worker):
    site = fresh_hosts(HOSTS, MEMBERS, tls=False)
    worker()
    mirror = build(site, portal, tls=False)
    dr = portal.one("/members/", name="DR")
    portal.run(f"/members/{dr['id']}/stop-mirroring/")
    # DR hears of nothing new while it is not mirroring: the job waits for it
    waiting = portal.post("/databases/", {"mirror": mirror["id"], "name": "NEWDB"})
    wait_until(lambda: "not heard of NEWDB" in log_of(portal, waiting), "the job to wait for DR")

    cancelled = portal.post(f"/jobs/{waiting['id']}/cancel/", expect=200)
    ended = portal.wait(cancelled, timeout=30)

    assert ended["state"] == "cancelled" and ended["error"] == "Cancelled by an operator."
    assert portal.post(f"/jobs/{waiting['id']}/cancel/", expect=409)["error"]["code"] == "job_final"
    portal.run(f"/members/{dr['id']}/start-mirroring/")
    portal.run(f"/jobs/{waiting['id']}/retry/")
    copies = {db["name"]: db["status"] for db in site.agents["hostb"].databases("DR")["databases"]}
    assert copies["NEWDB"] == "Dejournaling"


def log_of(portal, job) -> str:
    return "\n".join(line["message"] for line in portal.get(f"/jobs/{job['id']}/")["log"])


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
