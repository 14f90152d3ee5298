"""Handing the collector's changes to the websockets: one channel-layer group per mirror and one
for the fleet. Messages are JSON text built once (monitor/api/serializers.py) and sent as is to
every viewer (monitor/consumers.py).

The collector runs on threads of its own. Redis' layer takes messages from any event loop, so
the collector keeps one loop for publishing; the in-memory layer (the embedded default) only
wakes consumers on the loop they wait on, the portal server's, which the first consumer to
connect names here (nobody listens before that, so nothing is lost)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder

log = logging.getLogger(__name__)

FLEET_GROUP = "monitor.fleet"
MESSAGE_TYPE = "monitor.message"  # -> MonitorConsumer.monitor_message
ROLES_CHANGED_TYPE = "monitor.roles_changed"  # -> MonitorConsumer.monitor_roles_changed
_server_loop: asyncio.AbstractEventLoop | None = None
_own_loop: asyncio.AbstractEventLoop | None = None
_own_lock = threading.Lock()
SEND_TIMEOUT_S = 5.0


def mirror_group(mirror_id: int) -> str:
    return f"monitor.mirror.{mirror_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user: told when their roles change (monitor/consumers.py)."""
    return f"monitor.user.{user_id}"


def dumps(message: dict) -> str:
    return json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))


def note_server_loop() -> None:
    """Called by a consumer on the server's loop: where in-memory group sends must run."""
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def _loop_for(layer) -> asyncio.AbstractEventLoop | None:
    global _own_loop
    if isinstance(layer, InMemoryChannelLayer):
        loop = _server_loop
        return loop if loop is not None and not loop.is_closed() else None
    with _own_lock:
        if _own_loop is None or _own_loop.is_closed():
            _own_loop = asyncio.new_event_loop()
            threading.Thread(
                target=_own_loop.run_forever, name="monitor-publish", daemon=True
            ).start()
        return _own_loop


def can_deliver() -> bool:
    """False when no websocket can be listening: the in-memory layer before any consumer of
    this process connected (a `runmonitor` without Redis, or a portal nobody watches yet)."""
    layer = get_channel_layer()
    return layer is not None and _loop_for(layer) is not None


def send(groups: list[str], message: dict, *, mirror_id: int | None = None) -> None:
    """Send `message` to every viewer of `groups` (from any thread but an event loop's).
    `mirror_id` names the mirror it is about, so a fleet socket passes it on only to viewers
    who see that mirror."""
    _group_send(groups, {"type": MESSAGE_TYPE, "text": dumps(message), "mirror_id": mirror_id})


def tell_user(sender=None, *, user_id: int, **_) -> None:
    """The user's roles changed: each of their sockets looks again at what it may show
    (MonitorConsumer.monitor_roles_changed). Connected to accounts.signals.roles_changed."""
    _group_send([user_group(user_id)], {"type": ROLES_CHANGED_TYPE})


def _group_send(groups: list[str], envelope: dict) -> None:
    layer = get_channel_layer()
    loop = _loop_for(layer)
    if layer is None or loop is None:
        return

    async def fan_out():
        for group in groups:
            await layer.group_send(group, envelope)

    future = asyncio.run_coroutine_threadsafe(fan_out(), loop)
    try:
        future.result(SEND_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - a layer hiccup must not stop the collector
        with contextlib.suppress(Exception):
            future.cancel()
        log.warning("could not publish to %s: %s", ", ".join(groups), exc)
