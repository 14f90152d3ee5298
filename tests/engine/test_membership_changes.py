"""Changing a running mirror: X.509 DN updates (guide §5.4), TLS turned on later (§4.10.4),
settings, addresses (§5.2), removing and leaving (§4.10.2-§4.10.4), with real instances."""

import datetime as dt
import json
import re
import socket

import pytest

from engine.client.app import Refused
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_membership_join import create_tls_mirror, join

pytestmark = pytest.mark.timeout(150)


def tls_mirror(hosts, *names):  # noqa: F811
    """A TLS mirror A (primary), B (failover), then asyncs, all authorized and connected."""
    a, *others = create_tls_mirror(hosts, *names)
    for host in others:
        join(host, a, "failover" if host.name == "B" else "dr")
        wait_for(lambda h=host: h.name in pending(a), 20, f"{host.name} pending")
        a.admin("authorize_member", {"member": host.name})
    for host in others:
        host.wait_state("Backup" if host.name == "B" else "Connected")
    return a, *others


def pending(primary) -> set[str]:
    return {p["name"] for p in primary.status()["pending_members"]}


def pending_dns(primary) -> dict:
    return {p["name"]: p["dn"] for p in primary.status()["pending_members"]}


def new_cert(hosts, name: str, org: str):  # noqa: F811
    """A replacement certificate for member `name` with another DN."""
    paths = hosts.cert(name, org=org, name=f"{name}-{org.replace(' ', '')}")
    return {"cert": str(paths.cert), "key": str(paths.key), "ca": str(hosts.certs / "ca.pem")}


def dn_of(host, member: str) -> str:
    return {m["name"]: m["dn"] for m in host.admin("mirror_info")["members"]}[member]


def test_a_new_primary_dn_is_taken_by_connected_members_and_awaits_the_disconnected(hosts):  # noqa: F811
    a, b, c = tls_mirror(hosts, "A", "B", "C")
    c.admin("stop_mirroring")
    answer = a.admin("set_tls", new_cert(hosts, "A", "Renewed"))
    assert answer["dn_changed"] and answer["dn"] == "CN=A,O=Renewed"
    # connected: propagated and authorized at once
    wait_for(lambda: dn_of(b, "A") == "CN=A,O=Renewed", 15, "B took A's new DN")
    b.admin("stop_mirroring")
    b.admin("start_mirroring")
    b.wait_state("Backup")
    # disconnected: pending on the member at its next connection, to be authorized there
    c.admin("start_mirroring")
    waiting = c.wait_state("Waiting")
    assert "presents a new certificate DN" in waiting["waiting_reason"]
    assert waiting["dn_updates"] == [{"member": "A", "dn": "CN=A,O=Renewed"}]
    with pytest.raises(Refused, match="only the primary"):
        c.admin("reject_dn_update", {"member": "A"})
    c.admin("authorize_dn_update", {"member": "A"})
    c.wait_state("Connected")
    assert dn_of(c, "A") == "CN=A,O=Renewed"


def test_a_new_async_dn_waits_for_the_primary_connected_or_not(hosts):  # noqa: F811
    a, b, c, d = tls_mirror(hosts, "A", "B", "C", "D")
    # connected: the member reconnects with its new certificate and is held
    c.admin("set_tls", new_cert(hosts, "C", "Renewed"))
    wait_for(lambda: a.status()["dn_updates"], 15, "the primary lists C's update")
    # with the certificate that presented it (docs/hardening.md, Membership)
    [update] = a.status()["dn_updates"]
    assert update["member"] == "C" and update["dn"] == "CN=C,O=Renewed"
    assert update["issuer"] == "CN=Mirror Portal throwaway CA,O=Mirror Portal"
    assert "awaits authorization" in c.wait_state("Waiting")["waiting_reason"]
    a.admin("authorize_dn_update", {"member": "C"})
    c.wait_state("Connected")
    assert dn_of(b, "C") == "CN=C,O=Renewed"  # the authorized DN went to every member
    # disconnected: the update shows up on the primary at the next connection; rejected,
    # the member stays out
    d.admin("stop_mirroring")
    d.admin("set_tls", new_cert(hosts, "D", "Renewed"))
    d.admin("start_mirroring")
    wait_for(lambda: a.status()["dn_updates"], 15, "the primary lists D's update")
    a.admin("reject_dn_update", {"member": "D"})
    assert d.wait_state("Waiting")
    assert dn_of(a, "D") == "CN=D,O=Mirror Portal"


def test_tls_turned_on_for_a_running_mirror_makes_every_member_authorized_anew(hosts):  # noqa: F811
    hosts.make_ca()
    a, b, c = (hosts.add(n) for n in ("A", "B", "C"))
    a.admin("mirror_create", {"mirror": "LATER", "private": a.private})
    a.after_restart()
    for host, mtype in ((b, "failover"), (c, "dr")):
        arg = {"mirror": "LATER", "address": a.superserver, "type": mtype}
        host.admin("mirror_join", {**arg, "private": host.private} if mtype == "failover" else arg)
    b.wait_state("Backup")
    c.wait_state("Connected")
    with pytest.raises(Refused, match="set up TLS on member A first"):
        a.admin("edit_mirror", {"tls": True})
    for host in (a, b, c):  # step (a): every member gets its TLS files
        hosts.cert(host.name)
        host.set_tls(hosts.certs)
    result = a.admin("edit_mirror", {"tls": True})
    assert result["changed"] == ["tls"] and result["links_restarted"]
    wait_for(
        lambda: pending_dns(a) == {"B": "CN=B,O=Mirror Portal", "C": "CN=C,O=Mirror Portal"},
        20,
        "B and C pending with their DNs",
    )
    for name in ("B", "C"):
        a.admin("authorize_member", {"member": name})
    b.wait_state("Backup")
    c.wait_state("Connected")
    rows = {m["member"]: m for m in a.status()["members"]}
    assert rows["B"]["codec"] == "lz4"  # System Selected over TLS
    assert c.admin("mirror_info")["tls"] is True


def test_settings_edits_are_the_primarys_and_reach_the_members(hosts):  # noqa: F811
    a, b, c = tls_mirror(hosts, "A", "B", "C")
    with pytest.raises(Refused, match="only the primary"):
        c.admin("edit_mirror", {"qos_timeout_ms": 5000})
    with pytest.raises(Refused, match="cannot be changed"):
        a.admin("edit_mirror", {"name": "OTHER"})
    with pytest.raises(Refused, match="is not one of"):
        a.admin("edit_mirror", {"async_compression": "Sometimes"})
    with pytest.raises(Refused, match="from 100 to 600000"):
        a.admin("edit_mirror", {"qos_timeout_ms": 1})
    result = a.admin(
        "edit_mirror", {"async_compression": "Compressed", "async_compression_type": "lz4"}
    )
    assert result["links_restarted"]

    def codec_of_c():
        return {m["member"]: m.get("codec") for m in a.status()["members"]}.get("C")

    wait_for(lambda: codec_of_c() == "lz4", 15, "C reconnected with lz4")
    a.admin("edit_mirror", {"qos_timeout_ms": 6000})
    wait_for(lambda: c.admin("mirror_info")["qos_timeout_ms"] == 6000, 10, "C has the new QoS")
    assert b.admin("mirror_info")["async_compression"] == "Compressed"


def test_addresses_are_edited_on_the_primary_and_propagated(hosts):  # noqa: F811
    a, b, c = tls_mirror(hosts, "A", "B", "C")
    host = c.superserver.split(":")[0]
    with pytest.raises(Refused, match="edited on the primary"):
        c.admin("update_member_address", {"member": "C", "private": c.private})
    with pytest.raises(Refused, match="superserver port is changed on the member itself"):
        a.admin("update_member_address", {"member": "C", "superserver": f"{host}:1"})
    with pytest.raises(Refused, match="used by another member"):
        a.admin("update_member_address", {"member": "C", "private": b.private})
    a.admin("update_member_address", {"member": "C", "private": "localhost:" + c.private[10:]})
    wait_for(
        lambda: (
            {m["name"]: m["private"] for m in c.admin("mirror_info")["members"]}["C"]
            == "localhost:" + c.private[10:]
        ),
        15,
        "C has its new address",
    )
    c.wait_state("Connected")
    # a member cut off from the primary may fix the primary's address (§5.2, exception 2)
    c.admin("stop_mirroring")
    c.admin("update_member_address", {"member": "A", "private": "localhost:" + a.private[10:]})
    assert {m["name"]: m["private"] for m in c.admin("mirror_info")["members"]}["A"] == (
        "localhost:" + a.private[10:]
    )


def test_removing_and_leaving_keep_or_drop_the_mirrored_attribute(hosts):  # noqa: F811
    a, b, c, d = tls_mirror(hosts, "A", "B", "C", "D")
    a.admin("create_database", "USER")
    for host in (b, c, d):
        host.admin("create_database", "USER")
    wait_for(lambda: d.admin("digest", "USER") == a.admin("digest", "USER"), 15, "D has USER")
    with pytest.raises(Refused, match="as the last member: remove B, C, D first"):
        a.admin("remove_mirror_config", {})

    # removed on the primary: the member is told, then removes its configuration, keeping
    # its databases' mirrored attribute (they will need Activate and Catchup)
    a.admin("remove_member", {"member": "C"})
    assert "removed from the mirror" in c.wait_state("Waiting")["waiting_reason"]
    c.admin("remove_mirror_config", {"remove_db_attribute": False})
    assert c.wait_state("Not Initialized")["type"] == "Not Member"
    kept = json.loads((c.data_dir / "databases.json").read_text())["databases"]
    assert [(e["name"], e["activated"]) for e in kept] == [("USER", False)]

    # leaving from the member: the primary drops it; the attribute removed
    d.admin("leave_mirror", {"remove_db_attribute": True})
    d.wait_state("Not Initialized")
    wait_for(
        lambda: {m["name"] for m in a.admin("mirror_info")["members"]} == {"A", "B"},
        15,
        "the primary dropped C and D",
    )
    assert not (d.data_dir / "databases.json").exists()
    assert b.wait_state("Backup")


def test_a_member_certificate_near_expiry_is_reported(hosts):  # noqa: F811
    hosts.make_ca()
    a = hosts.add("A")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    hosts.cert("A", not_after=soon)
    a.set_tls(hosts.certs)
    info = a.status()["tls"]
    assert info["expired"] is False and 1 < info["days_left"] <= 2
    a.admin("mirror_create", {"mirror": "SOON", "private": a.private, "settings": {"tls": True}})
    member = a.after_restart()
    assert member["tls"]["subject_dn"] == "CN=A,O=Mirror Portal"
    assert member["tls"]["not_after"] == info["not_after"]


def test_address_validation_says_what_answers_at_a_members_address(hosts):  # noqa: F811
    a, c, e = (hosts.add(n) for n in ("A", "C", "E"))
    a.admin("mirror_create", {"mirror": "ADDR", "private": a.private})
    a.after_restart()
    c.admin("mirror_join", {"mirror": "ADDR", "address": a.superserver, "type": "dr"})
    assert "waiting_reason" not in c.wait_state("Connected")
    # the primary records another instance's address for C: a copied host, say
    a.admin("update_member_address", {"member": "C", "private": e.superserver})
    st = wait_for(
        lambda: (s := c.status()).get("waiting_reason") and s, 15, "C reports the address"
    )
    assert (
        "a different instance (E) answers at this member's private address"
        in (st["waiting_reason"])
    )
    assert st["status"] == "Waiting"
    # the host's address changed: nothing answers at the recorded one
    port = c.superserver.split(":")[1]
    a.admin("update_member_address", {"member": "C", "superserver": f"127.0.0.2:{port}"})
    wait_for(
        lambda: (
            "nothing answers at this member's superserver address 127.0.0.2"
            in c.status().get("waiting_reason", "")
        ),
        15,
        "C reports nothing answering",
    )


def test_a_rejected_dn_stays_refused_until_the_member_brings_a_newer_one(hosts):  # noqa: F811
    a, c = tls_mirror(hosts, "A", "C")
    c.admin("set_tls", new_cert(hosts, "C", "Renewed"))
    wait_for(lambda: a.status()["dn_updates"], 15, "the primary lists C's update")
    answer = a.admin("reject_dn_update", {"member": "C"})
    assert answer == {"member": "C", "rejected": True, "dn": "CN=C,O=Renewed"}
    # C asks again with the same certificate: refused for that reason, not listed anew
    refused = "certificate DN 'CN=C,O=Renewed' was rejected on the primary"
    wait_for(lambda: refused in c.status().get("waiting_reason", ""), 15, "C told rejected")
    assert a.status()["dn_updates"] == []
    assert a.admin("mirror_info")["dn_updates"] == {}
    # the primary remembers it across a restart
    a.stop()
    a.start()
    wait_for(lambda: a.log().count(refused) == 2, 20, "the restarted primary refuses C again")
    assert a.status()["dn_updates"] == []
    assert dn_of(a, "C") == "CN=C,O=Mirror Portal"
    # another certificate is a new update, which the primary may authorize
    c.admin("set_tls", new_cert(hosts, "C", "Newer"))
    wait_for(
        lambda: (
            [(u["member"], u["dn"]) for u in a.status()["dn_updates"]] == [("C", "CN=C,O=Newer")]
        ),
        15,
        "the primary lists C's newer DN",
    )
    a.admin("authorize_dn_update", {"member": "C"})
    c.wait_state("Connected")
    assert dn_of(c, "C") == "CN=C,O=Newer"


def plain_mirror(hosts, *names, mirror: str = "PLAIN"):  # noqa: F811
    """A mirror without TLS: A primary, B backup, the others DR asyncs, all connected."""
    a, *others = (hosts.add(n) for n in names)
    a.admin("mirror_create", {"mirror": mirror, "private": a.private})
    a.after_restart()
    for host in others:
        arg = {"mirror": mirror, "address": a.superserver, "type": "dr"}
        if host.name == "B":
            arg.update(type="failover", private=host.private)
        host.admin("mirror_join", arg)
    for host in others:
        host.wait_state("Backup" if host.name == "B" else "Connected")
    return a, *others


def rows_on(primary) -> dict:
    return {m["member"]: m for m in primary.status()["members"]}


def connections_of(primary, member: str) -> int:
    """How many times the primary has taken a data channel from `member` (its log)."""
    return len(re.findall(rf"member {member} \(\w+\) connected from", primary.log()))


def test_a_compression_edit_restarts_only_the_links_it_applies_to(hosts):  # noqa: F811
    a, b, c = plain_mirror(hosts, "A", "B", "C")
    wait_for(lambda: rows_on(a)["B"]["journal_transfer"] == "Active", 20, "B Active")
    b_before, c_before = connections_of(a, "B"), connections_of(a, "C")

    result = a.admin(
        "edit_mirror", {"async_compression": "Compressed", "async_compression_type": "lz4"}
    )
    assert result["links_restarted"]
    wait_for(lambda: rows_on(a)["C"].get("codec") == "lz4", 15, "C reconnected with lz4")
    assert connections_of(a, "C") == c_before + 1
    assert connections_of(a, "B") == b_before  # the backup's link was left alone ...
    assert rows_on(a)["B"]["journal_transfer"] == "Active"  # ... and stays Active

    a.admin(
        "edit_mirror", {"failover_compression": "Compressed", "failover_compression_type": "zlib"}
    )
    wait_for(lambda: rows_on(a)["B"].get("codec") == "zlib", 15, "B reconnected with zlib")
    assert connections_of(a, "B") == b_before + 1
    assert connections_of(a, "C") == c_before + 1


def test_a_parallel_dejournaling_edit_reaches_running_members(hosts):  # noqa: F811
    a, b, c = plain_mirror(hosts, "A", "B", "C")
    assert c.status()["dejournaling_parallel"] is True  # a DR async under "failover+dr"
    c_before = connections_of(a, "C")

    result = a.admin("edit_mirror", {"parallel_dejournaling": "failover"})
    assert result["changed"] == ["parallel_dejournaling"] and not result["links_restarted"]
    wait_for(lambda: c.status()["dejournaling_parallel"] is False, 15, "C dejournals serially")
    assert b.status()["dejournaling_parallel"] is True  # failover members always in parallel
    a.admin("edit_mirror", {"parallel_dejournaling": "all"})
    wait_for(lambda: c.status()["dejournaling_parallel"] is True, 15, "C in parallel again")
    assert connections_of(a, "C") == c_before  # without reconnecting, nor restarting
    assert c.status()["status"] == "Connected"


def members_superserver(host) -> dict:
    return {m["name"]: m["superserver"] for m in host.admin("mirror_info")["members"]}


def test_a_dr_changes_its_own_superserver_port_and_the_mirror_learns_it(hosts):  # noqa: F811
    a, b, c = plain_mirror(hosts, "A", "B", "C")
    with pytest.raises(Refused, match="changed on the member itself"):
        a.admin("update_member_address", {"member": "C", "superserver": "127.0.0.1:1"})
    with pytest.raises(Refused, match="member B's address in mirror PLAIN"):
        c.admin("set_superserver_port", {"port": int(b.private.rsplit(":", 1)[1])})
    with socket.socket() as busy:  # something else listens on the port asked for
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(Refused, match=f"port {taken} on 127.0.0.1 is in use"):
            c.admin("set_superserver_port", {"port": taken})
    assert c.status()["status"] == "Connected"  # refused: nothing changed

    (port,) = hosts.ports(1)
    old = c.superserver
    answer = c.admin("set_superserver_port", {"port": port})
    assert answer == {
        "superserver": f"127.0.0.1:{port}",
        "previous": old,
        "mirrors": ["PLAIN"],
        "restarting": True,
    }
    c.superserver = f"127.0.0.1:{port}"
    assert "waiting_reason" not in c.wait_state("Connected")  # it answers at the new port
    for host in (a, b, c):
        wait_for(
            lambda h=host: members_superserver(h)["C"] == c.superserver,
            15,
            f"{host.name} knows C's new superserver",
        )
    with pytest.raises(ConnectionRefusedError):  # nothing answers at the old port
        socket.create_connection(("127.0.0.1", int(old.rsplit(":", 1)[1])), 2).close()
    # it stays: the restarted instance reads its port from node.json
    node = json.loads((c.data_dir / "node.json").read_text())
    assert node["superserver"] == c.superserver


def test_the_last_primary_removes_its_configuration_in_two_steps_keeping_its_data(hosts):  # noqa: F811
    a, c = tls_mirror(hosts, "A", "C")
    a.admin("create_database", "USER")
    with a.client() as cl:
        cl.set("USER", "K", (1,), "kept")
    c.admin("create_database", "USER")
    with pytest.raises(Refused, match="as the last member: remove C first"):
        a.admin("remove_mirror_config", {})

    # C goes with its databases' mirrored attribute and its TLS configuration
    out = c.admin("remove_mirror_config", {"remove_db_attribute": True, "remove_tls": True})
    assert out["removed"] and out["tls_removed"] and out["db_attribute_removed"]
    assert c.wait_state("Not Initialized")["tls"] is None
    assert json.loads((c.data_dir / "node.json").read_text())["tls_cert"] is None
    assert not (c.data_dir / "databases.json").exists()
    wait_for(lambda: members_superserver(a).keys() == {"A"}, 15, "the primary dropped C")

    # step 1: the Join-Mirror flag is cleared and A restarts without running as the member
    first = a.admin("remove_mirror_config", {"remove_db_attribute": False})
    assert first["step"] == 1 and first["join_flag_cleared"] and not first["removed"]
    st = wait_for(
        lambda: (s := a.status()).get("waiting_reason") and s, 20, "A restarted, flag cleared"
    )
    assert st["type"] == "Not Member" and "Join-Mirror flag of mirror DEMO" in st["waiting_reason"]
    with pytest.raises(Refused, match="Join-Mirror flag"):
        a.admin("mirror_create", {"mirror": "OTHER", "private": a.private})
    assert (a.data_dir / "mirror.json").exists()

    # step 2: the configuration goes; the databases stay, with the attribute kept as asked
    second = a.admin("remove_mirror_config", {"remove_db_attribute": False})
    assert second["step"] == 2 and second["removed"] and second["restarting"] is False
    assert not (a.data_dir / "mirror.json").exists()
    assert "waiting_reason" not in a.status()
    kept = json.loads((a.data_dir / "databases.json").read_text())["databases"]
    assert [(e["name"], e["activated"]) for e in kept] == [("USER", False)]
    assert (a.data_dir / "db" / "USER").exists()
    assert a.status()["tls"]["subject_dn"] == "CN=A,O=Mirror Portal"  # its TLS kept
    with pytest.raises(Refused, match="has no mirror configuration"):
        a.admin("remove_mirror_config", {})
