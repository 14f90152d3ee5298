"""The live monitor's websockets, served as in production (uvicorn, the portal's ASGI
application: session, Origin check, routes) and spoken to by a real websocket client: who may
connect, the snapshot a viewer gets on (re)connect, the changes the collector publishes, and
what happens to a client that sends anything but a resync request.

Run on the in-memory channel layer, and again on channels-redis in the services pass."""

import json

import pytest
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from monitor import publish
from monitor.api.serializers import mirror_status
from monitor.models import MemberState
from tests import factories
from tests.conftest import make_user
from tests.monitor.conftest import session_cookie

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]


@pytest.fixture
def shop(transactional_db):
    mirror = factories.mirror(name="SHOP")
    a = factories.member(mirror, name="A", status="Primary")
    b = factories.member(mirror, name="B", status="Backup")
    now = timezone.now()
    for member, transfer in ((a, "N/A"), (b, "Active")):
        MemberState.objects.create(
            member=member,
            status=member.status,
            journal_transfer=transfer,
            dejournaling="Caught up",
            record={"failover_mode": "Agent Controlled"},
            seen_at=now,
            changed_at=now,
        )
    return mirror


@pytest.fixture
def watcher(transactional_db):
    return make_user("watcher", "viewer")


def open_socket(server, path: str, user=None, origin: str | None = None):
    headers = {}
    if user is not None:
        headers["Cookie"] = "sessionid=" + session_cookie(user)["value"]
    return connect(
        server.ws_url + path,
        origin=origin or server.url,
        additional_headers=headers,
        open_timeout=5,
        proxy=None,
    )


def receive(socket) -> dict:
    return json.loads(socket.recv(timeout=5))


def test_a_viewer_gets_the_mirror_monitor_snapshot_on_connect(asgi_server, shop, watcher):
    with open_socket(asgi_server, "/ws/mirrors/shop/", watcher) as socket:
        first = receive(socket)

    assert first["type"] == "status"
    members = {m["name"]: m for m in first["status"]["members"]}
    assert members["B"]["status"] == "Backup" and members["B"]["journal_transfer"] == "Active"
    assert first["status"]["failover_mode"] == "Agent Controlled"
    assert first["status"]["mirror"] == "SHOP"


def test_the_fleet_socket_lists_every_mirror_worst_first(asgi_server, shop, watcher):
    broken = factories.mirror(name="BROKEN")
    factories.member(broken, name="X", status="Down", observed_at=timezone.now())

    with open_socket(asgi_server, "/ws/fleet/", watcher) as socket:
        first = receive(socket)

    assert first["type"] == "fleet"
    assert [row["mirror"] for row in first["rows"]] == ["BROKEN", "SHOP"]
    assert first["rows"][0]["health"]["level"] == "bad"


def test_what_the_collector_publishes_reaches_every_viewer_of_that_mirror(
    asgi_server, shop, watcher
):
    sockets = [open_socket(asgi_server, "/ws/mirrors/SHOP/", watcher).__enter__() for _ in range(3)]
    for socket in sockets:
        receive(socket)  # the snapshot
    MemberState.objects.filter(member__name="B").update(status="Down", journal_transfer="")

    publish.send([publish.mirror_group(shop.pk)], {"type": "status", "status": mirror_status(shop)})

    for socket in sockets:
        members = {m["name"]: m["status"] for m in receive(socket)["status"]["members"]}
        assert members["B"] == "Down"
        socket.close()


def test_a_viewer_of_another_mirror_does_not_get_its_changes(asgi_server, shop, watcher):
    factories.mirror(name="OTHER")
    with open_socket(asgi_server, "/ws/mirrors/OTHER/", watcher) as socket:
        receive(socket)

        publish.send([publish.mirror_group(shop.pk)], {"type": "status", "status": {}})

        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.5)


@pytest.mark.parametrize(
    "who, path, reason",
    [
        ("anonymous", "/ws/mirrors/SHOP/", "not signed in with a role"),
        ("no role", "/ws/fleet/", "not signed in with a role"),
        ("viewer", "/ws/mirrors/NOPE/", "no such mirror"),
    ],
)
def test_who_may_not_watch_is_refused_with_the_reason_logged(
    asgi_server, shop, watcher, who, path, reason, caplog
):
    user = {"anonymous": None, "no role": make_user("nobody", None), "viewer": watcher}[who]

    # accepted only to say why with a close code the page can act on (static/js/live.js)
    with open_socket(asgi_server, path, user) as socket, pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=5)  # nothing comes before the close

    assert closed.value.rcvd.code == {"viewer": 4404}.get(who, 4403)
    assert f"refused: {reason}" in caplog.text


def test_a_page_of_another_site_cannot_open_the_socket_with_the_viewers_cookie(
    asgi_server, shop, watcher, caplog
):
    with pytest.raises(InvalidStatus):
        open_socket(asgi_server, "/ws/mirrors/SHOP/", watcher, origin="https://evil.example")

    assert "origin https://evil.example is not one of ALLOWED_HOSTS" in caplog.text


@pytest.mark.parametrize(
    "message",
    ['{"type": "delete everything"}', "not json", "[]", '{"type": "resync"}' + " " * 300],
)
def test_a_client_sending_anything_but_a_resync_is_closed_and_logged(
    asgi_server, shop, watcher, message, caplog
):
    with open_socket(asgi_server, "/ws/mirrors/SHOP/", watcher) as socket:
        receive(socket)
        socket.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)

    assert closed.value.rcvd.code == 4400
    assert "bad message" in caplog.text


def test_a_resync_request_gets_a_fresh_snapshot(asgi_server, shop, watcher):
    with open_socket(asgi_server, "/ws/mirrors/SHOP/", watcher) as socket:
        receive(socket)
        MemberState.objects.filter(member__name="A").update(status="In Trouble")
        socket.send(json.dumps({"type": "resync"}))
        again = receive(socket)

    members = {m["name"]: m["status"] for m in again["status"]["members"]}
    assert members["A"] == "In Trouble"


def test_a_huge_message_is_cut_off_by_the_server_before_it_is_buffered(asgi_server, shop, watcher):
    with open_socket(asgi_server, "/ws/mirrors/SHOP/", watcher) as socket:
        receive(socket)
        socket.send("x" * 200_000)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)

    assert closed.value.rcvd.code == 1009  # message too big
