"""Hostile bodies on every JSON route of the agent API (issue 12, finding 7).

A real agent process with two instances: A, a real instance that is the primary of mirror
HOSTILE, and GHOST, configured but never running (its requests get as far as the agent's
own checks, then 503: nothing a hostile body could do reaches anything).  Every hostile
body must get a 4xx in the agent's error shape (engine/agent/errors.py), a WARNING line
in the agent's log naming the peer address and the reason, and the agent keeps serving.
A body sent as anything but application/json is refused with 415.

The fixtures and helpers here are shared with test_agent_api_fuzz.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
from dataclasses import dataclass

import pytest
import yaml

from engine import rules
from engine.agent.server import ROUTES
from engine.client.agent import AgentClient
from tests.engine.agent_fixtures import AgentProcess, write_agent_config
from tests.engine.cluster_fixtures import free_ports
from tests.engine.member_fixtures import Hosts, InstanceProcess
from tests.engine.test_agent_api_spec import SPEC_PATH

pytestmark = pytest.mark.timeout(180)

MAX_BODY = 65536  # the agent's default max_request_bytes (engine/agent/config.py)
# every route that takes a body: (method, path template)
BODY_ROUTES = [(m, p) for m, p, _ in ROUTES if m in ("POST", "PUT", "PATCH", "DELETE")]


@dataclass
class Site:
    agent: AgentProcess
    a: InstanceProcess
    credential: str

    def api(self) -> AgentClient:
        return self.agent.client(credential=self.credential)


@dataclass
class Answer:
    status: int
    body: bytes
    port: int  # the client's own port: the agent's log names the peer by it

    @property
    def error(self) -> dict:
        return json.loads(self.body)["error"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-agent")
    hosts = Hosts(root)
    agent = None
    try:
        a = hosts.add("A")
        entries = [
            {"name": "A", "superserver": a.superserver, "data_dir": str(a.data_dir)},
            {"name": "GHOST", "superserver": "127.0.0.1:1", "data_dir": str(root / "ghost")},
        ]
        credential = secrets.token_urlsafe(24)
        (port,) = free_ports(1)
        config = write_agent_config(
            root / "agent.toml", port, credential=credential, instances=entries
        )
        agent = AgentProcess(config, port, None, credential)
        agent.wait_ready()
        with agent.client(credential=credential) as api:
            api.create_mirror("A", "HOSTILE", a.private)
            assert api.wait_member("A")["role"] == "primary"
        yield Site(agent, a, credential)
    finally:
        if agent is not None:
            agent.stop()
        hosts.close()


def path_for(template: str, instance: str = "GHOST") -> str:
    path = template.replace("{name}", instance).replace("{db}", "USER")
    path = path.replace("{mirror}", "HOSTILE")
    return path.replace("{member}", "B").replace("{credential}", "app")


def send(
    site: Site,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = "application/json",
    *,
    chunked: bool = False,
    headers: dict | None = None,
) -> Answer:
    """One request on a fresh connection, written by hand so nothing is tidied up."""
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: close",
        f"Authorization: Bearer {site.credential}",
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192])
            for i in range(0, len(body), 8192)
        )
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    with socket.create_connection(("127.0.0.1", site.agent.port), timeout=30) as sock:
        port = sock.getsockname()[1]
        # the agent may answer (413, 415) and close before it has read everything
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    head, _, content = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), out[:200]
    return Answer(int(head.split(b" ", 2)[1]), content, port)


def assert_refused(answer: Answer, status: int | None = None, contains: str = "") -> dict:
    """A 4xx (the given one) in the agent's error shape; returns the error."""
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    if status is not None:
        assert answer.status == status, (answer.status, answer.body[:300])
    error = answer.error
    assert set(error) <= {"status", "code", "message", "rule"}, error
    assert error["status"] == answer.status
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert contains in error["message"], error["message"]
    return error


def warning_lines(site: Site, port: int) -> list[str]:
    """The agent's WARNING lines that name the peer 127.0.0.1:<port>."""
    peer = re.compile(rf"127\.0\.0\.1:{port}\b")
    return [
        line for line in site.agent.log().splitlines() if " WARNING " in line and peer.search(line)
    ]


def assert_logged(site: Site, answer: Answer, reason: str | None = None) -> None:
    """The refusal is a WARNING naming the peer and its reason (the answer's message)."""
    lines = warning_lines(site, answer.port)
    assert lines, f"no WARNING line names 127.0.0.1:{answer.port}:\n{site.agent.log()[-2000:]}"
    want = reason if reason is not None else answer.error["message"][:60]
    assert any(want in line for line in lines), (want, lines)


def assert_serving(site: Site) -> None:
    assert site.agent.alive()
    with site.api() as api:
        assert api.health()["api_version"] == "v1"


def qos(site: Site) -> int:
    with site.api() as api:
        return api.mirror_info("A")["qos_timeout_ms"]


# -- the findings of issue 12 ---------------------------------------------------------------


def test_a_qos_timeout_of_ten_to_the_thirty_is_a_400_naming_the_range(site):
    before = qos(site)
    for value in (10**30, 2**62, 2**64, -(10**30), rules.QOS_TIMEOUT_MS[1] + 1):
        answer = send(site, "PATCH", "/v1/instances/A/mirror", b'{"qos_timeout_ms": %d}' % value)
        error = assert_refused(answer, 400, "from 100 to 600000")
        assert error["rule"] == "invalid_qos_timeout"
        assert_logged(site, answer)
    body = b'{"mirror": "X", "private": "127.0.0.1:9", "settings": {"qos_timeout_ms": %d}}'
    answer = send(site, "POST", "/v1/instances/A/mirror", body % 10**30)
    assert assert_refused(answer, 400)["rule"] == "invalid_qos_timeout"
    assert qos(site) == before
    assert_serving(site)


LONE_SURROGATES = [
    ("POST", "/mirror", rb'{"mirror": "X", "private": "\ud800:1"}'),
    ("POST", "/mirror", rb'{"mirror": "X", "private": "127.0.0.1:1", "member": "\udfff"}'),
    ("POST", "/mirror/join", rb'{"mirror": "X", "address": "\ud800:1", "type": "dr"}'),
    (
        "POST",
        "/mirror/join",
        rb'{"mirror": "X", "address": "127.0.0.1:1", "type": "dr", "superserver": "\udc00:2"}',
    ),
    ("PATCH", "/mirror/members/B", rb'{"superserver": "\ud800:1"}'),
    ("PATCH", "/mirror/members/B", rb'{"private": "h\udbff:1"}'),
    ("PUT", "/tls", rb'{"cert": "/\ud800", "key": "/k", "ca": "/c"}'),
    ("POST", "/databases", rb'{"name": "\ud800"}'),
    ("POST", "/databases", rb'{"database": "\ud800:1"}'),
    ("POST", "/databases/catchup", rb'{"databases": ["\ud800"]}'),
    ("PATCH", "/mirror", rb'{"async_compression": "\ud800"}'),
    ("PATCH", "/mirror", rb'{"\ud800": 1}'),
]


@pytest.mark.parametrize(("method", "tail", "body"), LONE_SURROGATES)
def test_a_string_holding_a_lone_surrogate_is_a_400(site, method, tail, body):
    """JSON's \\ud800 escape decodes to a str that is not Unicode text: it cannot be sent
    to an instance (MessagePack refuses it), and once it reached the encoder it was a 500."""
    answer = send(site, method, "/v1/instances/A" + tail, body)
    assert_refused(answer, 400)
    assert_logged(site, answer)
    assert_serving(site)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonx",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        None,  # no Content-Type at all
    ],
)
def test_a_body_not_sent_as_json_is_a_415_naming_the_expected_type(site, content_type):
    before = qos(site)
    answer = send(
        site, "PATCH", "/v1/instances/A/mirror", b'{"qos_timeout_ms": 5000}', content_type
    )
    error = assert_refused(answer, 415, "application/json")
    assert error["code"] == "unsupported_media_type"
    assert_logged(site, answer)
    assert qos(site) == before  # nothing was applied
    assert_serving(site)


def test_json_with_its_type_in_any_case_and_utf8_charset_is_accepted(site):
    for content_type in ("application/json", "Application/JSON", "application/json; charset=UTF-8"):
        answer = send(
            site, "PATCH", "/v1/instances/A/mirror", b'{"qos_timeout_ms": 7000}', content_type
        )
        assert answer.status == 200, answer.body
    assert qos(site) == 7000
    # no body at all needs no type: a bodyless POST is how most operations are called
    answer = send(site, "POST", "/v1/instances/GHOST/mirroring/stop", b"", "text/plain")
    assert answer.status == 503, answer.body  # past the body checks: GHOST is down


# -- every JSON route, hostile bodies ------------------------------------------------------

DEEP = 5000
HOSTILE_BODIES = [
    # (body, what the refusal says)
    (b'{"port": 1000000000000000000000000000000}', ""),
    (b"1" * 5000, ""),  # an integer of 5000 digits
    (b'{"wait": 1.5, "port": 2.0, "qos_timeout_ms": 8000.0}', ""),
    (b'{"port": true, "qos_timeout_ms": false}', ""),
    (b'{"wait": NaN}', "NaN"),
    (b'{"port": Infinity}', "Infinity"),
    (b'{"qos_timeout_ms": -Infinity}', "Infinity"),
    (b'{"port": 1e999}', ""),
    (b"[" * DEEP + b"]" * DEEP, "nested"),
    (b'{"databases": ' + b"[" * 900 + b"]" * 900 + b"}", "nested"),
    (b'{"databases": ' + b"[" * 60 + b'"A"' + b"]" * 60 + b"}", ""),
    (b'{"name": "' + b"N" * 60000 + b'"}', ""),
    (b'{"' + b"k" * 60000 + b'": 1}', ""),
    (b"null", "JSON object"),
    (b"[]", "JSON object"),
    (b'"stop"', "JSON object"),
    (b"42", "JSON object"),
    (b"true", "JSON object"),
    (b'{"wait": true, "wait": false}', "duplicate"),
    (b'{"x": 1, "x": 1}', "duplicate"),
    (b'{"name": "\xff\xfe"}', "UTF-8"),
    (b"\xef\xbb\xbf{}", ""),  # a UTF-8 byte order mark
    ('{"wait": true}'.encode("utf-16"), "UTF-8"),
    ('{"wait": true}'.encode("utf-32-le"), ""),
    (b"{", ""),
    (b'{"wait": tru}', ""),
    (b"\x00" * 100, ""),
]


@pytest.mark.parametrize(("method", "template"), BODY_ROUTES)
def test_hostile_bodies_on_every_json_route_are_4xx_logged_and_harmless(site, method, template):
    path = path_for(template)
    for body, reason in HOSTILE_BODIES:
        answer = send(site, method, path, body)
        assert_refused(answer, contains=reason)
        assert answer.status in (400, 415), (body[:40], answer.status)
        assert_logged(site, answer)
    # the same on the running instance: nothing reaches it
    info_before = None
    with site.api() as api:
        info_before = api.mirror_info("A")
    for body, _ in HOSTILE_BODIES[:12]:
        if template.endswith(("force-down", "/stop")):
            break  # a regression there would stop A for every test after this one
        answer = send(site, method, path_for(template, "A"), body)
        assert_refused(answer)
    with site.api() as api:
        assert api.mirror_info("A") == info_before
    assert_serving(site)


@pytest.mark.parametrize(
    ("method", "tail", "body"),
    [
        ("POST", "/databases", b""),
        ("POST", "/databases", b"  \n "),
        ("POST", "/databases/catchup", b""),
        ("POST", "/mirror", b""),
        ("PATCH", "/mirror", b""),
        ("POST", "/mirror/join", b""),
        ("PATCH", "/mirror/members/B", b""),
        ("PUT", "/tls", b""),
        ("PUT", "/superserver", b""),
    ],
)
def test_an_empty_body_where_one_is_required_is_a_400(site, method, tail, body):
    answer = send(site, method, "/v1/instances/GHOST" + tail, body)
    assert_refused(answer, 400)
    assert_logged(site, answer)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_size_limit_is_a_413(site, chunked):
    body = b'{"name": "' + b"N" * (MAX_BODY + 10) + b'"}'
    answer = send(site, "POST", "/v1/instances/GHOST/databases", body, chunked=chunked)
    assert_refused(answer, 413, str(MAX_BODY))
    assert_logged(site, answer)
    assert_serving(site)


def test_the_force_down_route_refuses_a_body_it_does_not_understand(site):
    """A body on force-down was ignored and the instance killed; garbage is refused now."""
    for body, status in ((b"garbage", 400), (b'{"now": true}', 400), (b"{}", None)):
        answer = send(site, "POST", "/v1/instances/GHOST/force-down", body)
        if status is None:
            assert answer.status == 200, answer.body
        else:
            assert_refused(answer, status)
            assert_logged(site, answer)
    answer = send(site, "POST", "/v1/instances/GHOST/force-down", b"{}", "text/plain")
    assert_refused(answer, 415)
    assert site.a.status()["status"] == "Primary"


def test_refusals_of_the_http_layer_and_of_authentication_are_warnings_with_the_peer(site):
    answer = send(site, "GET", "/v1/nowhere")
    assert_refused(answer, 404)
    assert_logged(site, answer)
    with socket.create_connection(("127.0.0.1", site.agent.port), timeout=10) as sock:
        port = sock.getsockname()[1]
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n")
        assert b" 401 " in sock.recv(65536).split(b"\r\n")[0]
    assert any("the agent credential is not valid" in line for line in warning_lines(site, port))


def test_the_api_description_lists_the_body_refusals_of_every_body_taking_route():
    spec = yaml.safe_load(SPEC_PATH.read_text())
    for method, template in BODY_ROUTES:
        responses = spec["paths"][template][method.lower()]["responses"]
        assert {"400", "413", "415"} <= set(responses), (method, template)
    assert "UnsupportedMediaType" in spec["components"]["responses"]
