"""Mirror membership through the agent (engine/agent/mirror.py): instances that start as
non-members are made into a TLS mirror by agent calls alone, pending members are
authorized or rejected, the limits of guide §3.1.2 come back as 409 with the instance's
reason, malformed bodies are 400, and nobody without an allowed certificate gets in.
Real instance processes, a real agent process over mutual TLS, HTTP on loopback."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from cryptography.hazmat.primitives import hashes

from engine.agent.mirror import MIRROR_ROUTES
from engine.client.agent import AgentError
from engine.wire.tls import load_certificate
from tests.engine.agent_fixtures import (  # noqa: F401
    follow_fixture,
    pki_fixture,
    start_agent_fixture,
)
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import InstanceProcess, hosts  # noqa: F401
from tests.engine.test_agent_api_spec import SPEC_PATH, validator

pytestmark = pytest.mark.timeout(180)
DN = "CN={},O=Mirror Portal"
SPEC = yaml.safe_load(SPEC_PATH.read_text())


def conforms(schema: str, body: dict) -> dict:
    """The answer, after checking it against its schema in engine/agent_api.yaml."""
    validator(SPEC, schema).validate(body)
    return body


def entries(members) -> list[dict]:
    """[[instances]] of an agent config for instances started with --data-dir."""
    return [
        {"name": h.name, "superserver": h.superserver, "data_dir": str(h.data_dir)} for h in members
    ]


@pytest.fixture
def site(hosts, pki, start_agent):  # noqa: F811
    """Factory: site("A", "B", ..., tls=True) -> (agent, api client, hosts).  The instances
    start as non-members; with tls, each gets its certificate through the agent."""
    clients = []

    def factory(*names: str, tls: bool = True):
        if tls:
            hosts.make_ca()
        members = start_hosts(hosts, names)
        agent = start_agent(pki=pki, instances=entries(members))
        api = agent.client()
        clients.append(api)
        for host in members if tls else ():
            assert give_tls(hosts, api, host.name)["dn"] == DN.format(host.name)
        return agent, api, members

    yield factory
    for api in clients:
        api.close()


def start_hosts(hosts, names) -> list[InstanceProcess]:  # noqa: F811
    """Instance processes started side by side (each takes a moment to answer)."""
    members = []
    for name in names:
        superserver, private = hosts.ports(2)
        members.append(
            hosts.hosts.setdefault(name, InstanceProcess(hosts.root, name, superserver, private))
        )
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(InstanceProcess.start, members))
    return members


def give_tls(hosts, api, instance: str, **cert) -> dict:  # noqa: F811
    """A certificate for the instance (CN = its name) set through the agent."""
    paths = hosts.cert(instance, **cert)
    return api.set_tls(instance, paths.cert, paths.key, hosts.ca.cert_path)


def refusal(call, *args, **kw) -> AgentError:
    with pytest.raises(AgentError) as err:
        call(*args, **kw)
    return err.value


def status_of(api, name: str) -> str | None:
    try:
        return api.databases(name)["status"]
    except AgentError:
        return None  # restarting


def wait_status(api, name: str, status: str, timeout: float = 20.0) -> None:
    wait_for(lambda: status_of(api, name) == status, timeout, f"{name} {status}")


def pending(api, primary: str = "A") -> set[str]:
    return {m["name"] for m in api.mirror_info(primary)["members"] if not m["authorized"]}


def create(api, host, **settings) -> dict:
    out = api.create_mirror(host.name, "DEMO", host.private, settings=settings)
    assert api.wait_member(host.name)["role"] == "primary"
    return out


def secret_of(api, primary) -> str:
    """What a join to a mirror without TLS needs, handed from the primary's agent."""
    return api.mirror_secret(primary.name)


def join(api, host, primary, mtype: str, mirror: str = "DEMO", **extra) -> dict:
    if mtype == "failover":
        extra["private"] = host.private
    extra.setdefault("secret", secret_of(api, primary))
    out = api.join_mirror(host.name, mirror, primary.superserver, mtype, **extra)
    api.wait_member(host.name)
    return out


def test_a_tls_mirror_is_built_through_agent_calls_alone(site):
    _, api, (a, b, c, d) = site("A", "B", "C", "D")
    assert status_of(api, "A") == "Not Initialized"
    err = refusal(api.mirror_info, "A")
    assert err.status == 409 and "not a mirror member" in err.message

    out = conforms(
        "CreateMirrorResult",
        create(api, a, tls=True, qos_timeout_ms=4000, async_compression="Compressed"),
    )
    assert out["mirror"] == "DEMO" and out["role"] == "primary" and out["restarting"] is True
    assert out["dn"] == DN.format("A")
    assert status_of(api, "A") == "Primary"
    joined = conforms("JoinMirrorResult", join(api, b, a, "failover"))
    assert joined["pending"] is True and joined["primary"] == "A"
    join(api, c, a, "dr")
    join(api, d, a, "ro_reporting")
    wait_for(lambda: pending(api) == {"B", "C", "D"}, 20, "B, C and D pending on A")
    wait_status(api, "B", "Waiting")
    wait_status(api, "C", "Waiting")
    dns = {m["name"]: m["dn"] for m in api.mirror_info("A")["members"]}
    assert dns == {n: DN.format(n) for n in "ABCD"}

    for name in "BCD":
        out = conforms("MemberResult", api.authorize_member("A", name))
        assert out["member"] == name and out["authorized"] is True and out["already"] is False
    assert api.authorize_member("A", "B")["already"] is True  # a retry changes nothing
    wait_status(api, "B", "Backup")
    wait_status(api, "C", "Connected")
    wait_status(api, "D", "Connected")
    assert {r["name"]: r["role"] for r in api.instances()} == {
        "A": "primary",
        "B": "backup",
        "C": "async",
        "D": "async",
    }
    wait_for(
        lambda: (
            {m["member"]: m["journal_transfer"] for m in a.status()["members"]}["B"] == "Active"
        ),
        20,
        "B's journal transfer Active",
    )
    # every member holds the primary's configuration, everyone authorized
    info = conforms("MirrorInfo", api.mirror_info("D"))
    assert info["member"] == "D" and info["role"] == "async" and info["primary"] == "A"
    assert {m["name"]: m["authorized"] for m in info["members"]} == dict.fromkeys("ABCD", True)
    assert info["tls"] is True and info["qos_timeout_ms"] == 4000
    assert info["version"] == api.mirror_info("A")["version"]
    assert pending(api) == set()
    # each member's host agent, which its failover partner may ask (docs/takeover.md)
    assert {m["name"]: m["agent"] for m in info["members"]} == dict.fromkeys("ABCD", api.url)


def test_a_pending_member_rejected_through_the_agent_stays_out(site):
    _, api, (a, e) = site("A", "E")
    create(api, a, tls=True)
    join(api, e, a, "dr")
    wait_for(lambda: pending(api) == {"E"}, 20, "E pending")
    assert api.reject_member("A", "E") == {
        "instance": "A",
        "operation": "reject-member",
        "member": "E",
        "rejected": True,
    }
    wait_for(lambda: "rejected" in (e.status().get("waiting_reason") or ""), 15, "E told")
    assert status_of(api, "E") == "Waiting"
    assert {m["name"] for m in api.mirror_info("A")["members"]} == {"A"}
    err = refusal(api.authorize_member, "A", "E")
    assert err.status == 409 and err.code == "refused" and "no member named 'E'" in err.message
    # on a member that is not the primary, pending members are not its to decide
    err = refusal(api.reject_member, "E", "A")
    assert err.status == 409 and "only the primary" in err.message


def test_each_limit_on_members_is_a_409_with_the_reason_and_the_rules_code(site):
    _, api, (a, b, c) = site("A", "B", "C", tls=False)
    create(api, a)
    join(api, b, a, "failover")
    wait_status(api, "B", "Backup")

    err = refusal(api.join_mirror, "C", "DEMO", a.superserver, "failover", private=c.private)
    assert err.status == 409 and err.code == "refused"
    assert "already has 2 failover members" in err.message
    assert err.rule == "too_many_failover_members"  # the code the portal's validation gives
    err = refusal(api.join_mirror, "C", "DEMO", a.superserver, "dr", member="B")
    assert err.status == 409 and "already has a member named B" in err.message
    assert status_of(api, "C") == "Not Initialized"  # refused before anything changed

    join(api, c, b, "dr")  # through the backup's address
    wait_status(api, "C", "Connected")
    # a DR async and a failover member belong to one mirror; a member creates none
    err = refusal(api.join_mirror, "C", "OTHER", a.superserver, "dr")
    assert err.status == 409 and err.code == "refused"
    assert "a DR async belongs to one mirror only" in err.message
    assert err.rule == "dr_in_one_mirror"
    err = refusal(api.join_mirror, "B", "OTHER", a.superserver, "ro_reporting")
    assert err.status == 409 and "a failover member belongs to one mirror only" in err.message
    err = refusal(api.create_mirror, "A", "OTHER", a.private)
    assert err.status == 409 and "already a member of mirror DEMO" in err.message
    assert api.mirror_info("C")["name"] == "DEMO"
    wait_status(api, "C", "Connected")


def test_a_reporting_async_in_two_mirrors_is_told_which_by_the_query(site, follow):  # noqa: F811
    agent, api, (a, b, r) = site("A", "B", "R", tls=False)
    api.create_mirror("A", "SALES", a.private)
    api.create_mirror("B", "STOCK", b.private)
    for name in "AB":
        api.wait_member(name)
    join(api, r, a, "ro_reporting", mirror="SALES")
    wait_status(api, "R", "Connected")
    err = refusal(api.join_mirror, "R", "STOCK", b.superserver, "dr")
    assert err.status == 409 and "joins further mirrors as the same kind" in err.message
    api.join_mirror("R", "STOCK", b.superserver, "ro_reporting", secret=secret_of(api, b))
    api.wait_member("R", mirror="STOCK")
    wait_status(api, "R", "2/2")
    f = follow(agent)
    snap = conforms("StatusSnapshot", f.next())
    assert set(snap["instances"]["R"]["mirrors"]) == {"SALES", "STOCK"}

    err = refusal(api.mirror_info, "R")
    assert err.status == 409 and "say which with 'mirror'" in err.message
    # databases: created in the mirror named, then found by name
    api.create_database("A", "ORDERS")
    api.create_database("B", "ITEMS")
    assert refusal(api.create_database, "R", "ORDERS").status == 409
    api.create_database("R", "ORDERS", mirror="SALES")
    api.create_database("R", "ITEMS", mirror="STOCK")

    def rows():  # a member's create starts the copy's catch-up, which ends in a moment
        return {d["name"]: d["status"] for d in api.databases("R", mirror="STOCK")["databases"]}

    wait_for(lambda: rows() == {"ITEMS": "Dejournaling"}, 15, "R's ITEMS dejournaling")
    assert api.databases("R", mirror="SALES")["databases"][0]["name"] == "ORDERS"
    assert api.stop_mirroring("R", mirror="STOCK")["status"] == "Stopped"
    wait_status(api, "R", "1/2")
    api.start_mirroring("R", mirror="STOCK")
    wait_status(api, "R", "2/2")
    assert api.mirror_info("R", mirror="stock")["name"] == "STOCK"
    assert refusal(api.mirror_info, "R", mirror="NOT A NAME").status == 400
    err = refusal(api.mirror_info, "R", mirror="OTHER")
    assert err.status == 409 and "not a member of mirror OTHER" in err.message
    out = api.leave_mirror("R", remove_db_attribute=True, mirror="STOCK")
    assert out["mirror"] == "STOCK" and out["restarting"] is True
    wait_for(lambda: status_of(api, "R") == "Connected", 20, "R only in SALES")
    assert api.mirror_info("R")["name"] == "SALES"
    f.until_state(lambda s: s.instances["R"]["mirrors"] is None, 20, "R's record for one mirror")
    wait_for(lambda: [m["name"] for m in api.mirror_info("B")["members"]] == ["B"], 15, "B drops R")


@pytest.mark.timeout(300)
def test_the_fifteenth_async_member_is_refused(site):
    names = ["A"] + [f"R{i:02}" for i in range(1, 16)]
    _, api, (a, *asyncs) = site(*names, tls=False)
    create(api, a)
    types = ("dr", "ro_reporting", "rw_reporting")
    secret = secret_of(api, a)
    for i, host in enumerate(asyncs[:14]):
        api.join_mirror(host.name, "DEMO", a.superserver, types[i % 3], secret=secret)

    def members_on_a():
        try:
            return len(api.mirror_info("A")["members"])
        except AgentError:
            return 0

    wait_for(lambda: members_on_a() == 15, 60, "14 asyncs registered on the primary")
    err = refusal(api.join_mirror, asyncs[14].name, "DEMO", a.superserver, "dr")
    assert err.status == 409 and err.code == "refused"
    assert "has 14 async members, the most" in err.message
    assert status_of(api, asyncs[14].name) == "Not Initialized"
    for host in asyncs[:14]:
        wait_status(api, host.name, "Connected", 30)


def test_settings_addresses_removal_and_leaving_through_the_agent(site):
    _, api, (a, b, c) = site("A", "B", "C", tls=False)
    create(api, a)
    join(api, b, a, "failover")
    join(api, c, a, "dr")
    wait_status(api, "C", "Connected")

    out = api.edit_mirror(
        "A", qos_timeout_ms=6000, async_compression="Compressed", async_compression_type="lz4"
    )
    conforms("EditMirrorResult", out)
    assert out["changed"] == ["async_compression", "async_compression_type", "qos_timeout_ms"]
    assert out["links_restarted"] is True
    wait_for(lambda: api.mirror_info("C")["qos_timeout_ms"] == 6000, 15, "C has the new QoS")
    err = refusal(api.edit_mirror, "C", qos_timeout_ms=5000)
    assert err.status == 409 and "only the primary" in err.message
    err = refusal(api.edit_mirror, "A", qos_timeout_ms=4611686018427387904)
    assert (err.status, err.rule) == (400, "invalid_qos_timeout")
    assert api.mirror_info("A")["qos_timeout_ms"] == 6000

    moved = "localhost:" + c.private.rsplit(":", 1)[1]
    out = conforms("MemberResult", api.update_member_address("A", "C", private=moved))
    assert out["member"] == "C" and out["private"] == moved
    wait_for(
        lambda: {m["name"]: m["private"] for m in api.mirror_info("C")["members"]}["C"] == moved,
        15,
        "C has its new address",
    )
    err = refusal(api.update_member_address, "A", "C", superserver="127.0.0.1:1")
    assert err.status == 409 and "changed on the member itself" in err.message

    err = refusal(api.remove_mirror_config, "A")
    assert err.status == 409 and "as the last member: remove B, C first" in err.message
    assert conforms("MemberResult", api.remove_member("A", "C"))["removed"] is True
    wait_for(
        lambda: "removed" in (c.status().get("waiting_reason") or ""), 15, "C told it is removed"
    )
    out = api.remove_mirror_config("C", remove_db_attribute=True)
    conforms("RemoveMirrorConfigResult", out)
    assert out["restarting"] is True and out["db_attribute_removed"] is True
    assert out["removed"] is True and out["tls_removed"] is False
    wait_status(api, "C", "Not Initialized")
    assert api.leave_mirror("B")["left"] is True
    wait_status(api, "B", "Not Initialized")
    wait_for(lambda: [m["name"] for m in api.mirror_info("A")["members"]] == ["A"], 15, "A alone")
    assert api.leave_mirror("A")["mirror"] == "DEMO"  # the last member may leave
    wait_status(api, "A", "Not Initialized")
    assert refusal(api.mirror_info, "A").status == 409
    # a non-member can start again: B creates a mirror of its own
    create(api, b)
    assert api.mirror_info("B")["members"][0]["name"] == "B"


def test_tls_verified_port_moved_and_configuration_removed_through_the_agent(site, hosts):  # noqa: F811
    _, api, (a, b) = site("A", "B", tls=False)
    create(api, a)
    join(api, b, a, "failover")
    wait_status(api, "B", "Backup")
    hosts.make_ca()
    give_tls(hosts, api, "A")

    # Verify SSL: B has no TLS configuration, so TLS is not turned on unless told to
    report = conforms("VerifyTLSResult", api.verify_tls("A"))
    assert report["failing"] == ["B"] and report["unreachable"] == []
    err = refusal(api.edit_mirror, "A", tls=True)
    assert err.status == 409 and "B have no valid TLS configuration" in err.message
    out = conforms("EditMirrorResult", api.edit_mirror("A", tls=True, skip_verify=True))
    assert out["changed"] == ["tls"]
    assert {r["member"]: r["ok"] for r in out["verified"]} == {"A": True, "B": False}
    give_tls(hosts, api, "B")  # fixed afterwards: B connects and waits to be authorized
    wait_for(lambda: "B" in pending(api) and api.mirror_info("A")["members"][1]["dn"], 20)
    api.authorize_member("A", "B")
    wait_status(api, "B", "Backup")

    # the primary's own superserver port: the agent and the backup follow it
    (port,) = hosts.ports(1)
    moved = conforms("SuperserverResult", api.set_superserver_port("A", port))
    assert moved["superserver"] == f"127.0.0.1:{port}" and moved["restarting"] is True
    assert refusal(api.set_superserver_port, "A", 0).status == 400
    a.superserver = moved["superserver"]
    wait_status(api, "A", "Primary")
    wait_for(
        lambda: (
            {m["name"]: m["superserver"] for m in api.mirror_info("B")["members"]}["A"]
            == f"127.0.0.1:{port}"
        ),
        15,
        "B knows A's new superserver",
    )
    wait_status(api, "B", "Backup")

    # B goes with its TLS configuration; A, the last member, in two steps
    out = conforms("RemoveMirrorConfigResult", api.remove_mirror_config("B", remove_tls=True))
    assert out["tls_removed"] is True and "step" not in out
    wait_status(api, "B", "Not Initialized")
    assert b.status()["tls"] is None
    wait_for(lambda: len(api.mirror_info("A")["members"]) == 1, 15, "A alone")
    first = conforms("RemoveMirrorConfigResult", api.remove_mirror_config("A"))
    assert first["step"] == 1 and first["restarting"] is True and first["removed"] is False
    wait_for(
        lambda: "Join-Mirror" in (a.status().get("waiting_reason") or ""),
        20,
        "A restarted with the flag cleared",
    )
    second = conforms("RemoveMirrorConfigResult", api.remove_mirror_config("A"))
    assert second["step"] == 2 and second["removed"] is True and second["restarting"] is False
    assert refusal(api.mirror_info, "A").status == 409
    assert status_of(api, "A") == "Not Initialized"


def test_the_status_stream_carries_non_members_pending_members_dn_updates_and_expiry(
    site,
    hosts,  # noqa: F811
    follow,  # noqa: F811
):
    agent, api, (a, c) = site("A", "C")
    f = follow(agent)
    snap = conforms("StatusSnapshot", f.next())
    for name in "AC":
        record = snap["instances"][name]
        assert record["state"] == "up" and record["role"] is None and record["mirror"] is None
        assert (record["type"], record["status"]) == ("Not Member", "Not Initialized")
        assert record["certificate"]["subject_dn"] == DN.format(name)
        assert record["certificate"]["expired"] is False
        assert record["pending_members"] is None
    # a certificate set through the agent shows up at once with its expiry
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3, hours=1)
    give_tls(hosts, api, "C", not_after=soon, name="C-short")
    f.until_state(
        lambda s: s.instances["C"]["certificate"]["days_left"] == 3, what="C's new expiry"
    )

    create(api, a, tls=True)
    join(api, c, a, "dr")
    f.until_state(
        lambda s: [p["name"] for p in s.instances["A"]["pending_members"] or []] == ["C"],
        20,
        "C pending on A in the stream",
    )
    f.until_state(
        lambda s: "awaits authorization" in (s.instances["C"]["waiting_reason"] or ""),
        what="C's waiting reason",
    )
    api.authorize_member("A", "C")
    f.until_state(lambda s: s.instances["C"]["status"] == "Connected", 20, "C Connected")
    assert f.stream.instances["A"]["pending_members"] == []
    assert f.stream.instances["C"]["waiting_reason"] is None

    # C's certificate is renewed with another DN: the primary must authorize the update
    renewed = conforms("TLSResult", give_tls(hosts, api, "C", org="Renewed", name="C-renewed"))
    assert renewed["dn"] == "CN=C,O=Renewed" and renewed["dn_changed"] is True
    f.until_state(
        lambda s: (
            [(u["member"], u["dn"]) for u in s.instances["A"]["dn_updates"] or []]
            == [("C", "CN=C,O=Renewed")]
        ),
        20,
        "C's DN update on A",
    )
    # the certificate that presented it passes through the agent (docs/hardening.md, Membership)
    [update] = f.stream.instances["A"]["dn_updates"]
    renewed_fp = load_certificate(hosts.certs / "C-renewed.pem").fingerprint(hashes.SHA256())
    assert update["fingerprint"] == renewed_fp.hex(":").upper()
    assert update["issuer"] == hosts.ca.dn
    info = api.mirror_info("A")
    assert info["dn_updates"] == {"C": "CN=C,O=Renewed"}
    assert info["dn_update_certs"]["C"]["fingerprint"] == update["fingerprint"]
    assert api.authorize_dn_update("A", "C") == {
        "instance": "A",
        "operation": "authorize-dn-update",
        "member": "C",
        "dn": "CN=C,O=Renewed",
    }
    f.until_state(lambda s: s.instances["A"]["dn_updates"] == [], what="no DN update left")
    f.until_state(lambda s: s.instances["C"]["status"] == "Connected", 20, "C back")
    assert f.stream.instances["C"]["certificate"]["subject_dn"] == "CN=C,O=Renewed"
    err = refusal(api.reject_dn_update, "A", "C")
    assert err.status == 409 and "no DN update" in err.message
    assert api.reload_tls("C")["dn_changed"] is False  # the same files: nothing new


BAD_BODIES = [b"null", b"[]", b'"x"', b"1e999", b"\xff\xfe{", b'{"x": 1}', b"[" * 30000]


def test_malformed_requests_are_400_and_the_agent_keeps_serving(site):
    agent, api, (a,) = site("A", tls=False)
    base = "/v1/instances/A"
    for method, path, _ in MIRROR_ROUTES:
        if method == "GET":
            continue
        path = path.replace("{name}", "A").replace("{member}", "B")
        for body in BAD_BODIES:
            status, _, data = api.request(method, path, body=body)
            assert status == 400, (method, path, body[:20], data)
    private = a.private
    joining = {"mirror": "DEMO", "address": "127.0.0.1:1"}
    bad = [
        ("POST", "/mirror", {"mirror": "DEMO"}, "missing 'private'"),
        ("POST", "/mirror", {"mirror": "A" * 16, "private": private}, "1-15 letters"),
        ("POST", "/mirror", {"mirror": "DEMO", "private": "nowhere"}, "host:port"),
        ("POST", "/mirror", {"mirror": "DEMO", "private": private, "member": "A B"}, "spaces"),
        ("POST", "/mirror", {"mirror": "DEMO", "private": private, "settings": []}, "JSON object"),
        ("PATCH", "/mirror", {"qos_timeout_ms": "100"}, "'qos_timeout_ms' must be an integer"),
        ("PATCH", "/mirror", {"qos_timeout_ms": True}, "must be an integer"),
        ("PATCH", "/mirror", {"qos_timeout_ms": 10}, "from 100 to 600000"),
        ("PATCH", "/mirror", {"tls": "yes"}, "'tls' must be a boolean"),
        ("PATCH", "/mirror", {"async_compression": 1}, "must be a string"),
        ("PATCH", "/mirror", {"async_compression": "Sometimes"}, "is not one of"),
        ("PATCH", "/mirror", {"name": "OTHER"}, "cannot be changed"),
        ("PATCH", "/mirror", {}, "at least one"),
        ("POST", "/mirror/join", {"mirror": "DEMO", "type": "dr"}, "missing 'address'"),
        ("POST", "/mirror/join", {**joining, "type": "x"}, "is not one of"),
        ("POST", "/mirror/join", {**joining, "type": "dr", "member": "R 1"}, "letters, digits"),
        ("POST", "/mirror/join", {**joining, "type": "failover"}, "needs 'private'"),
        ("POST", "/mirror/leave", {"remove_db_attribute": "yes"}, "must be a boolean"),
        ("PATCH", "/mirror/members/B", {}, "give 'superserver'"),
        ("PATCH", "/mirror/members/B", {"private": 5}, "must be a string"),
        ("POST", "/mirror/members/" + "M" * 33 + "/authorize", None, "1-32 characters"),
        ("PUT", "/tls", {"cert": "a.pem", "key": "/k", "ca": "/c"}, "absolute path"),
        ("PUT", "/tls", {"cert": "/a.pem", "key": "/k"}, "missing 'ca'"),
    ]
    for method, tail, body, reason in bad:
        err = refusal(api.call, method, base + tail, body=body)
        assert err.status == 400 and err.code == "bad_request", (tail, body, err)
        assert reason in err.message, (tail, body, err.message)
    assert agent.alive()
    assert api.health()["agent"] == "engine-agent"
    assert status_of(api, "A") == "Not Initialized"  # nothing reached the instance


def test_callers_without_an_allowed_certificate_get_nothing(site, pki, start_agent, hosts):  # noqa: F811
    agent, api, (a,) = site("A", tls=False)
    fill = {"{name}": "A", "{member}": "B"}
    body = {"mirror": "DEMO", "private": a.private}
    for who, status in ((None, 401), ("stranger", 403)):
        with agent.client(who) as outsider:
            for method, path, _ in MIRROR_ROUTES:
                for key, value in fill.items():
                    path = path.replace(key, value)
                err = refusal(outsider.call, method, path, body=body)
                assert err.status == status, (who, method, path, err)
    bearer = start_agent(instances=entries([a]))
    with bearer.client(credential="w" * 24) as outsider:
        assert refusal(outsider.create_mirror, "A", "DEMO", a.private).status == 401
    assert status_of(api, "A") == "Not Initialized"  # nobody created a mirror


def test_an_agent_without_mutual_tls_may_read_but_not_act_on_a_tls_mirror(site, start_agent):
    _, api, (a,) = site("A")
    create(api, a, tls=True)
    bearer = start_agent(instances=entries([a]))
    with bearer.client(credential=bearer.credential) as plain:
        assert status_of(plain, "A") == "Primary"
        assert plain.mirror_info("A")["name"] == "DEMO"
        err = refusal(plain.edit_mirror, "A", qos_timeout_ms=5000)
        assert err.status == 403 and "requires TLS" in err.message
        err = refusal(plain.create_database, "A", "USER")
        assert err.status == 403
    assert api.create_database("A", "USER")["status"] == "Normal"  # over mutual TLS it may
