"""The live monitor's websockets (docs/monitor.md): a viewer joins the fleet's group or one
mirror's, gets a fresh snapshot, then every change the collector publishes (monitor/publish.py).

Thin: they check who connects, build the snapshot with the REST API's serializers, and pass the
collector's messages on untouched. A browser may only ask for a fresh snapshot ({"type":
"resync"}); anything else, or anything large, closes the socket with the reason logged."""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.roles import VIEWER, has_role
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
        if not await database_sync_to_async(has_role)(user, VIEWER):
            return await self.refuse(CLOSE_FORBIDDEN, "not signed in with a portal role")
        if not await self.find_target():
            return await self.refuse(CLOSE_NOT_FOUND, "no such mirror")
        # join before building the snapshot, so no change falls between the two
        await self.channel_layer.group_add(self.group, self.channel_name)
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
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

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

    async def find_target(self) -> bool:
        raise NotImplementedError

    async def send_snapshot(self) -> None:
        raise NotImplementedError


class FleetConsumer(MonitorConsumer):
    """/ws/fleet/: every mirror's row of the fleet overview."""

    async def find_target(self) -> bool:
        self.group = publish.FLEET_GROUP
        return True

    async def send_snapshot(self) -> None:
        rows = await database_sync_to_async(fleet)()
        await self.send(text_data=publish.dumps({"type": "fleet", "rows": rows}))


class MirrorConsumer(MonitorConsumer):
    """/ws/mirrors/<name>/: the Mirror Monitor of one mirror, and its new events."""

    async def find_target(self) -> bool:
        name = self.scope["url_route"]["kwargs"]["name"].upper()
        self.mirror = await Mirror.objects.filter(name=name).afirst()
        if self.mirror is None:
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
