"""The live monitor's websockets (docs/monitor.md): a viewer joins the fleet's group or one
mirror's, gets a fresh snapshot, then every change the collector publishes (monitor/publish.py).

Thin: they check who connects, build the snapshot with the REST API's serializers, and pass the
collector's messages on untouched. A browser may only ask for a fresh snapshot ({"type":
"resync"}); anything else, or anything large, closes the socket with the reason logged.

Who sees what follows the pages (docs/access.md): a mirror's socket needs a role on that mirror
(4404 otherwise, as if it did not exist); the fleet's passes on only the rows of mirrors the
viewer sees. Each socket also joins its user's group: when the user's roles change, it checks
again (monitor.publish.user_group)."""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from accounts.roles import VIEWER, has_role_anywhere, has_role_on, mirrors_allowed
from members.models import Mirror
from monitor import publish
from monitor.api.serializers import fleet, mirror_status

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE = 256  # bytes: a resync request is about 20
CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_BAD_MESSAGE = 4403, 4404, 4400


class MonitorConsumer(AsyncWebsocketConsumer):
    group: str = ""

    async def connect(self):
        publish.note_server_loop()
        user = self.scope.get("user")
        self.accepted = False
        if not await database_sync_to_async(has_role_anywhere)(user, VIEWER):
            return await self.refuse(CLOSE_FORBIDDEN, "not signed in with a role")
        if not await self.find_target():
            return await self.refuse(CLOSE_NOT_FOUND, "no such mirror")
        # join before building the snapshot, so no change falls between the two
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.own_group = publish.user_group(user.pk)
        await self.channel_layer.group_add(self.own_group, self.channel_name)
        await self.accept()
        self.accepted = True
        await self.send_snapshot()

    async def refuse(self, code: int, reason: str) -> None:
        client = self.scope.get("client") or ("?", 0)
        log.warning("websocket %s from %s refused: %s", self.scope["path"], client[0], reason)
        if not self.accepted:
            # a close before the handshake is an HTTP 403 with no code; the page needs the code
            # to stop retrying and say why (static/js/live.js)
            await self.accept()
        await self.close(code=code)

    async def disconnect(self, code):
        for group in (self.group, getattr(self, "own_group", "")):
            if group:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            if bytes_data is not None or len(text_data.encode()) > MAX_CLIENT_MESSAGE:
                raise ValueError("binary or oversized message")
            asked = json.loads(text_data)
            if not isinstance(asked, dict) or asked.get("type") != "resync":
                raise ValueError("only {'type': 'resync'} is understood")
        except ValueError as exc:  # JSONDecodeError is a ValueError
            await self.refuse(CLOSE_BAD_MESSAGE, f"bad message: {exc}")
            return
        await self.send_snapshot()

    async def monitor_message(self, event):
        await self.send(text_data=event["text"])

    async def monitor_roles_changed(self, event):
        """The user's roles changed: look again at what they may see."""
        if not await self.find_target():
            return await self.refuse(CLOSE_NOT_FOUND, "the viewer's role on the mirror was taken")
        await self.send_snapshot()

    async def find_target(self) -> bool:
        """Whether the user may watch what the socket's URL names; sets `group`."""
        raise NotImplementedError

    async def send_snapshot(self) -> None:
        raise NotImplementedError


class FleetConsumer(MonitorConsumer):
    """/ws/fleet/: every mirror's row of the fleet overview."""

    allowed: frozenset[int] | None = None  # the mirrors the viewer sees; None: every one

    async def find_target(self) -> bool:
        self.group = publish.FLEET_GROUP
        user = await _fresh(self.scope["user"])
        self.allowed = await database_sync_to_async(mirrors_allowed)(user, VIEWER)
        return True

    async def monitor_message(self, event):
        if self.allowed is None or event.get("mirror_id") in self.allowed:
            await self.send(text_data=event["text"])

    async def send_snapshot(self) -> None:
        rows = await database_sync_to_async(fleet)(self.allowed)
        await self.send(text_data=publish.dumps({"type": "fleet", "rows": rows}))


class MirrorConsumer(MonitorConsumer):
    """/ws/mirrors/<name>/: the Mirror Monitor of one mirror, and its new events."""

    async def find_target(self) -> bool:
        name = self.scope["url_route"]["kwargs"]["name"].upper()
        self.mirror = await Mirror.objects.filter(name=name).afirst()
        user = await _fresh(self.scope["user"])
        if self.mirror is None or not await database_sync_to_async(has_role_on)(
            user, self.mirror.pk, VIEWER
        ):
            return False
        self.group = publish.mirror_group(self.mirror.pk)
        return True

    async def send_snapshot(self) -> None:
        status = await database_sync_to_async(_status_of)(self.mirror.pk)
        if status is None:  # forgotten meanwhile
            await self.refuse(CLOSE_NOT_FOUND, "the mirror was forgotten meanwhile")
            return
        await self.send(text_data=publish.dumps({"type": "status", "status": status}))


def _status_of(mirror_id: int) -> dict | None:
    mirror = Mirror.objects.filter(pk=mirror_id).first()
    return mirror_status(mirror) if mirror else None


async def _fresh(user):
    """The user read again, with no roles kept from before (accounts.roles keeps them on the
    user object, which a socket holds for as long as it is open); AnonymousUser once deleted."""
    found = await get_user_model().objects.filter(pk=user.pk).afirst()
    return found if found is not None else AnonymousUser()
