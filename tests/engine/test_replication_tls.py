"""A mirror that requires TLS: mutual TLS on the data channel, certificates name the member."""

import socket
import ssl

import pytest

from engine.wire.protocol import FrameDecoder, MsgType, encode_frame, unpack
from engine.wire.tls import client_context
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(90)


def hello(member: str) -> bytes:
    return encode_frame(
        MsgType.DC_HELLO, 1, {"mirror": "TEST", "member": member, "codecs": [], "position": None}
    )


def first_reply(sock) -> dict:
    dec = FrameDecoder()
    while True:
        data = sock.recv(65536)
        assert data, "connection closed without a reply"
        frames = dec.feed(data)
        if frames:
            return unpack(frames[0].body)


def test_tls_mirror_replicates_and_converges(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"), tls=True)
    cluster.wait_backup_active()
    with cluster.client() as c:
        for i in range(100):
            c.set("USER", "Secret", (i,), f"s{i}")
        rows = {r["member"]: r for r in c.status()["members"]}
    assert rows["B"]["codec"] == "lz4"  # System Selected with TLS: LZ4 to the backup
    cluster.wait_converged("B")
    cluster.wait_converged("C")


def test_plain_tcp_to_a_tls_data_channel_gets_nothing_and_the_member_goes_on(make_cluster):
    cluster = make_cluster(("failover", "failover"), tls=True)
    cluster.wait_backup_active()
    a = cluster.cfg.member("A")
    with socket.create_connection((a.private.host, a.private.port), timeout=5) as s:
        s.sendall(hello("B"))
        s.settimeout(3)
        try:
            data = s.recv(1024)
        except (TimeoutError, ConnectionResetError):
            data = b""
        assert not data.startswith(b"MP")  # no protocol frame leaks before the handshake
    # the journal is not served on the superserver port either, though it speaks TLS too
    # (docs/hardening.md, "Application port TLS") and B's certificate opens it
    certs = cluster.path.parent / "certs"
    ctx = client_context(certs / "B.pem", certs / "B-key.pem", cluster.cfg.tls_ca)
    with (
        socket.create_connection((a.superserver.host, a.superserver.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=a.superserver.host) as s,
    ):
        s.sendall(hello("B"))
        assert "requires TLS" in first_reply(s)["message"]
    cluster.wait_backup_active()
    with cluster.client() as c:
        c.set("USER", "Still", (1,), "ok")
    cluster.wait_converged("B")


def test_certificate_of_one_member_cannot_claim_to_be_another(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"), tls=True)
    certs = cluster.path.parent / "certs"
    ctx = client_context(certs / "C.pem", certs / "C-key.pem", cluster.cfg.tls_ca)
    a = cluster.cfg.member("A").private
    with (
        socket.create_connection((a.host, a.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=a.host) as s,
    ):
        s.sendall(hello("B"))
        err = first_reply(s)
    assert "is not member B's" in err["message"]
    assert "bad data channel handshake" in cluster.log("A")


def test_client_without_a_certificate_is_refused(make_cluster):
    cluster = make_cluster(("failover",), tls=True)
    ctx = client_context(ca=cluster.cfg.tls_ca)
    a = cluster.cfg.member("A").private
    with (
        socket.create_connection((a.host, a.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionResetError, AssertionError)),
        ctx.wrap_socket(raw, server_hostname=a.host) as s,
    ):
        s.sendall(hello("A"))
        first_reply(s)
    with cluster.client() as c:
        assert c.ping() == "pong"
