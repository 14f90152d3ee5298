"""Membership trusts only members (issue 12, finding 3), on real TLS members.

Every certificate of the mirror's CA gets through the TLS handshake of the primary's data
channel; only a member certificate (extended key usages serverAuth and clientAuth, as
engine/cluster/hosts.py make_pki issues the members' and no one else's) may register a pending
member or a DN update.  Pending members are capped (rules.MAX_PENDING_JOINS) and each
certificate registers at most one per rules.PENDING_JOIN_INTERVAL_S, apart from the member
limit; a pending DN update is never replaced by another certificate's; and each carries the
certificate's SHA-256 fingerprint and issuer.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from engine import rules
from engine.cluster.hosts import LAUNCHER_CN, PORTAL_CN, make_pki
from engine.wire import tls
from engine.wire.protocol import PROTOCOL_VERSION, FrameDecoder, MsgType, encode_frame, unpack
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(150)
CA_DN = "CN=DEMO throwaway CA,O=Mirror Portal"
NON_MEMBERS = (PORTAL_CN, LAUNCHER_CN, "agent-h1")


# -- helpers -------------------------------------------------------------------------


def make_site(hosts, *names):  # noqa: F811
    """The mirror's PKI as `cluster build` makes it (make_pki: members', agents', the
    portal's and the launcher's certificates from one CA), then a TLS mirror DEMO created on
    the first instance; the others have their certificates and are not members yet."""
    plan = SimpleNamespace(
        certs=hosts.certs, mirror="DEMO", instances=[], hosts=[SimpleNamespace(name="h1")]
    )
    make_pki(plan)
    hosts.ca = tls.load_ca(hosts.certs)
    members = [hosts.add(n, tls_files=True) for n in names]
    a = members[0]
    a.admin("mirror_create", {"mirror": "DEMO", "private": a.private, "settings": {"tls": True}})
    a.after_restart()
    return members


def join(host, primary, mtype="dr"):
    arg = {"mirror": "DEMO", "address": primary.superserver, "type": mtype}
    return host.admin("mirror_join", arg)


def joined(host, primary):
    """`host` joins as a DR async and is authorized."""
    join(host, primary)
    wait_for(lambda: host.name in pending_names(primary), 20, f"{host.name} pending")
    primary.admin("authorize_member", {"member": host.name})
    host.wait_state("Connected")


def pending_names(primary) -> set[str]:
    return {p["name"] for p in primary.status()["pending_members"]}


def paths_of(hosts, stem: str) -> tls.CertPaths:  # noqa: F811
    return tls.CertPaths(hosts.certs / f"{stem}.pem", hosts.certs / f"{stem}-key.pem")


def usages(paths: tls.CertPaths) -> list[str]:
    eku = tls.load_certificate(paths.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    return sorted(oid._name for oid in eku.value)


def fingerprint(paths: tls.CertPaths) -> str:
    return tls.load_certificate(paths.cert).fingerprint(hashes.SHA256()).hex(":").upper()


def ask(primary, hosts, paths: tls.CertPaths, member: str, joining: bool = True) -> str:  # noqa: F811
    """One DC_HELLO to the primary's data channel over TLS with the certificate `paths`, as
    `member` (with a join request unless not `joining`); the primary's refusal, or why the
    TLS handshake failed."""
    hello = {
        "mirror": "DEMO",
        "member": member,
        "type": "dr",
        "codecs": [],
        "position": None,
        "version": PROTOCOL_VERSION,
    }
    if joining:
        (port,) = hosts.ports(1)
        hello["join"] = {
            "type": "dr",
            "superserver": f"127.0.0.1:{port}",
            "private": None,
            "join_id": uuid.uuid4().hex,
        }
    ctx = tls.client_context(paths.cert, paths.key, hosts.certs / "ca.pem")
    host, port = primary.private.split(":")
    try:
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as s,
        ):
            s.sendall(encode_frame(MsgType.DC_HELLO, 1, hello))
            dec = FrameDecoder()
            while True:
                data = s.recv(65536)
                if not data:
                    return "closed without an answer"
                for frame in dec.feed(data):
                    body = unpack(frame.body)
                    if frame.type == MsgType.ERROR:
                        return str(body.get("message") if isinstance(body, dict) else body)
                    return f"accepted: message type {frame.type}"
    except (ssl.SSLError, ConnectionError) as exc:
        return f"TLS handshake refused: {exc}"


# -- the tests -----------------------------------------------------------------------


def test_agent_portal_and_launcher_certificates_cannot_register_a_member_nor_a_dn_update(
    hosts,  # noqa: F811
):
    a, b = make_site(hosts, "A", "B")
    # what make_pki issues: members serve and connect, the others do one of the two
    assert usages(paths_of(hosts, "A")) == ["clientAuth", "serverAuth"]
    assert usages(paths_of(hosts, PORTAL_CN)) == ["clientAuth"]
    assert usages(paths_of(hosts, LAUNCHER_CN)) == ["clientAuth"]
    assert usages(paths_of(hosts, "agent-h1")) == ["serverAuth"]
    joined(b, a)

    for who in NON_MEMBERS:
        paths = paths_of(hosts, who)
        answer = ask(a, hosts, paths, "EVIL")  # a new member
        assert "awaits authorization" not in answer, (who, answer)
        # the portal's and the launcher's pass the handshake and are refused by the profile;
        # the agent's (server only) do not pass the handshake at all
        if who == "agent-h1":
            assert answer.startswith(("TLS handshake refused", "closed without")), answer
        else:
            assert "is not a member certificate" in answer, answer
            assert "serverAuth and clientAuth" in answer
        answer = ask(a, hosts, paths, "B", joining=False)  # an authorized member's new DN
        assert "new certificate DN" not in answer and "awaits" not in answer, (who, answer)
    assert pending_names(a) == set()
    assert a.status()["dn_updates"] == []
    assert "EVIL" not in {m["name"] for m in a.admin("mirror_info")["members"]}
    log = a.log()
    assert "unsuitable certificate purpose" in log  # the agent's, at the handshake
    assert "join refused: join: certificate 'CN=portal,O=Mirror Portal' is not a member" in log
    assert "member B: certificate 'CN=cluster-launcher,O=Mirror Portal' is not a member" in log
    assert b.status()["status"] == "Connected"  # the real B never noticed


def test_pending_joins_are_capped_and_rate_limited_and_a_real_member_still_joins(hosts):  # noqa: F811
    a, c = make_site(hosts, "A", "C")
    junk = [hosts.cert(f"JUNK{i}") for i in range(1, 7)]  # member certificates, but junk
    assert rules.MAX_PENDING_JOINS == 4
    assert "awaits authorization" in ask(a, hosts, junk[0], "JUNK1")
    # one new pending member per certificate and interval
    again = ask(a, hosts, junk[0], "JUNK1B")
    assert "one new pending member per certificate every 60 s" in again, again
    for i in (1, 2, 3):
        assert "awaits authorization" in ask(a, hosts, junk[i], f"JUNK{i + 1}")
    assert pending_names(a) == {"JUNK1", "JUNK2", "JUNK3", "JUNK4"}
    full = ask(a, hosts, junk[4], "JUNK5")
    assert "already has 4 members awaiting authorization (at most 4)" in full, full
    assert "JUNK5" not in {m["name"] for m in a.admin("mirror_info")["members"]}
    assert "already has 4 members awaiting authorization" in a.log()
    assert "one new pending member per certificate" in a.log()

    # a real member is held while the list is full, far from the 16-member limit ...
    join(c, a)
    wait_for(
        lambda: "awaiting authorization (at most 4)" in (c.status().get("waiting_reason") or ""),
        20,
        "C told why it waits",
    )
    assert "C" not in pending_names(a)
    # ... until the operator rejects junk: that frees room, and the rejected junk's
    # certificate cannot take the place back at once
    a.admin("reject_member", {"member": "JUNK1"})
    retry = ask(a, hosts, junk[0], "JUNK6")
    assert "one new pending member per certificate" in retry or "at most 4" in retry, retry
    wait_for(lambda: "C" in pending_names(a), 20, "C pending once there is room")
    row = {p["name"]: p for p in a.status()["pending_members"]}["C"]
    assert row["dn"] == "CN=C,O=Mirror Portal"
    assert row["fingerprint"] == fingerprint(paths_of(hosts, "C"))
    assert row["issuer"] == CA_DN and row["not_after"]
    a.admin("authorize_member", {"member": "C"})
    c.wait_state("Connected")
    for name in ("JUNK2", "JUNK3", "JUNK4"):
        a.admin("reject_member", {"member": name})
    assert pending_names(a) == set()


def test_a_pending_dn_update_is_never_replaced_by_another_certificate(hosts):  # noqa: F811
    a, b = make_site(hosts, "A", "B")
    joined(b, a)
    renewed = hosts.cert("B", org="Renewed", name="B-Renewed")
    b.admin(
        "set_tls",
        {"cert": str(renewed.cert), "key": str(renewed.key), "ca": str(hosts.certs / "ca.pem")},
    )
    wait_for(lambda: a.status()["dn_updates"], 20, "B's DN update on A")
    [update] = a.status()["dn_updates"]
    assert update["member"] == "B" and update["dn"] == "CN=B,O=Renewed"
    assert update["fingerprint"] == fingerprint(renewed) and update["issuer"] == CA_DN
    assert update["not_after"] == tls.load_certificate(renewed.cert).not_valid_after_utc.isoformat()
    info = a.admin("mirror_info")
    assert info["dn_updates"] == {"B": "CN=B,O=Renewed"}
    assert info["dn_update_certs"]["B"]["fingerprint"] == fingerprint(renewed)

    # while it is pending, neither a certificate with another DN nor another certificate with
    # the very same DN replaces it
    other_dn = hosts.cert("B", org="Intruder", name="B-Intruder")
    same_dn = hosts.cert("B", org="Renewed", name="B-Renewed-twin")
    for paths in (other_dn, same_dn):
        answer = ask(a, hosts, paths, "B", joining=False)
        assert "is not the one of member B's pending DN update 'CN=B,O=Renewed'" in answer, answer
        assert "authorize or reject that update first" in answer
        assert a.status()["dn_updates"] == [update]
    assert f"(SHA-256 {fingerprint(same_dn)}) is not the one of member B's" in a.log()
    # B itself, asking again with its renewed certificate, still just waits
    assert "awaits authorization" in b.wait_state("Waiting")["waiting_reason"]

    # the operator decides on the first; what was authorized is B's renewed certificate's DN
    a.admin("authorize_dn_update", {"member": "B"})
    b.wait_state("Connected")
    assert a.status()["dn_updates"] == []
    assert {m["name"]: m["dn"] for m in a.admin("mirror_info")["members"]}["B"] == (
        "CN=B,O=Renewed"
    )
    # a rejected update frees the place too: the intruder's is then a new request
    ask(a, hosts, other_dn, "B", joining=False)
    wait_for(lambda: a.status()["dn_updates"], 10, "a new update")
    assert a.status()["dn_updates"][0]["fingerprint"] == fingerprint(other_dn)
    a.admin("reject_dn_update", {"member": "B"})
    assert a.status()["dn_updates"] == []
