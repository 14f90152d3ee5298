"""Creating and joining a mirror over TLS: pending members, authorize and reject, foreign and
expired certificates (guide §4.5, §4.7), with real instance processes."""

import socket
import ssl

import pytest

from engine.client.app import Refused
from engine.wire import tls
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def create_tls_mirror(hosts, *names):  # noqa: F811
    hosts.make_ca()
    members = [hosts.add(n, tls_files=True) for n in names]
    a = members[0]
    a.admin("mirror_create", {"mirror": "DEMO", "private": a.private, "settings": {"tls": True}})
    a.after_restart()
    return members


def join(host, primary, mtype, **extra):
    arg = {"mirror": "DEMO", "address": primary.superserver, "type": mtype, **extra}
    if mtype == "failover":
        arg["private"] = host.private
    return host.admin("mirror_join", arg)


def pending_names(primary) -> set[str]:
    return {p["name"] for p in primary.status()["pending_members"]}


def test_members_joining_a_tls_mirror_wait_for_authorization_then_connect(hosts):  # noqa: F811
    a, b, c, d = create_tls_mirror(hosts, "A", "B", "C", "D")
    assert a.status()["status"] == "Primary"
    assert join(b, a, "failover")["pending"] is True
    join(c, a, "dr")
    join(d, a, "ro_reporting")
    wait_for(lambda: pending_names(a) == {"B", "C", "D"}, 20, "three pending members")
    waiting = b.wait_state("Waiting")
    assert "awaits authorization on the primary" in waiting["waiting_reason"]
    pending = {p["name"]: p for p in a.status()["pending_members"]}
    assert pending["C"]["dn"] == "CN=C,O=Mirror Portal"
    # B asks again twice a second; the primary logs why it refuses only once
    asked = b.status()["data_channel_refusals"]
    wait_for(lambda: b.status()["data_channel_refusals"] >= asked + 3, what="three more attempts")
    assert a.log().count("member B awaits authorization on the primary") == 1

    for name in ("B", "C", "D"):
        a.admin("authorize_member", {"member": name})
    assert b.wait_state("Backup")["type"] == "Failover"
    assert c.wait_state("Connected")["type"] == "Disaster Recovery"
    assert d.wait_state("Connected")["type"] == "Read-Only Reporting"
    wait_for(
        lambda: (
            {m["member"]: m.get("journal_transfer") for m in a.status()["members"]}["B"] == "Active"
        ),
        20,
        "B Active",
    )
    assert a.status()["pending_members"] == []
    # every member holds the same configuration, authorized
    info = c.admin("mirror_info")
    assert {m["name"]: m["authorized"] for m in info["members"]} == dict.fromkeys("ABCD", True)
    assert info["version"] == a.admin("mirror_info")["version"]

    a.admin("create_database", "USER")
    with a.client() as cl:
        cl.set("USER", "K", (1,), "v")
    for member in (b, c):
        member.admin("create_database", "USER")
    wait_for(lambda: c.admin("digest", "USER") == a.admin("digest", "USER"), 20, "C converged")


def test_a_rejected_member_never_gets_the_journal_and_cannot_come_back_pending(hosts):  # noqa: F811
    a, c = create_tls_mirror(hosts, "A", "C")
    join(c, a, "dr")
    wait_for(lambda: pending_names(a) == {"C"}, 20, "C pending")
    assert a.admin("reject_member", {"member": "C"}) == {"member": "C", "rejected": True}
    st = c.wait_state("Waiting")
    wait_for(lambda: "rejected" in c.status().get("waiting_reason", ""), 10, "C told rejected")
    assert pending_names(a) == set()
    assert "C" not in {m["name"] for m in a.admin("mirror_info")["members"]}
    assert st["journal_transfer"] != "Caught up"
    # an authorized member cannot be "rejected"; a rejected one cannot be authorized
    with pytest.raises(Refused, match="no member named 'C'"):
        a.admin("authorize_member", {"member": "C"})


def test_a_certificate_from_another_ca_cannot_join_nor_read_the_journal(hosts, tmp_path):  # noqa: F811
    a, e = create_tls_mirror(hosts, "A", "E")
    rogue_ca = tls.make_ca(tmp_path / "rogue", name="Rogue CA")
    rogue = tls.make_cert(rogue_ca, tmp_path / "rogue", "E")
    # set_tls checks the certificate against the CA it is given: a mismatch is refused
    with pytest.raises(Refused, match="was not issued by the CA"):
        e.admin(
            "set_tls",
            {"cert": str(rogue.cert), "key": str(rogue.key), "ca": str(hosts.certs / "ca.pem")},
        )
    # with its own CA it is accepted locally, but the primary's TLS handshake fails: its
    # superserver speaks TLS too (docs/hardening.md, "Application port TLS"), so E cannot even
    # read the mirror's configuration
    e.admin(
        "set_tls",
        {"cert": str(rogue.cert), "key": str(rogue.key), "ca": str(rogue_ca.cert_path)},
    )
    with pytest.raises(Refused, match="cannot read the mirror from .*certificate verify failed"):
        join(e, a, "dr")
    assert pending_names(a) == set()
    assert "E" not in {m["name"] for m in a.admin("mirror_info")["members"]}
    # a raw client with that certificate gets no journal either
    ctx = tls.client_context(rogue.cert, rogue.key, rogue_ca.cert_path)
    host, port = a.private.split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
        ctx.wrap_socket(raw, server_hostname=host) as s,
    ):
        s.recv(1)


def test_an_expired_certificate_is_refused_with_its_date(hosts):  # noqa: F811
    hosts.make_ca()
    a = hosts.add("A")
    import datetime as dt

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    hosts.cert("A", not_before=old - dt.timedelta(days=5), not_after=old)
    with pytest.raises(Refused, match="expired on"):
        a.set_tls(hosts.certs)
    with pytest.raises(Refused, match="set up TLS on this instance first"):
        a.admin(
            "mirror_create", {"mirror": "DEMO", "private": a.private, "settings": {"tls": True}}
        )


def test_join_without_tls_is_authorized_at_once_and_limits_are_refused(hosts):  # noqa: F811
    a, b, c = (hosts.add(n) for n in ("A", "B", "C"))
    a.admin("mirror_create", {"mirror": "PLAIN", "private": a.private})
    a.after_restart()
    b.admin(
        "mirror_join",
        {"mirror": "PLAIN", "address": a.superserver, "type": "failover", "private": b.private},
    )
    assert b.after_restart() and b.wait_state("Backup")
    with pytest.raises(Refused, match="already has 2 failover members"):
        c.admin(
            "mirror_join",
            {"mirror": "PLAIN", "address": a.superserver, "type": "failover", "private": c.private},
        )
    with pytest.raises(Refused, match="is in mirror PLAIN"):
        c.admin("mirror_join", {"mirror": "OTHER", "address": a.superserver, "type": "dr"})
    with pytest.raises(Refused, match="already has a member named B"):
        arg = {"mirror": "PLAIN", "address": b.superserver, "type": "dr", "member": "B"}
        c.admin("mirror_join", arg)
    # the instance that refused is still a non-member and still serving
    assert c.status()["type"] == "Not Member"


def test_an_unreadable_mirror_configuration_is_indeterminate_and_never_overwritten(hosts):  # noqa: F811
    a = hosts.add("A")
    a.admin("mirror_create", {"mirror": "KEPT", "private": a.private})
    a.after_restart()
    a.stop()
    broken = b'{"name": "KEPT", "members": [tru'  # cut short, as a disk fault might leave it
    (a.data_dir / "mirror.json").write_bytes(broken)
    a.start()  # the process serves and says what is wrong (guide §5.1.1.1 Indeterminate)
    status = a.status()
    assert (status["type"], status["status"]) == ("Indeterminate", "Not Initialized")
    assert "unreadable mirror configuration" in status["waiting_reason"]
    with pytest.raises(Refused, match="unreadable mirror configuration"):
        a.admin("mirror_create", {"mirror": "OTHER", "private": a.private})
    assert (a.data_dir / "mirror.json").read_bytes() == broken  # nothing overwritten
    answer = a.admin("remove_mirror_config")
    assert answer["set_aside"].startswith("mirror.json.unreadable-")
    assert (a.data_dir / answer["set_aside"]).read_bytes() == broken  # nothing lost
    wait_for(lambda: a.status()["type"] == "Not Member", 20, "A a non-member")
