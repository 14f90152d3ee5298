"""Limits of the data channel listener and the snapshot port (issue 12, "limits on every
listener"), on real member processes.

- the mirror private address closes connections that send no DC_HELLO within the hello
  timeout and refuses connections beyond its maximum (logged, rate-limited), while the real
  backup stays Active and keeps replicating;
- export_snapshot checks who asks before it binds anything (the process's listening sockets
  are read from /proc), an offer nobody takes is closed, offers are limited per requester and
  in number, and a stranger connecting to a snapshot port is refused while the requester
  still gets its snapshot.

Small limits come from the environment the members inherit: ENGINE_PRIVATE_LIMITS,
ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S, ENGINE_SNAPSHOT_MAX_EXPORTS.  A stranger on the loopback
is a client whose source address is 127.0.0.2 (the members' addresses are 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from engine.replication.snapshot_source import TRAILER, TRAILER_MAGIC
from engine.wire import tls
from engine.wire.admin_token import read_token
from engine.wire.protocol import FrameDecoder, MsgType, encode_frame, unpack
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)
STRANGER = "127.0.0.2"


# -- helpers -------------------------------------------------------------------------


def connect(address, source: str = "127.0.0.1", ctx: ssl.SSLContext | None = None):
    s = socket.create_connection((address.host, address.port), 5, source_address=(source, 0))
    return ctx.wrap_socket(s, server_hostname=address.host) if ctx is not None else s


def read_reply(s: socket.socket, timeout: float = 5.0):
    """(type, body) of the next frame, None when the peer closed first, "open" when nothing
    came within `timeout`."""
    s.settimeout(timeout)
    dec = FrameDecoder()
    while True:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            return "open"
        except (ConnectionResetError, ssl.SSLError):
            return None
        if not chunk:
            return None
        frames = dec.feed(chunk)
        if frames:
            return frames[0].type, unpack(frames[0].body)


def ask_export(address, db: str, source: str = "127.0.0.1", token=None, ctx=None):
    """export_snapshot asked from `source`: (type, body) of the answer."""
    with contextlib.closing(connect(address, source, ctx)) as s:
        s.sendall(encode_frame(MsgType.ADMIN, 1, ["export_snapshot", {"name": db}, token]))
        reply = read_reply(s)
    assert reply is not None, "closed without an answer"
    return reply


def token_of(cluster, member: str) -> str:
    return read_token(cluster.cfg.member(member).data_dir)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (its socket inodes in the LISTEN table)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def counted(log: str, limit: str) -> int:
    """Refusals or closes by `limit` the log tells of, one by one or as counts."""
    n = 0
    for line in log.splitlines():
        if f"[limit {limit}=" in line:
            n += 1
        elif f"[limit {limit}]" not in line:
            continue
        more = re.search(r"\(\+(\d+) more not logged\)", line)
        n += int(more.group(1)) if more else 0
    return n


def transfer(cluster, member: str = "B") -> str | None:
    rows = {r["member"]: r for r in cluster.status("A").get("members", [])}
    return rows.get(member, {}).get("journal_transfer")


class Writer:
    """Writes to the primary in a thread; counts them and keeps the first error."""

    def __init__(self, cluster):
        self.cluster, self.done, self.errors = cluster, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            with self.cluster.client(timeout=10) as c:
                while not self.stop.is_set():
                    c.set("USER", "W", (self.done,), "x")
                    self.done += 1
                    time.sleep(0.005)
        except Exception as exc:  # reported by the test
            self.errors.append(exc)

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(20)
        assert not self.errors, self.errors
        return self.done


def receive_snapshot(port: int, token: str, source: str = "127.0.0.1") -> bytes:
    received = b""
    address = ("127.0.0.1", port)
    with (
        socket.create_connection(address, 10, source_address=(source, 0)) as s,
        contextlib.suppress(ConnectionResetError, BrokenPipeError),
    ):
        s.sendall(token.encode())
        while part := s.recv(1 << 16):
            received += part
    return received


def whole(snapshot: bytes) -> bool:
    if len(snapshot) < TRAILER.size:
        return False
    magic, size = TRAILER.unpack(snapshot[-TRAILER.size :])
    return magic == TRAILER_MAGIC and size == len(snapshot) - TRAILER.size > 0


# -- the data channel listener ----------------------------------------------------------


def test_idle_connections_to_the_private_port_are_closed_after_the_hello_timeout(
    make_cluster, monkeypatch
):
    monkeypatch.setenv("ENGINE_PRIVATE_LIMITS", "handshake_timeout_s=1.5")
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    private = cluster.cfg.member("A").private
    pid = cluster.procs["A"].pid
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    writer = Writer(cluster)
    idle = [connect(private) for _ in range(40)]
    try:
        opened = time.monotonic()
        reasons = [read_reply(s, 6.0) for s in idle]
        waited = time.monotonic() - opened
        assert all(r is not None and r[0] == MsgType.ERROR for r in reasons), reasons[:3]
        assert "handshake_timeout_s=1.5" in reasons[0][1]["message"]
        assert 1.2 < waited < 6.0
        # the real backup kept its link (it said hello): Active, and replicating
        assert transfer(cluster) == "Active"
        done = writer.done
        wait_for(lambda: writer.done > done + 20, 10, "writes going on")
    finally:
        for s in idle:
            s.close()
    writes = writer.finish()
    assert writes > 0 and transfer(cluster) == "Active"
    cluster.wait_converged("B")
    wait_for(lambda: counted(cluster.log("A"), "handshake_timeout_s") >= 40, 10, "40 logged")
    line = next(ln for ln in cluster.log("A").splitlines() if "handshake_timeout_s=1.5" in ln)
    assert "mirror private listener: closed 127.0.0.1:" in line
    wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= fds_before + 2, 10, "fds back")


def test_connections_over_the_maximum_are_refused_while_the_backup_replicates(
    make_cluster, monkeypatch
):
    monkeypatch.setenv("ENGINE_PRIVATE_LIMITS", "max_connections=8,handshake_timeout_s=30")
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()  # B's link is one of the 8
    private = cluster.cfg.member("A").private
    writer = Writer(cluster)
    held = [connect(private) for _ in range(30)]
    try:
        answers = [read_reply(s, 0.3) for s in held]
        assert answers[:7] == ["open"] * 7  # with B's link: 8
        refused = answers[7:]
        assert all(
            a[0] == MsgType.ERROR
            and a[1]["code"] == "unavailable"
            and "too many connections" in a[1]["message"]
            for a in refused
        ), refused
        done = writer.done
        wait_for(lambda: writer.done > done + 20, 10, "writes going on")
        assert transfer(cluster) == "Active"
    finally:
        for s in held:
            s.close()
    writer.finish()
    cluster.wait_converged("B")
    assert transfer(cluster) == "Active"
    wait_for(lambda: counted(cluster.log("A"), "max_connections") >= 23, 10, "23 logged")
    assert "mirror private listener: refused 127.0.0.1:" in cluster.log("A")


# -- the snapshot port --------------------------------------------------------------------


def test_export_snapshot_from_a_stranger_is_refused_and_binds_nothing(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    a = cluster.cfg.member("A")
    pid = cluster.procs["A"].pid
    before = listening_ports(pid)
    assert {a.superserver.port, a.private.port} <= before
    for address in (a.superserver, a.private):
        kind, body = ask_export(address, "USER", source=STRANGER)
        assert kind == MsgType.ERROR and body["code"] == "refused", body
        assert "not a member's address of mirror TEST" in body["message"]
        assert listening_ports(pid) == before
    # unknown databases are not told apart from known ones to a stranger
    kind, body = ask_export(a.superserver, "NOPE", source=STRANGER)
    assert "not a member's address" in body["message"]
    assert listening_ports(pid) == before
    log = cluster.log("A")
    assert re.search(r"export_snapshot of USER from 127\.0\.0\.2:\d+ refused", log)
    # the same request from a member's address, or with the admin token, gets an offer
    kind, offer = ask_export(a.superserver, "USER")
    assert kind == MsgType.OK and offer["port"] in listening_ports(pid)
    kind, offer2 = ask_export(a.superserver, "USER", source=STRANGER, token=token_of(cluster, "A"))
    assert kind == MsgType.OK and offer2["port"] in listening_ports(pid)


def test_on_a_tls_mirror_only_a_members_certificate_gets_an_offer(make_cluster):
    cluster = make_cluster(("failover", "failover"), tls=True)
    a = cluster.cfg.member("A")
    pid = cluster.procs["A"].pid
    before = listening_ports(pid)
    certs = Path(cluster.cfg.member("A").tls_cert).parent
    x = tls.make_cert(tls.load_ca(certs), certs, "X")  # signed by the mirror's CA
    ca = certs / "ca.pem"
    # no certificate: the superserver speaks TLS and requires one (docs/hardening.md,
    # "Application port TLS"), so nothing is answered in clear, even to a member's address
    with contextlib.closing(connect(a.superserver, "127.0.0.1", None)) as s:
        s.sendall(encode_frame(MsgType.ADMIN, 1, ["export_snapshot", {"name": "USER"}, None]))
        assert read_reply(s) is None
    # through its TLS, a certificate of the CA that is not a member's is refused there too
    kind, body = ask_export(a.superserver, "USER", ctx=tls.client_context(x.cert, x.key, ca))
    assert kind == MsgType.ERROR and "not an authorized member's" in body["message"], body
    # a certificate of the CA that is not a member's, on the private address
    kind, body = ask_export(a.private, "USER", ctx=tls.client_context(x.cert, x.key, ca))
    assert kind == MsgType.ERROR and body["code"] == "refused", body
    assert "'CN=X" in body["message"] and "not an authorized member's" in body["message"]
    assert listening_ports(pid) == before
    # B's own certificate gets one, on the private address
    b = cluster.cfg.member("B")
    ctx = tls.client_context(b.tls_cert, b.tls_key, ca)
    kind, offer = ask_export(a.private, "USER", ctx=ctx)
    assert kind == MsgType.OK and offer["host"] == a.private.host, offer
    assert offer["port"] in listening_ports(pid)


def test_a_snapshot_port_nobody_uses_is_closed_in_time(make_cluster, monkeypatch):
    monkeypatch.setenv("ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S", "1")
    cluster = make_cluster(("failover", "failover"))
    pid = cluster.procs["A"].pid
    with cluster.client("A") as c:
        offer = c.admin("export_snapshot", "USER")
    assert offer["expires_s"] == 1 and offer["port"] in listening_ports(pid)
    wait_for(lambda: offer["port"] not in listening_ports(pid), 5, "the snapshot port closed")
    wait_for(lambda: "nobody came for it within 1 s" in cluster.log("A"), 5, "the expiry logged")
    with pytest.raises(OSError):
        receive_snapshot(offer["port"], offer["token"])
    # the requester may ask again (its offer is gone)
    with cluster.client("A") as c:
        again = c.admin("export_snapshot", "USER")
    assert whole(receive_snapshot(again["port"], again["token"]))


def test_offers_are_one_per_requester_and_limited_in_number(make_cluster, monkeypatch):
    monkeypatch.setenv("ENGINE_SNAPSHOT_MAX_EXPORTS", "2")
    monkeypatch.setenv("ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S", "3")
    cluster = make_cluster(("failover", "failover"))
    a = cluster.cfg.member("A")
    pid = cluster.procs["A"].pid
    token = token_of(cluster, "A")
    kind, first = ask_export(a.superserver, "USER", token=token)  # the operator
    assert kind == MsgType.OK
    # the same requester again, while its offer waits: refused, nothing more bound
    bound = listening_ports(pid)
    kind, body = ask_export(a.superserver, "APP", token=token)
    assert kind == MsgType.ERROR and body["code"] == "unavailable"
    assert "already has a snapshot offer waiting" in body["message"]
    kind, second = ask_export(a.superserver, "APP")  # another requester: a member's address
    assert kind == MsgType.OK
    bound = listening_ports(pid)
    kind, body = ask_export(a.superserver, "USER", source=STRANGER, token=token)  # a third
    assert kind == MsgType.ERROR and body["code"] == "unavailable"
    assert "[limit max_exports=2]" in body["message"]
    assert listening_ports(pid) == bound
    log = cluster.log("A")
    assert "refused: 2 snapshots offered or streaming here [limit max_exports=2]" in log
    # a place is free again once an offer is used (or expires)
    assert whole(receive_snapshot(first["port"], first["token"]))
    third = wait_for(
        lambda: (
            (r := ask_export(a.superserver, "USER", source=STRANGER, token=token))[0] == MsgType.OK
            and r[1]
        ),
        5,
        "a place free again",
    )
    assert whole(receive_snapshot(third["port"], third["token"], source=STRANGER))


def test_a_stranger_connecting_to_a_snapshot_port_is_refused(make_cluster, monkeypatch):
    monkeypatch.setenv("ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S", "5")
    cluster = make_cluster(("failover", "failover"))
    with cluster.client() as c:
        c.set("USER", "K", (1,), "v")
    with cluster.client("A") as c:
        offer = c.admin("export_snapshot", "USER")
    # even with the right token, from another address: nothing, and the offer goes on
    for _ in range(3):
        assert receive_snapshot(offer["port"], offer["token"], source=STRANGER) == b""
    log = cluster.log("A")
    assert re.search(r"snapshot of USER: refused 127\.0\.0\.2:\d+: not the requester's", log)
    snapshot = receive_snapshot(offer["port"], offer["token"])
    assert whole(snapshot)
    wait_for(lambda: "snapshot of USER sent to 127.0.0.1:" in cluster.log("A"), 5, "sent")
    # a wrong token from the requester's address ends the offer (one connection per offer)
    with cluster.client("A") as c:
        offer = c.admin("export_snapshot", "USER")
    assert receive_snapshot(offer["port"], "0" * len(offer["token"])) == b""
    pid = cluster.procs["A"].pid
    wait_for(lambda: offer["port"] not in listening_ports(pid), 5, "the offer ended")
    assert "snapshot of USER: wrong token from 127.0.0.1:" in cluster.log("A")
