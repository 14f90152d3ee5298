"""From an empty portal to a healthy TLS mirror through the REST API alone, against real agents
and instances: two failover members, a DR async and a read-only reporting async, three databases
(one created, one added with its data and downloaded by the others, one restored from the
primary's files, activated and caught up). What the mirror then is, is asked of the members
through their agents, not read from the portal's tables."""

import pytest

from engine.client.app import Client
from engine.cluster.hosts import ORG, copy_database_files, member_tls
from engine.storage.store import Store
from engine.wire.tls import superserver_client_context

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(300)]

HOSTS = {"hosta": ["A"], "hostb": ["B"], "hostc": ["DR", "REP"]}
MEMBERS = {"A": "failover", "B": "failover", "DR": "dr", "REP": "ro_reporting"}
ROWS = 200


def reach(site, member: str) -> dict:
    """A TLS mirror's superservers speak TLS: reached as its host's tools reach them."""
    plan = site.plan
    return {"ssl": superserver_client_context(plan.data_dir(plan.member(member)))}


def write(site, db: str, label: str, rows=ROWS) -> None:
    """Records written on the primary through its superserver, as an application does."""
    with Client([site.plan.member("A").superserver], timeout=30, **reach(site, "A")) as client:
        client.pipeline([("set", db, "E2E", (label, i), f"{label} {i}") for i in range(rows)])


def local_database_with_data(site, db: str) -> None:
    """A database of the primary's own, with data, before it joins the mirror (written in its
    files, as the cluster launcher does: the superserver serves mirrored databases only)."""
    site.agent_of("A").create_database("A", db, mirrored=False)
    store = Store.open(str(site.plan.data_dir(site.plan.member("A")) / "db" / db))
    try:
        for i in range(ROWS):
            store.set("E2E", ("existing", i), f"existing {i}")
    finally:
        store.close()


def register_hosts(site, portal) -> dict[str, int]:
    ids = {}
    for host in site.plan.hosts:
        row = portal.post(
            "/hosts/",
            {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port},
            expect=201,
        )
        job = portal.run(f"/hosts/{row['id']}/check/")
        assert {i["name"] for i in job["result"]["instances"]} == set(HOSTS[host.name])
        ids[host.name] = row["id"]
    return ids


def give_certificates(site, portal) -> None:
    for member in site.plan.members:
        instance = portal.one("/instances/", name=member.name)
        cert, key, ca = member_tls(site.plan, member)
        job = portal.run(
            f"/instances/{instance['id']}/tls/", {"cert": str(cert), "key": str(key), "ca": str(ca)}
        )
        assert job["result"]["dn"] == f"CN={member.name},O={ORG}"


def test_an_empty_portal_builds_a_healthy_tls_mirror_through_the_api(fresh_hosts, portal, worker):
    site = fresh_hosts(HOSTS, MEMBERS)
    worker()
    hosts = register_hosts(site, portal)
    give_certificates(site, portal)
    plan = site.plan

    # the first failover member creates the mirror and is its primary
    portal.run(
        "/mirrors/",
        {
            "host": hosts["hosta"],
            "instance": "A",
            "name": "shop",
            "private": plan.member("A").private,
            "requires_tls": True,
            "qos_timeout_ms": 4000,
            "parallel_dejournaling": "all",
        },
    )
    mirror = portal.one("/mirrors/", name="SHOP")
    assert mirror["requires_tls"] and mirror["qos_timeout_ms"] == 4000

    # the others join and wait, pending, until an admin authorizes them by their DN
    for name in ("B", "DR", "REP"):
        member = plan.member(name)
        body = {"host": hosts[member.host], "instance": name, "member_type": member.type}
        if member.private:
            body["private"] = member.private
        job = portal.run(f"/mirrors/{mirror['id']}/join/", body)
        assert job["result"]["pending"] is True
    pending = portal.get("/pending-members/", mirror=mirror["id"])["results"]
    assert sorted((p["name"], p["x509_dn"]) for p in pending) == [
        (n, f"CN={n},O={ORG}") for n in ("B", "DR", "REP")
    ]
    for row in pending:
        portal.run(f"/pending-members/{row['id']}/authorize/")

    # USER: created in the mirror, every copy filled from the journal
    portal.run("/databases/", {"mirror": mirror["id"], "name": "user"})
    write(site, "USER", "created")

    # APP: a database of the primary's with its data, added; the others download it
    local_database_with_data(site, "APP")
    portal.run("/databases/", {"mirror": mirror["id"], "name": "app", "how": "add"})

    # LEGACY: added on the primary only, its files copied while dismounted and restored on the
    # others, which add, activate and catch it up (records written since the copy included)
    local_database_with_data(site, "LEGACY")
    portal.run(
        "/databases/", {"mirror": mirror["id"], "name": "legacy", "how": "add", "members": []}
    )
    on_a = portal.one(
        "/database-copies/", member=member_id(portal, "A"), database=database_id(portal, "LEGACY")
    )
    portal.run(f"/database-copies/{on_a['id']}/dismount/")
    source = plan.data_dir(plan.member("A")) / "db" / "LEGACY"
    for name in ("B", "DR", "REP"):
        copy_database_files(source, plan.data_dir(plan.member(name)) / "db" / "LEGACY")
    portal.run(f"/database-copies/{on_a['id']}/mount/")
    write(site, "LEGACY", "after-copy")
    for name in ("B", "DR", "REP"):
        member = member_id(portal, name)
        portal.run(f"/members/{member}/add-database/", {"name": "LEGACY"})
        copy = portal.one(
            "/database-copies/", member=member, database=database_id(portal, "LEGACY")
        )
        assert copy["status"] == "Needs Activation"
        portal.run(f"/database-copies/{copy['id']}/activate/")
        portal.run(f"/members/{member}/catchup/", {"databases": ["LEGACY"]})

    # the members say: one primary, an active backup, two connected asyncs, every copy current
    statuses = {name: site.agent_of(name).databases(name) for name in MEMBERS}
    assert statuses["A"]["status"] == "Primary"
    assert statuses["B"]["status"] == "Backup"
    assert statuses["DR"]["status"] == statuses["REP"]["status"] == "Connected"
    for name, answer in statuses.items():
        want = "Normal" if name == "A" else "Dejournaling"
        assert {db["name"]: db["status"] for db in answer["databases"]} == {
            "USER": want,
            "APP": want,
            "LEGACY": want,
        }, name
    info = site.agent_of("A").mirror_info("A")
    assert info["tls"] is True and info["qos_timeout_ms"] == 4000
    assert sorted((m["name"], m["type"], m["authorized"], m["dn"]) for m in info["members"]) == [
        (n, MEMBERS[n], True, f"CN={n},O={ORG}") for n in sorted(MEMBERS)
    ]
    # the data itself: the reporting async reads what was written before and after the copy
    with Client([plan.member("REP").superserver], timeout=30, **reach(site, "REP")) as reader:
        assert reader.get("LEGACY", "E2E", ("after-copy", ROWS - 1)) == f"after-copy {ROWS - 1}"
        assert reader.get("APP", "E2E", ("existing", 0)) == "existing 0"
        assert reader.get("USER", "E2E", ("created", 7)) == "created 7"

    # and the portal recorded what the members answered
    rows = portal.get("/members/", mirror=mirror["id"])["results"]
    assert {m["name"]: (m["status"], m["authorization"]) for m in rows} == {
        "A": ("Primary", "authorized"),
        "B": ("Backup", "authorized"),
        "DR": ("Connected", "authorized"),
        "REP": ("Connected", "authorized"),
    }


def member_id(portal, name: str) -> int:
    return portal.one("/members/", name=name)["id"]


def database_id(portal, name: str) -> int:
    return portal.one("/databases/", name=name)["id"]
