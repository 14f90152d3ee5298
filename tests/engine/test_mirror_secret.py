"""The data channel of a mirror without TLS is authenticated by the mirror secret (issue 12;
engine/wire/mirror_secret.py, docs/hardening.md "Data channel authentication"): a member
name alone proves nothing, a proof is good for one challenge, the secret never travels on the
data channel, and a member takes journal only from a primary that proves it too.  Real
instance processes, configured through the agent's path."""

import json
import socket
import stat
import threading

import pytest

from engine.client.app import Client, EngineError, Refused
from engine.wire import mirror_secret
from engine.wire.protocol import FrameDecoder, MsgType, encode_frame, unpack
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.hello import Hello, say_hello
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def plain_mirror(hosts):  # noqa: F811
    """SAFE: A primary, B backup, C DR, no TLS, joined with the secret as the agent hands it."""
    a, b, c = (hosts.add(n) for n in "ABC")
    a.admin("mirror_create", {"mirror": "SAFE", "private": a.private})
    a.after_restart()
    secret = a.admin("mirror_secret")["secret"]
    b.admin(
        "mirror_join",
        {"mirror": "SAFE", "address": a.superserver, "type": "failover", "private": b.private}
        | {"secret": secret},
    )
    c.admin("mirror_join", {"mirror": "SAFE", "address": a.superserver, "type": "dr"})
    b.wait_state("Backup")
    c.wait_state("Connected")
    wait_for(lambda: transfer(a, "B") == "Active", 20, "B Active")
    return a, b, c, secret


def transfer(primary, member: str):
    rows = {m["member"]: m for m in primary.status()["members"]}
    return rows.get(member, {}).get("journal_transfer")


def as_b(primary) -> dict:
    end = primary.status()["journal_end"]
    return {"mirror": "SAFE", "member": "B", "type": "failover", "codecs": [], "position": end}


def error_text(frame) -> str:
    assert frame is not None and frame.type == MsgType.ERROR, frame
    return unpack(frame.body)["message"]


def test_every_member_keeps_the_same_secret_readable_by_its_owner_only(plain_mirror):
    a, b, c, secret = plain_mirror
    mirror_secret.check_secret(secret)
    for host in (a, b, c):
        path = host.data_dir / "mirror.json"
        assert json.loads(path.read_text())["secret"] == secret
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the open mirror_info (asked before a join) never carries it
    with a.client() as admin:
        assert secret not in json.dumps(admin.admin("mirror_info"))


def test_the_secret_is_given_only_to_an_administrator(plain_mirror):
    a, *_ = plain_mirror
    stranger = Client([a.superserver], follow_primary=False, retries=0, admin_token="guess")
    with stranger, pytest.raises(EngineError, match="needs this instance's admin token"):
        stranger.admin("mirror_secret")


def test_a_join_without_the_secret_is_refused_before_anything_is_written(plain_mirror, hosts):  # noqa: F811
    a, *_ = plain_mirror
    d = hosts.add("D")
    arg = {"mirror": "SAFE", "address": a.superserver, "type": "dr", "secret": None}
    with pytest.raises(Refused, match="prove themselves with the mirror secret"):
        d.admin("mirror_join", arg)
    with pytest.raises(Refused, match="a mirror secret is 43 characters"):
        d.admin("mirror_join", {**arg, "secret": "guess"})
    assert not (d.data_dir / "mirror.json").exists()
    assert {m["name"] for m in a.admin("mirror_info")["members"]} == {"A", "B", "C"}


def test_a_stranger_saying_hello_as_the_backup_gets_only_a_challenge_and_is_refused(
    plain_mirror,
):
    a, b, *_ = plain_mirror
    private = ("127.0.0.1", int(a.private.rsplit(":", 1)[1]))
    # without the secret: a challenge, nothing else
    with Hello(private, None) as stranger:
        challenge = stranger.say(as_b(a))
        assert challenge is not None and challenge.type == MsgType.DC_CHALLENGE
        assert set(unpack(challenge.body)) == {"nonce"}
    # a made-up secret: refused, and the connection closed
    with Hello(private, mirror_secret.new_secret()) as guesser:
        assert "did not prove the mirror secret" in error_text(guesser.say(as_b(a)))
        assert guesser.next(timeout=2) is None
    # the real backup kept its link: still Active, writes still acknowledged by it
    assert transfer(a, "B") == "Active"
    with a.client() as client:
        client.admin("create_database", "SAFEDB")
        client.set("SAFEDB", "Still", (1,), "mirrored")
    wait_for(lambda: b.status()["journal_end"] == a.status()["journal_end"], 10, "B caught up")
    assert "peer 127.0.0.1" in a.log() and "did not prove the mirror secret" in a.log()


def test_a_proof_is_good_for_its_own_challenge_only(plain_mirror):
    a, _, _, secret = plain_mirror
    private = ("127.0.0.1", int(a.private.rsplit(":", 1)[1]))
    hello = {**as_b(a), "member": "C", "type": "dr"}
    with Hello(private, secret) as first:
        welcome = first.say(hello)
        assert welcome is not None and welcome.type == MsgType.DC_WELCOME
        old_challenge, old_nonce = first.challenge, first.nonce
    old_proof = mirror_secret.member_proof(secret, "SAFE", "C", old_nonce, old_challenge)
    # replayed on a new connection, with the same nonce: the primary's challenge is new
    with Hello(private, secret) as replay:
        replay.nonce = old_nonce
        answer = replay.say(hello, proof=old_proof)
        assert replay.challenge != old_challenge
        assert "did not prove the mirror secret" in error_text(answer)


def test_a_dr_member_asking_again_and_again_to_be_demoted_is_refused_and_said_once(
    plain_mirror,
):
    # only a backup may ask its primary to demote it (guide §5.6); an async that keeps asking
    # changes nothing and cannot fill the primary's log
    a, _, _, secret = plain_mirror
    hello = {**as_b(a), "member": "C", "type": "dr"}
    with Hello(("127.0.0.1", int(a.private.rsplit(":", 1)[1])), secret) as dr:
        assert dr.say(hello).type == MsgType.DC_WELCOME
        dr.sock.sendall(encode_frame(MsgType.DC_DEMOTE, 0, []) * 50)
        refused = "member C (dr) asked to be demoted: refused"
        wait_for(lambda: refused in a.log(), 10, "the refusal")
        dr.sock.sendall(encode_frame(MsgType.DC_DEMOTE, 0, []) * 50)
        dr.next(timeout=1)  # what the primary sends meanwhile; the link stays
    assert a.log().count(refused) == 1
    assert "asks to be demoted to DR async" not in a.log()
    types = {row["member"]: row["type"] for row in a.status()["members"]}
    assert types == {"B": "Failover", "C": "Disaster Recovery"}


def test_the_welcome_proves_the_primary_and_never_carries_the_secret(plain_mirror):
    a, _, _, secret = plain_mirror
    hello = {**as_b(a), "member": "C", "type": "dr"}
    with Hello(("127.0.0.1", int(a.private.rsplit(":", 1)[1])), secret) as h:
        welcome = h.say(hello)
        body = unpack(welcome.body)
        expected = mirror_secret.primary_proof(secret, "SAFE", "A", h.nonce, h.challenge)
        assert body["proof"] == expected
        raw = welcome.body + b"".join(f.body for f in h.later)
    assert secret.encode() not in raw
    assert body["config"]["name"] == "SAFE" and "secret" not in body["config"]


def test_a_member_with_a_wrong_secret_waits_saying_why(plain_mirror):
    a, _, c, _ = plain_mirror
    c.stop()
    path = c.data_dir / "mirror.json"
    data = json.loads(path.read_text())
    data["secret"] = mirror_secret.new_secret()
    path.write_text(json.dumps(data))
    c.start()
    waiting = c.wait_state("Waiting")
    assert "did not prove the mirror secret" in waiting["waiting_reason"]
    wait_for(lambda: c.status()["data_channel_refusals"] >= 3, 10, "C asking again")
    # the primary says it once, however often C asks
    assert a.log().count("member C did not prove the mirror secret") == 1


class FakePrimary:
    """A listener that welcomes any member at once, without the secret, and offers journal."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.acks = 0
        self.hellos = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                decoder = FrameDecoder()
                try:
                    conn.settimeout(5)
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            break
                        for frame in decoder.feed(data):
                            if frame.type == MsgType.DC_HELLO:
                                self.hellos += 1
                                welcome = {
                                    "primary": "A",
                                    "codec": None,
                                    "end": None,
                                    "qos_ms": 2000,
                                }
                                conn.sendall(
                                    encode_frame(MsgType.DC_WELCOME, frame.req_id, welcome)
                                )
                            elif frame.type == MsgType.DC_ACK:
                                self.acks += 1
                except OSError:
                    pass

    def close(self):
        self.server.close()


def test_a_member_takes_nothing_from_a_primary_that_cannot_prove_the_secret(plain_mirror):
    a, _, c, _ = plain_mirror
    fake = FakePrimary()
    try:
        c.stop()
        path = c.data_dir / "mirror.json"
        data = json.loads(path.read_text())
        for m in data["members"]:
            if m["name"] == "A":  # C now looks for its primary at the fake's address
                m["private"] = f"127.0.0.1:{fake.port}"
        path.write_text(json.dumps(data))
        c.start()
        waiting = c.wait_state("Waiting")
        assert "the primary (A) did not prove the mirror secret" in waiting["waiting_reason"]
        wait_for(lambda: fake.hellos >= 2, 10, "C trying again")
        assert fake.acks == 0 and c.status()["status"] == "Waiting"
    finally:
        fake.close()


def test_a_mirror_file_without_a_secret_says_its_data_channel_is_open(make_cluster):
    cluster = make_cluster(("failover", "dr"), secret=False)
    assert "its data channel is not authenticated" in cluster.log("A")
    # without a secret the hello is answered at once, as before this handshake existed
    hello = {"mirror": "TEST", "member": "B", "codecs": [], "position": None}
    assert say_hello(cluster.cfg.member("A").private, hello, None).type == MsgType.DC_WELCOME
