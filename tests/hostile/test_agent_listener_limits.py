"""Limits of the agent's HTTP listener (issue 12, "limits on every listener", the agent part).

A real agent process per test, on the loopback, with small limits from its configuration
(engine/agent/limits.py): connections beyond max_connections are closed at once, a request
head (or a TLS handshake) not finished within header_timeout_ms, a kept-alive connection
idle for idle_timeout_ms and a body not finished within body_timeout_ms are cut, status
streams outlive every timer but are capped by max_streams.  Each refusal and cut is logged
with the peer and its limit (rate-limited: the "(+N more not logged)" counts are added up),
and the agent keeps serving afterwards, its connections released.

The hostile clients are raw sockets, so nothing is tidied up on their way.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

from engine.agent.config import ConfigError, parse_agent_config
from tests.engine.agent_fixtures import AgentProcess, pki_fixture, start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import wait_for
from tests.hostile.test_listener_limits import counted

pytestmark = pytest.mark.timeout(60)

LIMITS = {
    "max_connections": 64,
    "max_streams": 2,
    "header_timeout_ms": 500,
    "idle_timeout_ms": 800,
    "body_timeout_ms": 600,
    "stream_heartbeat_ms": 200,
}
STILL_OPEN = "still open"


# -- helpers -------------------------------------------------------------------------


def start(start_agent, tmp_path, pki=None, **limits) -> AgentProcess:
    """An agent with LIMITS (some overridden) and a configured instance GHOST that never
    runs: a body that got through every check would be refused there."""
    ghost = {"name": "GHOST", "superserver": "127.0.0.1:1", "data_dir": str(tmp_path / "ghost")}
    return start_agent(pki=pki, instances=[ghost], agent_extra={**LIMITS, **limits})


def connect(agent: AgentProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", agent.port), timeout=5)


def head(agent: AgentProcess, method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"Authorization: Bearer {agent.credential}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one answer with a Content-Length, the connection kept."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", top).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(top.split(b" ", 2)[1]), body


def closed_within(sock: socket.socket, seconds: float, drip: bytes = b"", every: float = 0.1):
    """Seconds until the agent closed `sock` (sending `drip` every `every` s meanwhile), or
    STILL_OPEN after `seconds`."""
    start = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            try:
                if drip:
                    sock.sendall(drip)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
        except ConnectionResetError:
            return time.monotonic() - start
    return STILL_OPEN


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def lines_naming(agent: AgentProcess, port: int) -> list[str]:
    peer = re.compile(rf"127\.0\.0\.1:{port}\b")
    return [line for line in agent.log().splitlines() if peer.search(line)]


def assert_logged(agent: AgentProcess, port: int, level: str, *words: str) -> None:
    def found():
        return [
            line
            for line in lines_naming(agent, port)
            if f" {level} " in line and all(w in line for w in words)
        ]

    wait_for(found, 5, f"a {level} line naming port {port} with {words}:\n{agent.log()[-1500:]}")


def listener(agent: AgentProcess) -> dict:
    with agent.client(credential=agent.credential) as api:
        return api.health()["listener"]


def assert_serving_and_released(agent: AgentProcess) -> None:
    """Alive, a new client is answered, and every other connection is gone."""
    assert agent.alive()
    wait_for(lambda: listener(agent)["connections"] == 1, 5, "the connections to be released")


def lines_and_left_out(log: str, line: str, summary: str) -> tuple[int, int]:
    """Lines matching `line`, and the lines left out (their "(+N more not logged)", and those
    of summary lines that start with `summary`) of one rate-limited kind."""
    lines = left_out = 0
    for text in log.splitlines():
        more = re.search(r"\(\+(\d+) more not logged\)", text)
        if re.search(line, text):
            lines += 1
        elif not re.search(rf"agent: {summary}", text):
            continue
        left_out += int(more.group(1)) if more else 0
    return lines, left_out


def descriptors(agent: AgentProcess) -> int:
    return len(os.listdir(f"/proc/{agent.proc.pid}/fd"))


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "range_"),
    [
        ("max_connections", 0, "from 1 to 100000"),
        ("max_streams", 10001, "from 1 to 10000"),
        ("header_timeout_ms", 99, "from 100 to 3600000"),
        ("idle_timeout_ms", "75s", "from 100 to 86400000"),
        ("body_timeout_ms", True, "from 100 to 3600000"),
    ],
)
def test_a_limit_out_of_its_range_is_a_config_error_naming_it(tmp_path, key, value, range_):
    data = {"agent": {key: value, "auth": {"credential": "c" * 20}}}
    with pytest.raises(ConfigError, match=rf"agent\.{key}: must be an integer {range_}"):
        parse_agent_config(data, tmp_path)


def test_the_limits_have_their_defaults_when_not_configured(tmp_path):
    cfg = parse_agent_config({"agent": {"auth": {"credential": "c" * 20}}}, tmp_path)
    got = (cfg.max_connections, cfg.max_streams, cfg.header_timeout_s)
    assert got + (cfg.idle_timeout_s, cfg.body_timeout_s) == (256, 64, 10.0, 75.0, 30.0)


# -- the listener ---------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_closed_at_once_and_logged_while_a_client_is_served(
    start_agent, tmp_path
):
    agent = start(
        start_agent, tmp_path, max_connections=12, header_timeout_ms=20000, idle_timeout_ms=20000
    )
    with agent.client(credential=agent.credential) as good:
        assert good.health()["listener"]["connections"] == 1
        before = descriptors(agent)
        holders = [connect(agent) for _ in range(11)]
        wait_for(lambda: good.health()["listener"]["connections"] == 12, 5, "12 connections")
        over = [connect(agent) for _ in range(30)]
        # closed long before any timer of the listener (20 s) could have done it
        waited = [closed_within(s, 5) for s in over]
        assert all(w != STILL_OPEN and w < 5 for w in waited), waited
        health = good.health()
        assert health["listener"]["connections"] == 12
        assert health["listener"]["refused"] == 30
        assert descriptors(agent) <= before + 11 + 1, "a refused connection kept a descriptor"
        assert_logged(agent, port_of(over[0]), "WARNING", "refused", "too many connections")
        wait_for(lambda: counted(agent.log(), "max_connections") == 30, 5, "every refusal told")
        lines = [line for line in agent.log().splitlines() if "[limit max_connections=" in line]
        assert len(lines) <= 25, "a burst of 20 lines, then about one a second"
        for s in holders + over:
            s.close()
    assert_serving_and_released(agent)


def test_a_slowloris_that_never_finishes_its_request_head_is_closed_and_logged(
    start_agent, tmp_path
):
    agent = start(start_agent, tmp_path, header_timeout_ms=500)
    silent = connect(agent)
    assert (w := closed_within(silent, 5)) != STILL_OPEN and w >= 0.45, w
    dripping = connect(agent)
    dripping.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert (w := closed_within(dripping, 5, drip=b"X")) != STILL_OPEN and w >= 0.45, w
    assert_logged(
        agent, port_of(silent), "WARNING", "no whole request head", "header_timeout_ms=500"
    )
    assert_logged(agent, port_of(dripping), "WARNING", "[limit header_timeout_ms=500]")

    # a later request on a kept-alive connection gets the same time for its head
    kept = connect(agent)
    kept.sendall(head(agent, "GET", "/v1/health"))
    assert read_answer(kept)[0] == 200
    kept.sendall(b"GET /v1/health HTTP/1.1\r\n")
    assert (w := closed_within(kept, 5, drip=b"X")) != STILL_OPEN, w
    assert_logged(agent, port_of(kept), "WARNING", "a request head not finished", "after its first")
    assert listener(agent)["closed"]["header_timeout_ms"] == 3
    assert_serving_and_released(agent)


def test_a_tls_handshake_not_finished_is_cut_by_the_header_timeout_and_told_once(
    start_agent, tmp_path, pki
):
    agent = start(start_agent, tmp_path, pki=pki, header_timeout_ms=500)
    silent = connect(agent)
    # asyncio's own handshake timeout is 10 s: this is the listener's
    assert (w := closed_within(silent, 5)) != STILL_OPEN and w < 5, w
    assert_logged(agent, port_of(silent), "WARNING", "TLS handshake not finished", "timeout_ms=500")
    assert len(lines_naming(agent, port_of(silent))) == 1, lines_naming(agent, port_of(silent))

    # plain HTTP on the TLS port, 30 times: each is a refused handshake, logged through the
    # same token bucket (a burst of 20), every one counted in the log
    for _ in range(30):
        with connect(agent) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert closed_within(s, 5) != STILL_OPEN

    def told():
        return lines_and_left_out(
            agent.log(), r"TLS handshake with 127\.0\.0\.1:\d+ refused", "TLS"
        )

    wait_for(lambda: sum(told()) == 30, 5, f"30 refused handshakes told: {told()}")
    assert told()[0] <= 25, told()  # a burst of 20, then about one a second
    with agent.client() as api:
        assert api.health()["listener"]["connections"] == 1
        assert api.health()["tls_handshake_failures"] >= 30


def test_refusals_without_authentication_are_rate_limited_but_a_callers_are_all_logged(
    start_agent, tmp_path
):
    agent = start(start_agent, tmp_path)
    wrong = head(agent, "GET", "/v1/health").replace(agent.credential.encode(), b"x" * 20)
    mine = []
    for _ in range(30):
        for raw in (b"\x00\xff garbage\r\n\r\n", wrong, head(agent, "GET", "/v1/nowhere")):
            with connect(agent) as s:
                s.sendall(raw)
                status = read_answer(s)[0]
                assert status in (400, 401, 404), status
                if status == 404:
                    mine.append(port_of(s))

    def told():
        log = agent.log()
        parser = r"bad request from 127\.0\.0\.1:\d+ refused \(400\)"
        anonymous = r"GET /v1/health from 127\.0\.0\.1:\d+ refused: 401 "
        return (
            lines_and_left_out(log, parser, "requests refused by the HTTP parser"),
            lines_and_left_out(log, anonymous, r"requests refused before authentication \(401\)"),
        )

    wait_for(lambda: [sum(kind) for kind in told()] == [30, 30], 5, f"60 refusals: {told()}")
    assert all(lines <= 25 for lines, _ in told()), told()  # a burst of 20, then one a second
    # an authenticated caller's refusals are the audit trail: every one is a line
    logged = re.findall(
        r"GET /v1/nowhere from 127\.0\.0\.1:(\d+) \(credential\) refused", agent.log()
    )
    assert sorted(map(int, logged)) == sorted(mine)
    assert_serving_and_released(agent)


def test_an_idle_keep_alive_connection_is_closed_but_a_busy_one_is_not(start_agent, tmp_path):
    agent = start(start_agent, tmp_path, idle_timeout_ms=800)
    idle = connect(agent)
    idle.sendall(head(agent, "GET", "/v1/health"))
    assert read_answer(idle)[0] == 200
    assert (w := closed_within(idle, 5)) != STILL_OPEN and w >= 0.7, w
    assert_logged(agent, port_of(idle), "INFO", "idle for", "[limit idle_timeout_ms=800]")

    # a request every 0.3 s on one connection, for three idle timeouts: all answered there
    with connect(agent) as busy:
        port = port_of(busy)
        deadline = time.monotonic() + 2.4
        while time.monotonic() < deadline:
            busy.sendall(head(agent, "GET", "/v1/health"))
            assert read_answer(busy)[0] == 200
            time.sleep(0.3)
    assert not lines_naming(agent, port)
    assert_serving_and_released(agent)


def test_a_trickled_body_is_closed_after_the_body_timeout_and_nothing_else_is_logged(
    start_agent, tmp_path
):
    agent = start(start_agent, tmp_path, body_timeout_ms=600)
    announce = ("Content-Type: application/json", "Content-Length: 200")
    trickle = connect(agent)
    trickle.sendall(head(agent, "PATCH", "/v1/instances/GHOST/mirror", *announce) + b"{")
    assert (w := closed_within(trickle, 5, drip=b" ")) != STILL_OPEN and w >= 0.5, w
    assert_logged(agent, port_of(trickle), "WARNING", "a request body not finished", "ms=600")
    # a client that leaves in the middle of its body: one line, not an internal error
    with connect(agent) as leaving:
        leaving.sendall(head(agent, "PATCH", "/v1/instances/GHOST/mirror", *announce) + b"{")
        port = port_of(leaving)
        time.sleep(0.1)
    assert_logged(agent, port, "INFO", "went away during PATCH")
    assert "Traceback" not in agent.log() and "internal error" not in agent.log()

    # the same body, slow but whole within the timeout, gets its answer
    body = b'{"qos_timeout_ms": 1}'
    slow = connect(agent)
    sized = ("Content-Type: application/json", f"Content-Length: {len(body)}")
    slow.sendall(head(agent, "PATCH", "/v1/instances/GHOST/mirror", *sized))
    for i in range(0, len(body), 8):
        time.sleep(0.1)
        slow.sendall(body[i : i + 8])
    status, answer = read_answer(slow)
    assert status == 400 and b"qos_timeout_ms" in answer, answer
    slow.close()
    assert listener(agent)["closed"] == {"body_timeout_ms": 1}
    assert_serving_and_released(agent)


def test_streams_outlive_every_timer_and_one_beyond_the_cap_is_a_503(start_agent, tmp_path):
    timers = {"header_timeout_ms": 400, "idle_timeout_ms": 400, "body_timeout_ms": 400}
    agent = start(start_agent, tmp_path, max_streams=2, **timers)
    streams = [connect(agent) for _ in range(2)]
    for s in streams:
        s.sendall(head(agent, "GET", "/v1/status/stream"))
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 "), "the stream did not start"
    third = connect(agent)
    third.sendall(head(agent, "GET", "/v1/status/stream"))
    status, body = read_answer(third)
    assert status == 503 and b'"too_many_streams"' in body and b"max_streams" in body, body
    assert_logged(agent, port_of(third), "WARNING", "503 too_many_streams")

    # five times every timeout: both streams still carry their keep-alives
    time.sleep(2.0)
    for s in streams:
        s.settimeout(1)
        assert b": keep-alive" in s.recv(65536)
        assert not lines_naming(agent, port_of(s)), lines_naming(agent, port_of(s))
    with agent.client(credential=agent.credential) as api:
        assert api.health()["status_stream"]["refused"] == 1

    streams.pop().close()  # a place is free again once the agent notices

    def admitted():
        s = connect(agent)
        s.sendall(head(agent, "GET", "/v1/status/stream"))
        s.settimeout(5)
        if s.recv(300).startswith(b"HTTP/1.1 200 "):
            return s
        s.close()
        return None

    again = wait_for(admitted, 5, "a stream in the freed place")
    for s in [*streams, third, again]:
        s.close()
    assert_serving_and_released(agent)
