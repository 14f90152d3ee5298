"""Application credentials on the superserver (issue 12, item 4), on real processes.

A primary configured through the agent path (`python -m engine instance --data-dir`), its
credentials made and revoked through a real agent; clients without a credential, with the
right one, a wrong one, a replayed proof and a revoked one; an instance with TLS configured
requiring authentication by default; a connection that never authenticates closed after the
handshake timeout.  Every refusal must be in the instance's log with the peer.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from engine.client.agent import AgentError
from engine.client.app import AsyncClient, Client, ConnectionLost, Unauthorized
from engine.wire import app_credentials as ac
from engine.wire import tls
from engine.wire.admin_token import TOKEN_ENV
from engine.wire.protocol import FrameDecoder, MsgType, encode_frame, unpack
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(120)
DB = "APPDB"


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    # clients here get only what each test gives them (the instances have their own token)
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def _primary(hosts, name: str = "APP", tls_files: bool = False):  # noqa: F811
    host = hosts.add(name, tls_files=tls_files)
    host.admin("mirror_create", {"mirror": "AUTHM", "private": host.private})
    host.after_restart()
    host.admin("create_database", DB)
    return host


def _agent(start_agent, host):
    agent = start_agent(
        instances=[
            {"name": host.name, "superserver": host.superserver, "data_dir": str(host.data_dir)}
        ]
    )
    return agent.client(None, credential=agent.credential)


def _bare(host, **kw) -> Client:
    """A client with no credential and no admin token (over TLS where the instance speaks it:
    docs/hardening.md, "Application port TLS")."""
    kw.setdefault("ssl", tls.superserver_client_context(host.data_dir))
    return Client([host.superserver], follow_primary=False, retries=0, timeout=5, **kw)


class Raw:
    """A raw superserver connection: frames out, replies in."""

    def __init__(self, address: str):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.decoder = FrameDecoder()
        self.ids = 0
        self.frames: list = []

    def ask(self, mtype: int, args: list):
        self.ids += 1
        self.sock.sendall(encode_frame(mtype, self.ids, args))
        while True:
            for f in self.frames:
                if f.req_id == self.ids:
                    self.frames.remove(f)
                    return f.type == MsgType.OK, unpack(f.body)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("closed")
            self.frames += self.decoder.feed(data)

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def _proof(name: str, secret: str, challenge: dict) -> dict:
    salted = ac.salted_password(
        secret, ac.unb64(challenge["salt"], "salt"), challenge["iterations"]
    )
    client_key, stored_key, _ = ac.derive_keys(salted)
    nonce = ac.new_nonce()
    message = ac.auth_message(name, challenge["nonce"], nonce)
    return {
        "name": name,
        "nonce": nonce,
        "proof": ac.b64(ac.client_proof(client_key, stored_key, message)),
    }


def test_credentials_through_the_agent_and_who_may_read_and_write(hosts, start_agent):  # noqa: F811
    host = _primary(hosts)
    agent = _agent(start_agent, host)
    path = f"/v1/instances/{host.name}/app-credentials"

    # a plain instance without credentials: authentication is off (auto), as before
    with _bare(host) as c:
        c.set(DB, "Open", (1,), "before")
    assert agent.call("GET", path)["auth"] == "off"

    made = agent.call("POST", path, body={"name": "billing"})
    secret = made["secret"]
    assert made["name"] == "billing" and len(secret) >= 40
    listed = agent.call("GET", path)
    assert listed["credentials"][0]["name"] == "billing" and listed["auth"] == "required"
    assert secret not in json.dumps(listed) and "secret" not in json.dumps(listed)
    stored = (host.data_dir / "app_credentials.json").read_text()
    assert secret not in stored and "billing" in stored
    assert (host.data_dir / "app_credentials.json").stat().st_mode & 0o077 == 0
    with pytest.raises(AgentError) as again:
        agent.call("POST", path, body={"name": "billing"})
    assert again.value.status == 409
    with pytest.raises(AgentError) as bad:
        agent.call("POST", path, body={"name": "../x"})
    assert bad.value.status == 400

    # no credential: nothing read or written, each refusal logged with the peer
    with _bare(host) as c:
        assert c.ping() == "pong"  # what carries no data is served
        with pytest.raises(Unauthorized, match="authentication required"):
            c.get(DB, "Open", (1,))
        with pytest.raises(Unauthorized, match="authentication required"):
            c.set(DB, "Open", (2,), "intruder")
        with pytest.raises(Unauthorized, match="authentication required"):
            c.query(DB, "Open")
        with pytest.raises(Unauthorized):
            c.tstart()
    log = host.log()
    assert "GET refused: authentication required" in log
    assert "SET refused: authentication required" in log and "peer 127.0.0.1:" in log

    # the right credential reads and writes
    with _bare(host, credential=("billing", secret)) as c:
        assert c.get(DB, "Open", (1,)) == "before"
        c.set(DB, "Open", (2,), "billing")
        assert c.query(DB, "Open") == [((1,), "before"), ((2,), "billing")]
    # the admin token authenticates too (the agent and the operator's tools)
    with host.client() as c:
        assert c.get(DB, "Open", (2,)) == "billing"

    # a wrong secret, and an unknown name, are refused and logged
    with pytest.raises(Unauthorized, match="authentication failed"):
        _bare(host, credential=("billing", secret[:-2] + "xx"))
    with pytest.raises(Unauthorized, match="authentication failed"):
        _bare(host, credential=("nobody", secret))
    log = host.log()
    assert "authentication failed: credential 'billing': wrong proof" in log
    assert "authentication failed: unknown credential 'nobody'" in log

    # a proof is good for its own server nonce only: replayed on a new connection it fails
    first = Raw(host.superserver)
    ok, challenge = first.ask(MsgType.ADMIN, ["auth_challenge", {"name": "billing"}])
    assert ok and challenge["mechanism"] == "SCRAM-SHA-256"
    proof = _proof("billing", secret, challenge)
    ok, answer = first.ask(MsgType.ADMIN, ["auth", proof])
    assert ok and answer["user"] == "billing"
    assert first.ask(MsgType.GET, [DB, "Open", [1]]) == (True, "before")
    # and used twice on the same connection it fails too
    ok, _ = first.ask(MsgType.ADMIN, ["auth", proof])
    assert not ok
    first.close()
    replay = Raw(host.superserver)
    replay.ask(MsgType.ADMIN, ["auth_challenge", {"name": "billing"}])
    ok, err = replay.ask(MsgType.ADMIN, ["auth", proof])
    assert not ok and err["code"] == "unauthorized"
    assert replay.closed_within(2)  # a failed authentication closes the connection
    # the secret is never on the wire: neither in the challenge nor in the proof
    assert secret not in json.dumps([challenge, proof])

    # revoked: the open connection is closed, and the credential is refused from then on
    kept = Client(
        [host.superserver],
        follow_primary=False,
        retries=0,
        timeout=5,
        credential=("billing", secret),
    )
    try:
        assert kept.get(DB, "Open", (1,)) == "before"
        gone = agent.call("DELETE", f"{path}/billing")
        assert gone["revoked"] is True and gone["closed_connections"] == 1
        with pytest.raises((ConnectionLost, Unauthorized)):
            kept.get(DB, "Open", (1,))
    finally:
        kept.close()
    with pytest.raises(Unauthorized, match="authentication failed"):
        _bare(host, credential=("billing", secret))
    with pytest.raises(AgentError) as unknown:
        agent.call("DELETE", f"{path}/billing")
    assert unknown.value.status == 409
    assert agent.call("GET", path)["credentials"] == []


def test_unauthenticated_connection_is_closed_after_the_handshake_timeout(hosts):  # noqa: F811
    host = _primary(hosts, "LATE")
    host.admin("app_credential_create", {"name": "app"})
    host.stop()
    # the timeout as an instance option, kept in node.json like --superserver-auth
    host.proc = None
    import subprocess
    import sys

    from tests.engine.member_fixtures import ROOT

    with open(host.data_dir / "instance.log", "ab") as out:
        host.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine",
                "instance",
                "--data-dir",
                str(host.data_dir),
                "--superserver-handshake-timeout",
                "1",
                "--superserver-auth",
                "required",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host.wait_answering()
    assert json.loads((host.data_dir / "node.json").read_text())["superserver_auth"] == "required"
    raw = Raw(host.superserver)
    assert raw.ask(MsgType.PING, []) == (True, "pong")
    ok, err = raw.ask(MsgType.GET, [DB, "X", [1]])
    assert not ok and err["code"] == "unauthorized"
    assert raw.closed_within(5)
    wait_for(lambda: "not authenticated within the handshake timeout" in host.log(), 5, "log")


def test_tls_instance_requires_authentication_by_default(hosts):  # noqa: F811
    hosts.make_ca()
    host = _primary(hosts, "SECURE", tls_files=True)
    with _bare(host) as c:
        assert c.status()["member"] == "SECURE"  # status carries no data
        with pytest.raises(Unauthorized, match="authentication required"):
            c.get(DB, "X", (1,))
        with pytest.raises(Unauthorized, match="authentication required"):
            c.set(DB, "X", (1,), 1)
    with host.client() as c:  # the operator, by the admin token
        c.set(DB, "X", (1,), "ok")
        made = c.admin("app_credential_create", {"name": "reports"})
        listed = c.admin("app_credential_list")
    assert listed["auth"] == "required" and "secret" not in json.dumps(listed)
    with _bare(host, credential=("reports", made["secret"])) as c:
        assert c.get(DB, "X", (1,)) == "ok"

    async def pipelined():
        async with AsyncClient(
            [host.superserver],
            follow_primary=False,
            credential=("reports", made["secret"]),
            ssl=tls.superserver_client_context(host.data_dir),
        ) as c:
            return await asyncio.gather(*(c.get(DB, "X", (1,)) for _ in range(50)))

    assert asyncio.run(pipelined()) == ["ok"] * 50
    # no admin action without the admin token, authenticated or not
    with _bare(host, credential=("reports", made["secret"])) as c, pytest.raises(Unauthorized):
        c.admin("app_credential_create", {"name": "more"})
