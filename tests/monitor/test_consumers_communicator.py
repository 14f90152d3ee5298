"""The live monitor's websockets in process, spoken to with Channels' WebsocketCommunicator
rather than over a real server (tests/monitor/test_consumers.py): who may connect, the snapshot
on connect and on resync, what the collector publishes (monitor/publish.py), and the close codes
a refused visitor gets.

The handshake tests go through the portal's whole ASGI application (the Origin check, the
session, the routes); the rest speak to the consumers behind a bare router, with the viewer set
in the scope as the session middleware would. Every test runs on the in-memory channel layer,
and again on channels-redis when REDIS_URL is set (the services pass of `make test`)."""

import asyncio
import contextlib
import functools
import json
import os
import sys
import types
from datetime import datetime

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels_redis.core import RedisChannelLayer
from django.contrib.auth.models import AnonymousUser
from django.core.asgi import get_asgi_application
from django.urls import path
from django.utils import timezone

from members.models import Mirror
from monitor import publish
from monitor.api.serializers import fleet, fleet_row, mirror_status
from monitor.consumers import (
    CLOSE_BAD_MESSAGE,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    FleetConsumer,
    MirrorConsumer,
)
from monitor.models import MemberState
from portal.env import env_int, env_url, redis_database
from portal.routing import build_application
from tests import factories
from tests.conftest import make_user, require
from tests.monitor import test_consumers as over_a_server
from tests.monitor.conftest import session_cookie


def _websocket_communicator():
    """channels.testing imports its live-server test case, which needs daphne, a server the
    portal does not use (it serves with uvicorn); the communicator itself needs only asgiref.
    Without daphne, a placeholder stands in for the length of the import and is taken away."""
    try:
        from channels.testing import WebsocketCommunicator
    except ModuleNotFoundError as missing:
        if missing.name not in ("daphne", "daphne.testing"):
            raise
    else:
        return WebsocketCommunicator

    def no_daphne(*args, **kwargs):
        raise RuntimeError("ChannelsLiveServerTestCase needs daphne, which is not installed")

    placeholder = types.ModuleType("daphne")
    placeholder.testing = types.ModuleType("daphne.testing")
    placeholder.testing.DaphneProcess = no_daphne
    sys.modules.update({"daphne": placeholder, "daphne.testing": placeholder.testing})
    try:
        from channels.testing import WebsocketCommunicator
    finally:
        del sys.modules["daphne"], sys.modules["daphne.testing"]
    return WebsocketCommunicator


WebsocketCommunicator = _websocket_communicator()

# the same mirror (SHOP: A Primary, B Backup with its journal transfer Active) and viewer as
# the tests over a real server
shop, watcher = over_a_server.shop, over_a_server.watcher

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

SITE = "portal.example"  # the only allowed host while these tests run
ORIGIN = f"https://{SITE}"
TIMEOUT_S = 3  # per message; channels-redis needs a round trip or two


@pytest.fixture(
    params=[
        pytest.param("in-memory"),
        pytest.param("channels-redis", marks=pytest.mark.services),
    ]
)
def channel_layer(request, settings, transactional_db):
    """The channel layer the consumers and the publisher share, reset for every test."""
    if request.param == "in-memory":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        yield get_channel_layer()
        return
    redis_url = env_url("REDIS_URL", ("redis", "rediss"))
    require(bool(redis_url), "channels-redis needs a Redis server: set REDIS_URL")
    host = redis_database(redis_url, env_int("REDIS_DB_CHANNELS", 2, minimum=0))
    prefix = f"test-monitor-{os.getpid()}:"  # two runs on one Redis never share a mirror's group
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "prefix": prefix},
        }
    }
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    yield layer
    # not layer.flush(): it would close the publisher's connections, which live on its own loop
    with redis.Redis.from_url(host) as server:
        for key in server.scan_iter(match=prefix + "*"):
            server.delete(key)


@pytest.fixture
def application(settings, channel_layer):
    """What portal/asgi.py serves, for a portal that answers to SITE only."""
    settings.ALLOWED_HOSTS = [SITE]
    return build_application(get_asgi_application())


def consumers_for(user):
    """The monitor's routes without the Origin check and session: `user` is in the scope."""
    router = URLRouter(
        [
            path("ws/fleet/", FleetConsumer.as_asgi()),
            path("ws/mirrors/<str:name>/", MirrorConsumer.as_asgi()),
        ]
    )

    async def with_user(scope, receive, send):
        return await router({**scope, "user": user}, receive, send)

    return with_user


def in_an_event_loop(test):
    """Runs an async test body to completion from the (synchronous) test, as Channels' own
    sync_to_async helpers expect: database work goes back to the test's thread."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        async_to_sync(test)(*args, **kwargs)

    return run


@contextlib.asynccontextmanager
async def socket(application, where: str, user=None, origin: str | None = ORIGIN):
    headers = [(b"host", SITE.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"{cookie['name']}={cookie['value']}".encode()))
    communicator = WebsocketCommunicator(application, where, headers=headers)
    try:
        yield communicator
    finally:
        # on channels-redis a consumer refused at once outlives its socket by up to 5 s: its
        # first blocking read of its channel does not take the cancellation (channels-redis
        # 4.3, redis-py 8.1), so wait a second at most rather than for it
        await communicator.disconnect(timeout=1)


async def receive(communicator) -> dict:
    return await communicator.receive_json_from(timeout=TIMEOUT_S)


async def refusal(communicator) -> int:
    """The close code a refused visitor gets: the socket is accepted only to say why
    (monitor/consumers.py refuse), and nothing comes before the close."""
    connected, _ = await communicator.connect(timeout=TIMEOUT_S)
    assert connected
    closed = await communicator.receive_output(timeout=TIMEOUT_S)
    assert closed["type"] == "websocket.close", closed
    return closed["code"]


async def as_sent(build, *args) -> dict:
    """What a serializer returns, as a viewer reads it off the socket (dates as text)."""
    return json.loads(publish.dumps(await database_sync_to_async(build)(*args)))


async def publish_from_the_collector(groups: list[str], message: dict) -> None:
    # publish.send blocks until the layer took the message: the collector calls it from a
    # thread of its own, never from an event loop's
    await asyncio.to_thread(publish.send, groups, message)


def same_status(received: dict, expected: dict) -> bool:
    """Two snapshots of a mirror agree on all but when they were built (received first)."""
    received, expected = dict(received), dict(expected)
    built, rebuilt = received.pop("generated_at"), expected.pop("generated_at")
    assert datetime.fromisoformat(built) <= datetime.fromisoformat(rebuilt)
    return received == expected


async def set_status(member_name: str, **fields) -> None:
    await MemberState.objects.filter(member__name=member_name).aupdate(**fields)


# --- through the portal's ASGI application -----------------------------------------------------


@in_an_event_loop
async def test_a_signed_in_viewer_is_accepted_and_first_gets_the_mirror_status(
    application, shop, watcher
):
    async with socket(application, "/ws/mirrors/shop/", watcher) as viewer:
        connected, _ = await viewer.connect(timeout=TIMEOUT_S)
        first = await receive(viewer)

    assert connected
    assert first["type"] == "status"
    assert same_status(first["status"], await as_sent(mirror_status, shop))
    assert first["status"]["mirror"] == "SHOP"


@in_an_event_loop
async def test_the_fleet_socket_sends_the_fleet_snapshot(application, shop, watcher):
    broken = await database_sync_to_async(factories.mirror)(name="BROKEN")
    await database_sync_to_async(factories.member)(
        broken, name="X", status="Down", observed_at=timezone.now()
    )

    async with socket(application, "/ws/fleet/", watcher) as viewer:
        connected, _ = await viewer.connect(timeout=TIMEOUT_S)
        first = await receive(viewer)

    assert connected
    assert first == {"type": "fleet", "rows": await as_sent(fleet)}
    assert [row["mirror"] for row in first["rows"]] == ["BROKEN", "SHOP"]


@pytest.mark.parametrize(
    "who, where",
    [
        ("anonymous", "/ws/mirrors/SHOP/"),
        ("anonymous", "/ws/fleet/"),
        ("no role", "/ws/mirrors/SHOP/"),
        ("no role", "/ws/fleet/"),
    ],
)
@in_an_event_loop
async def test_a_visitor_without_a_portal_role_is_refused_with_4403(
    application, shop, who, where, caplog
):
    user = None if who == "anonymous" else await database_sync_to_async(make_user)("nobody", None)

    async with socket(application, where, user) as visitor:
        assert await refusal(visitor) == CLOSE_FORBIDDEN

    assert f"websocket {where} from ? refused: not signed in with a role" in caplog.text


@in_an_event_loop
async def test_a_viewer_asking_for_an_unknown_mirror_is_refused_with_4404(
    application, shop, watcher, caplog
):
    async with socket(application, "/ws/mirrors/NOPE/", watcher) as viewer:
        assert await refusal(viewer) == CLOSE_NOT_FOUND

    assert "refused: no such mirror" in caplog.text


@pytest.mark.parametrize("origin", ["https://evil.example", f"https://{SITE}.evil.example", None])
@in_an_event_loop
async def test_a_page_of_another_site_is_refused_even_with_the_viewers_cookie(
    application, shop, watcher, origin, caplog
):
    async with socket(application, "/ws/mirrors/SHOP/", watcher, origin=origin) as viewer:
        connected, _ = await viewer.connect(timeout=TIMEOUT_S)

    assert not connected
    assert f"origin {origin or 'none'} is not one of ALLOWED_HOSTS" in caplog.text


# --- the consumers behind a bare router --------------------------------------------------------


@in_an_event_loop
async def test_what_the_collector_publishes_reaches_that_mirrors_viewer_and_no_other(
    channel_layer, shop, watcher
):
    other = await database_sync_to_async(factories.mirror)(name="OTHER")
    app = consumers_for(watcher)
    async with (
        socket(app, "/ws/mirrors/SHOP/") as shop_viewer,
        socket(app, "/ws/mirrors/OTHER/") as other_viewer,
    ):
        for viewer in (shop_viewer, other_viewer):
            assert (await viewer.connect(timeout=TIMEOUT_S))[0]
            await receive(viewer)  # the snapshot
        await set_status("B", status="Down", journal_transfer="")
        change = {"type": "status", "status": await as_sent(mirror_status, shop)}

        await publish_from_the_collector([publish.mirror_group(shop.pk)], change)

        assert await receive(shop_viewer) == change
        assert await other_viewer.receive_nothing(timeout=0.5)
        # the other viewer is still listening: its own mirror's changes do reach it
        await publish_from_the_collector([publish.mirror_group(other.pk)], {"type": "ping"})
        assert await receive(other_viewer) == {"type": "ping"}
        assert await shop_viewer.receive_nothing()


@in_an_event_loop
async def test_a_fleet_viewer_gets_the_rows_the_collector_publishes(channel_layer, shop, watcher):
    async with socket(consumers_for(watcher), "/ws/fleet/") as viewer:
        assert (await viewer.connect(timeout=TIMEOUT_S))[0]
        await receive(viewer)  # the snapshot
        row = {"type": "fleet_row", "row": await as_sent(fleet_row, shop)}

        await publish_from_the_collector([publish.FLEET_GROUP], row)

        assert await receive(viewer) == row


@pytest.mark.parametrize("who", ["anonymous", "no role"])
@in_an_event_loop
async def test_the_consumers_themselves_refuse_a_user_without_a_portal_role(
    channel_layer, shop, who
):
    if who == "anonymous":
        user = AnonymousUser()
    else:
        user = await database_sync_to_async(make_user)("nobody", None)

    for where in ("/ws/fleet/", "/ws/mirrors/SHOP/"):
        async with socket(consumers_for(user), where) as visitor:
            assert await refusal(visitor) == CLOSE_FORBIDDEN


@pytest.mark.parametrize(
    "message",
    [
        {"text_data": '{"type": "delete everything"}'},
        {"text_data": "not json"},
        {"text_data": "[]"},
        {"text_data": '"resync"'},
        {"text_data": '{"type": "resync"}' + " " * 300},
        {"bytes_data": b'{"type": "resync"}'},
    ],
    ids=["other type", "not json", "a list", "a string", "oversized", "binary"],
)
@in_an_event_loop
async def test_anything_but_a_resync_request_closes_the_socket_with_4400(
    channel_layer, shop, watcher, message, caplog
):
    async with socket(consumers_for(watcher), "/ws/mirrors/SHOP/") as viewer:
        assert (await viewer.connect(timeout=TIMEOUT_S))[0]
        await receive(viewer)

        await viewer.send_to(**message)
        closed = await viewer.receive_output(timeout=TIMEOUT_S)

    assert closed == {"type": "websocket.close", "code": CLOSE_BAD_MESSAGE}
    assert "refused: bad message" in caplog.text


@in_an_event_loop
async def test_a_resync_request_gets_a_fresh_snapshot(channel_layer, shop, watcher):
    async with socket(consumers_for(watcher), "/ws/mirrors/SHOP/") as viewer:
        assert (await viewer.connect(timeout=TIMEOUT_S))[0]
        before = await receive(viewer)
        await set_status("A", status="In Trouble")

        await viewer.send_json_to({"type": "resync"})
        again = await receive(viewer)

    assert again["type"] == "status"
    assert same_status(again["status"], await as_sent(mirror_status, shop))
    statuses = [{m["name"]: m["status"] for m in s["status"]["members"]} for s in (before, again)]
    assert [status["A"] for status in statuses] == ["Primary", "In Trouble"]


@in_an_event_loop
async def test_a_resync_for_a_mirror_forgotten_meanwhile_closes_with_4404(
    channel_layer, shop, watcher
):
    async with socket(consumers_for(watcher), "/ws/mirrors/SHOP/") as viewer:
        assert (await viewer.connect(timeout=TIMEOUT_S))[0]
        await receive(viewer)
        await Mirror.objects.filter(pk=shop.pk).adelete()

        await viewer.send_json_to({"type": "resync"})
        closed = await viewer.receive_output(timeout=TIMEOUT_S)

    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
