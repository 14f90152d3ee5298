"""The agent's control API is always authenticated: mutual TLS with a DN allow list, or a
bearer credential.  Real agent processes on loopback, real TLS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.agent.config import parse_agent_config
from engine.agent.server import ROUTES
from engine.client.agent import AgentClient, AgentConnectionError, AgentError
from engine.member.config import ConfigError
from tests.engine.agent_fixtures import (  # noqa: F401
    REPO,
    pki_fixture,
    start_agent_fixture,
    started_agent,
    write_agent_config,
)
from tests.engine.cluster_fixtures import free_ports, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def shared_tls_agent(pki, tmp_path_factory):
    yield from started_agent(tmp_path_factory.mktemp("agent"), pki=pki)


@pytest.fixture
def tls_agent(shared_tls_agent):
    """One TLS agent for the module's tests (they refuse clients and read; the one that stops
    an agent starts its own), its log() read from the start of each test."""
    shared_tls_agent.log_from_here()
    return shared_tls_agent


def test_health_over_mutual_tls_names_the_caller_and_the_agent_certificate_expiry(tls_agent):
    with tls_agent.client("portal") as agent:
        health = agent.health()
    assert health["api_version"] == "v1"
    assert health["auth"] == "mutual-tls"
    assert health["identity"] == "CN=portal,O=Mirror Portal"
    assert health["uptime_s"] >= 0
    assert health["certificate"]["subject_dn"] == "CN=agent-host1,O=Mirror Portal"
    assert health["certificate"]["expired"] is False
    assert health["certificate"]["not_after"].startswith("20")
    assert health["client_certificate"]["subject_dn"] == "CN=portal,O=Mirror Portal"
    assert 6 < health["client_certificate"]["days_left"] <= 7


def test_no_client_certificate_gets_401_with_the_reason(tls_agent):
    with pytest.raises(AgentError) as err, tls_agent.client(None) as agent:
        agent.health()
    assert err.value.status == 401
    assert err.value.code == "certificate_required"
    assert "client certificate" in err.value.message


def test_a_certificate_from_another_ca_is_refused_with_the_reason(tls_agent):
    agent = tls_agent.client("intruder")
    with pytest.raises(AgentConnectionError, match="was not issued by the CA"):
        agent.health()
    wait_for(
        lambda: "CA this agent does not trust" in tls_agent.log(), 10, "the refusal in the log"
    )


def test_an_expired_certificate_is_refused_with_the_reason(tls_agent):
    agent = tls_agent.client("expired")
    with pytest.raises(AgentConnectionError, match="expired on"):
        agent.health()
    wait_for(lambda: "certificate has expired" in tls_agent.log(), 10, "the refusal in the log")


def test_a_dn_not_on_the_allow_list_gets_403_naming_the_dn(tls_agent):
    with pytest.raises(AgentError) as err, tls_agent.client("stranger") as agent:
        agent.instances()
    assert err.value.status == 403
    assert "CN=stranger,O=Mirror Portal" in err.value.message


def test_refused_clients_leave_the_agent_serving_the_allowed_one(tls_agent):
    for who in ("intruder", None, "expired", "stranger"):
        with pytest.raises((AgentError, AgentConnectionError)), tls_agent.client(who) as agent:
            agent.health()
    with tls_agent.client("portal") as agent:
        assert agent.health()["identity"] == "CN=portal,O=Mirror Portal"
    assert tls_agent.alive()


def test_plain_http_to_a_tls_agent_is_refused_and_logged(tls_agent):
    plain = AgentClient(f"http://127.0.0.1:{tls_agent.port}", timeout=5)
    with pytest.raises(AgentConnectionError):
        plain.health()
    wait_for(lambda: "TLS handshake with" in tls_agent.log(), 10, "the refusal in the log")
    with tls_agent.client("portal") as agent:
        agent.health()


def test_credential_mode_accepts_the_right_credential_only(start_agent):
    agent = start_agent()
    with agent.client(credential=agent.credential) as c:
        assert c.health()["identity"] == "credential"
    for wrong in ("x" * len(agent.credential), agent.credential[:-1], None):
        with pytest.raises(AgentError) as err, agent.client(credential=wrong) as c:
            c.health()
        assert err.value.status == 401
        assert err.value.code in ("wrong_credential", "credential_required")


def test_credential_mode_needs_the_bearer_scheme(start_agent):
    agent = start_agent()
    with AgentClient(agent.url) as c:
        status, headers, body = c.request("GET", "/v1/health")
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert b"credential_required" in body


def test_every_route_requires_authentication(tls_agent):
    fill = {"{name}": "A", "{db}": "USER", "{mirror}": "TEST"}
    paths = [("GET", "/v1/no/such/route")]
    for method, path, _ in ROUTES:
        for key, value in fill.items():
            path = path.replace(key, value)
        paths.append((method, path))
    with tls_agent.client(None) as c:
        for method, path in paths:
            status, _, body = c.request(method, path)
            assert status == 401, (method, path, body)


def test_a_configuration_without_authentication_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="always authenticated"):
        parse_agent_config({"agent": {"listen": "127.0.0.1:2188"}}, tmp_path)
    with pytest.raises(ConfigError, match="allowed_dns"):
        parse_agent_config(
            {"agent": {"tls": {"cert": "a.pem", "key": "a-key.pem", "ca": "ca.pem"}}}, tmp_path
        )
    with pytest.raises(ConfigError, match="at least 16"):
        parse_agent_config({"agent": {"auth": {"credential": "short"}}}, tmp_path)


def test_the_default_port_is_2188_on_all_interfaces(tmp_path):
    cfg = parse_agent_config({"agent": {"auth": {"credential": "c" * 20}}}, tmp_path)
    assert (cfg.listen.host, cfg.listen.port) == ("0.0.0.0", 2188)


def test_the_allow_list_matches_dns_however_they_are_spelled(pki, start_agent):
    agent = start_agent(pki=pki, allowed_dns=["cn=portal, o=Mirror Portal"])
    with agent.client("portal") as c:
        assert c.health()["identity"] == "CN=portal,O=Mirror Portal"


def run_agent_briefly(config_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "agent", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def test_the_agent_refuses_to_start_with_unusable_tls_files(pki, tmp_path):
    (port,) = free_ports(1)
    config = write_agent_config(tmp_path / "a.toml", port, pki=pki)
    text = config.read_text()
    config.write_text(text.replace(str(pki.agent.key), str(tmp_path / "missing-key.pem")))
    missing = run_agent_briefly(config)
    assert missing.returncode == 2
    assert "private key file not found" in missing.stderr
    config.write_text(
        text.replace(str(pki.agent.cert), str(pki.expired.cert)).replace(
            str(pki.agent.key), str(pki.expired.key)
        )
    )
    expired = run_agent_briefly(config)
    assert expired.returncode == 2
    assert "expired on" in expired.stderr


def test_the_agent_refuses_to_start_without_authentication(tmp_path):
    config = tmp_path / "open.toml"
    config.write_text('[agent]\nlisten = "127.0.0.1:1"\n')
    result = run_agent_briefly(config)
    assert result.returncode == 2
    assert "always authenticated" in result.stderr


def test_the_agent_stops_cleanly_on_sigterm(pki, start_agent):
    tls_agent = start_agent(pki=pki)
    with tls_agent.client("portal") as c:
        c.health()
    tls_agent.stop()
    assert tls_agent.proc.returncode == 0
    assert "agent stopped" in tls_agent.log()
