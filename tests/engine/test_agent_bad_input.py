"""Garbage, truncated and oversized requests never crash the agent: each gets a JSON error
(or, below HTTP, a logged refusal) and the next good client is served."""

from __future__ import annotations

import json
import random
import re
import socket
import ssl

import pytest

from tests.engine.agent_fixtures import (  # noqa: F401
    pki_fixture,
    start_agent_fixture,
    started_agent,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory):
    yield from started_agent(
        tmp_path_factory.mktemp("agent"), agent_extra={"max_request_bytes": 4096}
    )


@pytest.fixture
def agent(shared_agent):
    """One agent for the module's tests (each checks it goes on serving), its log() read
    from the start of each test."""
    shared_agent.log_from_here()
    return shared_agent


def exchange(port: int, data: bytes, close_after_send: bool = False, wrap=None) -> bytes:
    """Send raw bytes; return everything the agent sends back until it closes (or 5 s)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if wrap is not None:
        sock = wrap(sock)
    try:
        sock.sendall(data)
        if close_after_send:
            return b""
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return out
            if not chunk:
                return out
            out += chunk
    except (ConnectionError, ssl.SSLError):
        return b""
    finally:
        sock.close()


def status_and_error(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


def assert_serving(agent) -> None:
    assert agent.alive()
    with agent.client(credential=agent.credential) as c:
        assert c.health()["api_version"] == "v1"


def request(agent, first_line: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [first_line, "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_garbage_gets_a_json_400_and_the_agent_keeps_serving(agent):
    status, err = status_and_error(exchange(agent.port, b"\x00\xff\xfe garbage\r\n\r\n"))
    assert status == 400 and err["code"] == "bad_request"
    assert_serving(agent)
    # a WARNING naming the peer (address and port) and the reason
    assert re.search(
        r" WARNING .*bad request from 127\.0\.0\.1:\d+ refused \(400\): \S", agent.log()
    )


def test_an_oversized_header_gets_a_json_400(agent):
    raw = request(agent, "GET /v1/health HTTP/1.1", {"X-Big": "a" * 20000})
    status, err = status_and_error(exchange(agent.port, raw))
    assert status == 400 and "8190" in err["message"]
    assert_serving(agent)


def test_an_oversized_body_gets_413_before_it_is_read(agent):
    auth = {"Authorization": f"Bearer {agent.credential}", "Content-Length": "10000000"}
    raw = request(agent, "POST /v1/instances/A/force-down HTTP/1.1", auth, b"x" * 65536)
    status, err = status_and_error(exchange(agent.port, raw))
    assert status == 413 and err["code"] == "request_too_large"
    assert_serving(agent)


def test_truncated_requests_leave_the_agent_serving(agent):
    for cut in (b"GET /v1/hea", b"GET /v1/health HTTP/1.1\r\nHost: x\r\n", b"POST /v1/inst"):
        exchange(agent.port, cut, close_after_send=True)
    half = request(
        agent,
        "POST /v1/instances/A/force-down HTTP/1.1",
        {"Authorization": f"Bearer {agent.credential}", "Content-Length": "100"},
        b"{",
    )
    exchange(agent.port, half, close_after_send=True)
    assert_serving(agent)


def test_unknown_routes_methods_and_odd_paths_get_json_errors(agent):
    auth = {"Authorization": f"Bearer {agent.credential}"}
    for line, want in [
        ("GET /v1/nothing HTTP/1.1", 404),
        ("GET /v2/health HTTP/1.1", 404),
        ("DELETE /v1/health HTTP/1.1", 405),
        ("GET /v1/instances/%ZZ HTTP/1.1", 404),
        ("GET /v1/journal/%2e%2e/files HTTP/1.1", 400),
        ("GET /v1/journal/TEST/files/x?offset=%ff HTTP/1.1", 404),
    ]:
        status, err = status_and_error(exchange(agent.port, request(agent, line, auth)))
        assert status == want, (line, err)
        assert err["message"]
    assert_serving(agent)


def test_random_bytes_never_crash_the_agent(agent):
    rng = random.Random(4)
    for _ in range(40):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        if rng.random() < 0.5:
            blob = b"GET /v1/health HTTP/1.1\r\n" + blob
        raw = exchange(agent.port, blob, close_after_send=rng.random() < 0.3)
        if raw:
            assert raw.startswith(b"HTTP/1.")
    assert_serving(agent)


def test_garbage_on_the_tls_port_is_refused_and_logged(pki, start_agent):
    agent = start_agent(pki=pki)
    exchange(agent.port, b"\x16\x03\x01\x00\x05hello" + bytes(range(256)))
    exchange(agent.port, b"GET /v1/health HTTP/1.1\r\n\r\n")
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    context.load_cert_chain(pki.portal.cert, pki.portal.key)

    def wrap(sock):
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    # well-formed TLS, garbage HTTP inside it
    raw = exchange(agent.port, b"\x00\x01 not http\r\n\r\n", wrap=wrap)
    status, err = status_and_error(raw)
    assert status == 400
    assert "TLS handshake with 127.0.0.1" in agent.log()
    with agent.client("portal") as c:
        assert c.health()["tls_handshake_failures"] >= 2
