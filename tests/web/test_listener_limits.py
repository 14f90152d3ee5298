"""The portal's web listener cuts what a hostile client would hold (portal/listener.py,
docs/hardening.md "Portal listener limits"): the portal served by uvicorn as in production, with
the limits shortened, spoken to over raw sockets."""

import http.client
import json
import logging
import select
import socket
import time

import pytest
from websockets.sync.client import connect

from engine.wire.limits import RateLimitedLog
from portal import listener
from tests.conftest import make_user
from tests.monitor.conftest import AsgiServer, session_cookie

pytestmark = pytest.mark.timeout(60)

HEAD = b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def portal(settings, transactional_db, caplog, monkeypatch):
    monkeypatch.setattr(listener, "refusals", RateLimitedLog(listener.log))  # full buckets
    settings.PORTAL_HTTP_HEADER_TIMEOUT_S = 0.5
    settings.PORTAL_HTTP_BODY_TIMEOUT_S = 0.5
    settings.PORTAL_HTTP_MAX_CONNECTIONS = 5
    settings.PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER = 5
    caplog.set_level(logging.INFO, logger="portal.listener")
    server = AsgiServer().start()
    yield server
    server.stop()


def dial(server, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", server.port), timeout=5, source_address=(source, 0)
    )


def until_closed(sock) -> tuple[bytes, float]:
    """What the server sent before it closed the connection, and how long that took."""
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def served(server) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/login/")
    status = connection.getresponse().status
    connection.close()
    return status


def peer(sock) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


def listener_lines(caplog, level=logging.WARNING) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "portal.listener" and r.levelno == level
    ]


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(portal, caplog):
    with dial(portal) as sock:
        received, waited = until_closed(sock)
        who = peer(sock)

    assert received == b"" and 0.4 < waited < 3
    assert listener_lines(caplog, logging.INFO) == [
        f"portal listener: closed {who}: nothing sent 0.5 s after connecting "
        "[limit PORTAL_HTTP_HEADER_TIMEOUT_MS=500]"
    ]


def test_a_request_head_dripped_a_byte_at_a_time_is_cut_at_the_deadline(portal, caplog):
    with dial(portal) as sock:
        sock.settimeout(0.1)
        started = time.monotonic()
        try:  # slowloris: always one more byte, never the end of the head
            for byte in b"GET /login/ HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                sock.send(bytes([byte]))
                try:
                    if sock.recv(1) == b"":
                        break
                except TimeoutError:
                    pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        waited = time.monotonic() - started
        who = peer(sock)

    assert 0.4 < waited < 3
    assert listener_lines(caplog) == [
        f"portal listener: closed {who}: no whole request head 0.5 s after connecting "
        "[limit PORTAL_HTTP_HEADER_TIMEOUT_MS=500]"
    ]
    assert served(portal) == 200


def test_a_later_request_on_a_kept_alive_connection_has_its_own_head_deadline(portal, caplog):
    connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=5)
    connection.connect()
    time.sleep(0.3)  # most of the first deadline gone: the next request starts its own
    connection.request("GET", "/login/")
    first = connection.getresponse()
    first.read()
    assert first.status == 200
    time.sleep(0.3)
    connection.sock.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    received, waited = until_closed(connection.sock)
    who = peer(connection.sock)
    connection.close()

    assert received == b"" and 0.4 < waited < 3
    assert listener_lines(caplog) == [
        f"portal listener: closed {who}: a request head not finished 0.5 s after its first "
        "byte [limit PORTAL_HTTP_HEADER_TIMEOUT_MS=500]"
    ]


def test_blank_lines_after_an_answer_are_timed_as_the_next_head(portal, caplog):
    # the parser skips blank lines between requests without a word; uvicorn's keep-alive
    # timer stops at any byte: untimed, such connections would fill the cap for good
    connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=5)
    connection.request("GET", "/login/")
    connection.getresponse().read()
    connection.sock.sendall(b"\r\n")
    received, waited = until_closed(connection.sock)
    who = peer(connection.sock)
    connection.close()

    assert received == b"" and 0.4 < waited < 3
    assert listener_lines(caplog) == [
        f"portal listener: closed {who}: a request head not finished 0.5 s after its first "
        "byte [limit PORTAL_HTTP_HEADER_TIMEOUT_MS=500]"
    ]


def test_a_request_pipelined_behind_a_slow_answer_is_not_timed_while_it_waits(
    portal, caplog, settings
):
    settings.ROOT_URLCONF = "tests.web.slow_urls"
    body = json.dumps({"name": "QUEUED"}).encode()
    with dial(portal) as sock:
        sock.sendall(b"GET /slow/?s=1.5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.2)
        sock.sendall(
            b"POST /api/v1/mirrors/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5]
        )
        time.sleep(0.2)  # the rest is sent in time; uvicorn reads it once /slow/ is answered
        sock.sendall(body[5:])
        received, _ = until_closed(sock)

    first, _, second = received.partition(b"slow")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert second.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert listener_lines(caplog) == []


def test_a_head_too_large_gets_a_431_before_the_parser_holds_it_all(portal, caplog, settings):
    settings.PORTAL_HTTP_MAX_HEAD_BYTES = 4096
    settings.PORTAL_HTTP_HEADER_TIMEOUT_S = 30
    with dial(portal) as sock:
        try:  # a head that never ends, sent as fast as the portal takes it, until it answers
            sock.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(1000):
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(b"X-Big: " + b"a" * 1000 + b"\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass
        received, waited = until_closed(sock)
        who = peer(sock)

    # closing with part of the head unread resets the connection, which may overtake the answer
    assert received == b"" or received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert waited < 3  # not the head deadline
    (line,) = listener_lines(caplog)
    assert line.startswith(f"portal listener: closed {who}: a request head still unfinished after ")
    assert line.endswith(" bytes [limit PORTAL_HTTP_MAX_HEAD_BYTES=4096]")
    assert served(portal) == 200


def test_a_large_head_within_the_limit_is_served(portal, caplog):
    with dial(portal) as sock:
        sock.sendall(
            b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Cookie: x=" + b"c" * 20_000 + b"\r\n\r\n"
        )
        received, _ = until_closed(sock)

    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert listener_lines(caplog) == []


def test_a_body_that_never_arrives_gets_a_408_and_the_portal_keeps_serving(portal, caplog):
    with dial(portal) as sock:
        sock.sendall(
            b"POST /api/v1/mirrors/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"name": "A'
        )
        received, waited = until_closed(sock)
        who = peer(sock)

    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert received.endswith(b"\r\n\r\nThe request body did not arrive in time.\n")
    assert 0.4 < waited < 3
    assert listener_lines(caplog) == [
        f"portal listener: closed {who}: a request body not finished 0.5 s after its head "
        "(POST /api/v1/mirrors/, 11 bytes in) [limit PORTAL_HTTP_BODY_TIMEOUT_MS=500]"
    ]
    assert served(portal) == 200


def test_a_body_sent_in_pieces_within_the_deadline_is_answered_by_the_api(portal, caplog):
    body = json.dumps({"name": "SLOW"}).encode()
    with dial(portal) as sock:
        sock.sendall(
            b"POST /api/v1/mirrors/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for piece in (body[:5], body[5:10], body[10:]):
            time.sleep(0.1)
            sock.sendall(piece)
        received, _ = until_closed(sock)

    assert received.startswith(b"HTTP/1.1 401 Unauthorized\r\n")  # no credentials: the API's own
    assert listener_lines(caplog) == []


def test_connections_beyond_the_cap_are_refused_at_once_and_logged(portal, caplog, settings):
    settings.PORTAL_HTTP_HEADER_TIMEOUT_S = 30
    held = [dial(portal) for _ in range(5)]
    time.sleep(0.3)  # all five accepted
    with dial(portal) as refused:
        received, waited = until_closed(refused)
        who = peer(refused)
    for sock in held:
        sock.close()

    assert received == b"" and waited < 1
    assert listener_lines(caplog) == [
        f"portal listener: refused {who}: too many connections: 5 open "
        "[limit PORTAL_HTTP_MAX_CONNECTIONS=5]"
    ]
    time.sleep(0.3)  # the five closed
    assert served(portal) == 200


def test_one_address_may_not_take_every_connection(portal, caplog, settings):
    settings.PORTAL_HTTP_HEADER_TIMEOUT_S = 30
    settings.PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER = 3
    held = [dial(portal) for _ in range(3)]
    time.sleep(0.3)
    with dial(portal) as refused:
        received, waited = until_closed(refused)
        who = peer(refused)
    with dial(portal, source="127.0.0.2") as other:  # another host still gets in
        other.sendall(HEAD)
        answer = other.recv(100)
    for sock in held:
        sock.close()

    assert received == b"" and waited < 1
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert listener_lines(caplog) == [
        f"portal listener: refused {who}: too many connections from 127.0.0.1: 3 open "
        "[limit PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER=3]"
    ]


def test_a_flood_beyond_the_cap_logs_twenty_lines_then_counts_the_rest(portal, caplog, settings):
    settings.PORTAL_HTTP_HEADER_TIMEOUT_S = 30
    held = [dial(portal) for _ in range(5)]
    time.sleep(0.3)
    for _ in range(30):
        with dial(portal) as refused:
            until_closed(refused)
    time.sleep(1.1)  # the bucket has a token again
    for sock in held:
        sock.close()
    time.sleep(0.3)

    lines = listener_lines(caplog)
    assert len(lines) == 21
    assert lines[-1] == (
        "portal listener: refused [limit PORTAL_HTTP_MAX_CONNECTIONS] (+10 more not logged)"
    )


def test_an_open_websocket_is_never_timed(portal, caplog, transactional_db):
    watcher = make_user("watcher", "viewer")
    with connect(
        portal.ws_url + "/ws/fleet/",
        origin=portal.url,
        additional_headers={"Cookie": "sessionid=" + session_cookie(watcher)["value"]},
        open_timeout=5,
        proxy=None,
    ) as fleet:
        fleet.recv(timeout=5)
        time.sleep(1.2)  # past both deadlines
        fleet.send(json.dumps({"type": "resync"}))
        assert json.loads(fleet.recv(timeout=5))["type"] == "fleet"

    assert listener_lines(caplog) == []
