"""TLS on the application port (issue 12), on real processes.

An instance with TLS files speaks TLS on its superserver from the first byte and admits only
clients that present a certificate from its CA (engine/member/instance.py, SuperserverTLS in
engine/member/node.py).  A plain client, a client without a certificate and one with a
certificate from another CA are refused, each refusal in the instance's log with the peer and
the reason, and the instance goes on serving.  A good client still needs its credential to read
and write.  The agent keeps managing the instance, a TLS mirror built by `cluster build`
replicates and gets its demo data, and the modes are kept in node.json.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest

from engine.client.agent import AgentClient
from engine.client.app import AsyncClient, Client, ConnectionLost, NoPrimaryFound, Unauthorized
from engine.cluster.plan import load_plan
from engine.wire import tls
from engine.wire.admin_token import TOKEN_ENV, read_token
from engine.wire.protocol import MsgType, encode_frame
from tests.engine.agent_fixtures import (  # noqa: F401
    StreamFollower,
    pki_fixture,
    start_agent_fixture,
)
from tests.engine.cluster_fixtures import ROOT, cluster_cli, free_ports, log_tails, wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(150)
DB = "APPDB"
REFUSED = "superserver listener: refused "


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    # clients here get only what each test gives them (the instances have their own token)
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.fixture
def secure(hosts):  # noqa: F811
    """A TLS primary (mirror SECM, TLS files from hosts' CA), a database, a credential; and
    the files of an application certificate from the same CA."""
    hosts.make_ca()
    host = hosts.add("SEC", tls_files=True)
    host.admin(
        "mirror_create", {"mirror": "SECM", "private": host.private, "settings": {"tls": True}}
    )
    host.after_restart()
    host.admin("create_database", DB)
    made = host.admin("app_credential_create", {"name": "billing"})
    app = hosts.cert("billing-app")
    return host, (made["name"], made["secret"]), app, hosts.certs / "ca.pem"


def app_client(host, app, ca, **kw) -> Client:
    """An application: its own certificate, the mirror's CA, and whatever else kw says."""
    return Client(
        [host.superserver],
        follow_primary=False,
        retries=0,
        timeout=5,
        cert=app.cert,
        key=app.key,
        ca=ca,
        **kw,
    )


def refusals(host) -> list[str]:
    return [line for line in host.log().splitlines() if REFUSED in line and "TLS handshake" in line]


def nothing_in_clear(address: str) -> bytes:
    """What a plain TCP client that sends a PING gets back before the server closes."""
    h, port = address.rsplit(":", 1)
    got = b""
    with socket.create_connection((h, int(port)), timeout=5) as s:
        s.sendall(encode_frame(MsgType.PING, 1, []))
        try:
            while chunk := s.recv(65536):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return got


def test_a_plain_client_is_refused_logged_once_and_the_instance_serves_on(secure):
    host, credential, app, ca = secure
    before = len(refusals(host))
    # no engine frame ever leaves a TLS port in clear, whatever a plain client sends
    assert not nothing_in_clear(host.superserver).startswith(b"MP")
    with pytest.raises(NoPrimaryFound, match="before any answer .*speaks TLS"):
        Client([host.superserver], follow_primary=False, retries=0, timeout=5, ssl=None)
    lines = wait_for(lambda: len(refusals(host)) >= before + 2 and refusals(host), 5, "the log")
    assert "WARNING" in lines[-1] and "refused 127.0.0.1:" in lines[-1]
    assert (
        "TLS handshake failed: not a TLS client hello (plain TCP or another protocol)" in lines[-1]
    )

    # a flood of plain connections is logged at the listener's rate (a burst of 20, then 1 a
    # second), and the lines left out are counted, in the next line or one of their own
    for _ in range(60):
        nothing_in_clear(host.superserver)
    lines = refusals(host)
    assert 20 <= len(lines) - before <= 24
    # the peer is named while the search for it (uvloop) is within its budget: 10 a window
    assert all("refused 127.0.0.1:" in line for line in lines[before : before + 10])

    def accounted() -> int:
        text = [x for x in host.log().splitlines() if "TLS handshake" in x]
        left_out = sum(int(x.split("(+")[1].split(" ")[0]) for x in text if "more not logged" in x)
        return len(refusals(host)) + left_out

    time.sleep(1.1)
    nothing_in_clear(host.superserver)  # its line carries the count of those left out
    wait_for(lambda: accounted() >= before + 63, 5, "every refusal counted")
    assert accounted() == before + 63

    with app_client(host, app, ca, credential=credential) as c:  # and it serves as before
        c.set(DB, "After", (1,), "flood")
        assert c.get(DB, "After", (1,)) == "flood"
    assert host.proc.poll() is None


def test_a_client_without_a_certificate_is_refused(secure):
    host, credential, _, ca = secure
    with pytest.raises(NoPrimaryFound, match="refused this client's TLS handshake"):
        Client(
            [host.superserver],
            follow_primary=False,
            retries=0,
            timeout=5,
            ca=ca,
            credential=credential,
        )
    wait_for(
        lambda: any("no client certificate" in line for line in refusals(host)), 5, "the refusal"
    )


def test_a_certificate_from_another_ca_is_refused(secure, tmp_path):
    host, credential, _, ca = secure
    rogue_ca = tls.make_ca(tmp_path / "rogue", name="Rogue CA")
    rogue = tls.make_cert(rogue_ca, tmp_path / "rogue", "billing-app")
    # it trusts the instance, but the instance does not trust it
    with pytest.raises(NoPrimaryFound, match="refused this client.s TLS handshake"):
        Client(
            [host.superserver],
            follow_primary=False,
            retries=0,
            timeout=5,
            cert=rogue.cert,
            key=rogue.key,
            ca=ca,
            credential=credential,
        )
    line = wait_for(
        lambda: [x for x in refusals(host) if "certificate verify failed" in x], 5, "the refusal"
    )[-1]
    assert "not issued by the CA this side trusts" in line
    # and a client trusting only the other CA does not take the instance for its server
    with pytest.raises(NoPrimaryFound, match="certificate verify failed"):
        Client(
            [host.superserver],
            follow_primary=False,
            retries=0,
            timeout=5,
            cert=rogue.cert,
            key=rogue.key,
            ca=rogue_ca.cert_path,
        )


def test_a_good_client_reads_and_writes_with_its_credential_only(secure):
    host, credential, app, ca = secure
    with app_client(host, app, ca) as c:  # the certificate lets it in, not to the data
        assert c.status()["member"] == "SEC"
        with pytest.raises(Unauthorized, match="authentication required"):
            c.get(DB, "X", (1,))
    with app_client(host, app, ca, credential=credential) as c:
        c.set(DB, "X", (1,), "over TLS")
        assert c.get(DB, "X", (1,)) == "over TLS"
        assert c.address == host.superserver

    async def pipelined():
        async with AsyncClient(
            [host.superserver], credential=credential, cert=app.cert, key=app.key, ca=ca
        ) as c:
            await asyncio.gather(*(c.set(DB, "P", (i,), i) for i in range(100)))
            return await asyncio.gather(*(c.get(DB, "P", (i,)) for i in range(100)))

    assert asyncio.run(pipelined()) == list(range(100))
    # the operator's client takes its files from the environment, as it takes the admin token
    env = {
        "ENGINE_TLS_CA": str(ca),
        "ENGINE_TLS_CERT": str(app.cert),
        "ENGINE_TLS_KEY": str(app.key),
    }
    script = (
        "from engine.client.app import Client\n"
        f"with Client([{host.superserver!r}], credential={credential!r}) as c:\n"
        f"    print(c.get({DB!r}, 'X', (1,)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert out.stdout.strip() == "over TLS", out.stderr


def restart(host, *options: str) -> None:
    """The instance again, with these options (kept in node.json)."""
    host.stop()
    with open(host.data_dir / "instance.log", "ab") as out:
        host.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine",
                "instance",
                "--data-dir",
                str(host.data_dir),
                *options,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host.wait_answering()


def test_client_certificates_optional_then_tls_off_are_kept_in_node_json(secure):
    host, credential, app, ca = secure
    restart(host, "--superserver-client-cert", "optional")
    node = json.loads((host.data_dir / "node.json").read_text())
    assert node["superserver_client_cert"] == "optional" and "superserver_tls" not in node
    bare = {"follow_primary": False, "retries": 0, "timeout": 5}
    with Client([host.superserver], ca=ca, credential=credential, **bare) as c:
        assert c.get(DB, "X", (1,)) is None  # TLS without a certificate: the credential admits
    with Client([host.superserver], ca=ca, **bare) as c, pytest.raises(Unauthorized):
        c.get(DB, "X", (1,))
    with pytest.raises(NoPrimaryFound):  # still no clear text
        Client([host.superserver], ssl=None, **bare)

    restart(host, "--superserver-tls", "off")  # the explicit way out
    assert json.loads((host.data_dir / "node.json").read_text())["superserver_tls"] == "off"
    assert json.loads((host.data_dir / "superserver_tls.json").read_text()) == {"tls": False}
    with Client([host.superserver], ssl=None, credential=credential, **bare) as c:
        assert c.get(DB, "X", (1,)) is None
    assert "superserver TLS off (mode off)" in host.log()


def test_tls_required_without_tls_files_does_not_start(tmp_path):
    (port,) = free_ports(1)
    args = ["--data-dir", str(tmp_path / "N"), "--name", "N", "--superserver", f"127.0.0.1:{port}"]
    started = subprocess.run(
        [sys.executable, "-m", "engine", "instance", *args, "--superserver-tls", "required"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert started.returncode == 2
    assert "superserver TLS: --superserver-tls required but this instance has no TLS files" in (
        started.stderr
    )


def test_set_tls_on_a_running_instance_turns_its_superserver_to_tls(hosts):  # noqa: F811
    hosts.make_ca()
    host = hosts.add("LATER")
    plain = Client([host.superserver], follow_primary=False, retries=0, timeout=5, ssl=None)

    def closed() -> bool:
        try:
            plain.ping()
        except (ConnectionLost, NoPrimaryFound):
            return True
        return False

    try:
        assert plain.status()["member"] == "LATER"
        hosts.cert("LATER")
        assert host.set_tls(hosts.certs)["dn"] == "CN=LATER,O=Mirror Portal"
        # the connection opened in clear is closed once the answer is out
        wait_for(closed, 5, "the plain connection closed")
    finally:
        plain.close()
    with pytest.raises(NoPrimaryFound):
        Client([host.superserver], follow_primary=False, retries=0, timeout=5, ssl=None)
    published = json.loads((host.data_dir / "superserver_tls.json").read_text())
    assert published["tls"] is True and published["client_cert"] == "required"
    assert host.status()["tls"]["subject_dn"] == "CN=LATER,O=Mirror Portal"


def test_the_agent_manages_a_tls_instance(secure, pki, start_agent):  # noqa: F811
    host, credential, app, ca = secure
    # the agent's API has its own PKI; it reaches the instance as the instance's own files say
    entry = {"name": host.name, "superserver": host.superserver, "data_dir": str(host.data_dir)}
    agent = start_agent(pki=pki, instances=[entry])
    api = agent.client("portal")
    (row,) = api.instances()
    assert (row["state"], row["role"]) == ("up", "primary")
    assert api.create_database(host.name, "MORE")["status"] == "Normal"  # an admin action
    rows = {r["name"]: r["status"] for r in api.databases(host.name)["databases"]}
    assert rows == {DB: "Normal", "MORE": "Normal"}
    made = api.call("POST", f"/v1/instances/{host.name}/app-credentials", body={"name": "ops"})
    with app_client(host, app, ca, credential=("ops", made["secret"])) as c:
        c.set("MORE", "Y", (1,), "through the agent")
    follower = StreamFollower(api, agent)
    snapshot = follower.until(lambda e: e["type"] == "snapshot")
    assert snapshot["instances"][host.name]["state"] == "up"
    assert snapshot["instances"][host.name]["status"] == "Primary"
    follower.stream.close()
    assert not refusals(host)  # the agent never knocked in clear


def build_plan(ports: list[int]) -> str:
    ports = iter(ports)
    return "\n".join(
        [
            "[mirror]",
            'name = "TLSB"',
            'data_root = "var"',
            "tls = true",
            "",
            "[[hosts]]",
            'name = "h1"',
            f"agent = {next(ports)}",
            'instances = ["A", "B"]',
            "",
            "[[members]]",
            'name = "A"',
            'type = "failover"',
            f"superserver = {next(ports)}",
            f"private = {next(ports)}",
            "",
            "[[members]]",
            'name = "B"',
            'type = "failover"',
            f"superserver = {next(ports)}",
            f"private = {next(ports)}",
            "",
            "[[databases]]",
            'name = "DEMO"',
            'how = "create"',
            "rows = 200",
            "",
        ]
    )


@pytest.mark.timeout(200)
def test_a_tls_mirror_built_by_cluster_build_replicates_and_has_its_demo_data(tmp_path):
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(build_plan(free_ports(5)))
    built = cluster_cli("build", "-f", str(plan_path))
    try:
        assert built.returncode == 0, built.stdout + built.stderr + log_tails(tmp_path / "var")
        assert "DEMO: 200 records written on A" in built.stdout
        plan = load_plan(plan_path)
        certs = plan.certs
        reader = tls.make_cert(tls.load_ca(certs), certs, "reader")

        def on(member: str, **kw) -> Client:
            return Client(
                [plan.member(member).superserver],
                follow_primary=False,
                timeout=10,
                cert=reader.cert,
                key=reader.key,
                ca=certs / "ca.pem",
                **kw,
            )

        data = {m: plan.data_dir(plan.member(m)) for m in "AB"}
        assert all(tls.superserver_client_context(d) for d in data.values())  # both speak TLS
        token = {m: read_token(d) for m, d in data.items()}
        with on("A", admin_token=token["A"]) as a:
            assert a.get("DEMO", "Build", ("created", 199)) == "created 199"  # the build's data
            a.set("DEMO", "After", (1,), "replicated")
            digest = a.admin("digest", "DEMO")

        def digest_on_b():
            with on("B", admin_token=token["B"]) as b:
                return b.admin("digest", "DEMO")

        wait_for(lambda: digest_on_b() == digest, 20, "B to hold what A holds")
        with on("B", admin_token=token["B"]) as b:
            assert b.status()["status"] == "Backup"
        # the status command reaches them over TLS as the build did
        shown = subprocess.run(
            [sys.executable, "-m", "engine", "status", "--config", str(plan_path), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        rows = {r["member"]: r["status"] for r in json.loads(shown.stdout)["members"]}
        assert rows == {"A": "Primary", "B": "Backup"}, shown.stderr
        state = json.loads(plan.state_path.read_text())
        with AgentClient(
            state["agents"]["h1"],
            cert=state["client"]["cert"],
            key=state["client"]["key"],
            ca=state["client"]["ca"],
            timeout=10,
        ) as agent:
            assert {r["name"]: r["state"] for r in agent.instances()} == {"A": "up", "B": "up"}
        for member in "AB":
            assert REFUSED not in (plan.data_dir(plan.member(member)) / "instance.log").read_text()
    finally:
        cluster_cli("down", "-f", str(plan_path))
