"""Following an agent's status stream from a client (GET /v1/status/stream): the snapshot,
then each change applied in order, sequence numbers checked, reconnecting and resyncing on a
lost connection, a goodbye or a gap.  Made by AgentClient.status_stream()."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from typing import Protocol

from engine.client.errors import AgentConnectionError


class StreamOpener(Protocol):
    """What a stream needs of its client (engine/client/agent.py's AgentClient)."""

    def open_stream(self, path: str, read_timeout: float = 30.0) -> http.client.HTTPResponse: ...


class StreamGap(Exception):
    """An event's sequence number or stream id is not the one that had to come next."""


# what ends one connection of a stream (and makes the follower resync)
_LOST = (AgentConnectionError, StreamGap, OSError, ValueError, http.client.HTTPException)


class StatusStream:
    """Follows an agent's status stream (GET /v1/status/stream, server-sent events).

        stream = agent_client.status_stream()
        for event in stream.events():       # blocking; reconnects by itself
            stream.instances["A"]["status"]  # the current state, kept up to date

    It applies every event to `instances` / `agent`, checks that each event's seq is the
    previous one + 1 on the same stream id (a gap raises StreamGap inside and is treated
    like a lost connection), and on any lost connection, goodbye or gap reconnects and
    starts again from the new snapshot (`resyncs` counts those).  Refusals (401/403/404)
    are raised, not retried.  `drop()` (from any thread) cuts the current connection.
    A stream silent for read_timeout (no event, no keep-alive) counts as lost too.
    """

    def __init__(
        self,
        client: StreamOpener,
        *,
        retry_s: float = 0.2,
        reconnect: bool = True,
        read_timeout: float = 30.0,
    ):
        self.client = client
        self.retry_s = retry_s
        self.read_timeout = read_timeout
        self.reconnect = reconnect
        self.instances: dict[str, dict] = {}
        self.agent: dict = {}
        self.stream: str | None = None
        self.seq = 0
        self.resyncs = 0
        self.last_goodbye: dict | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._closed = False
        self._wake = threading.Event()

    def events(self):
        """Every event as a dict (each (re)connection starts with a snapshot)."""
        while not self._closed:
            with contextlib.suppress(*_LOST):
                yield from self._follow()
            self._close_response()
            if self._closed or not self.reconnect:
                return
            self.resyncs += 1
            self._wake.wait(self.retry_s)

    def _follow(self):
        self._resp = self.client.open_stream("/v1/status/stream", self.read_timeout)
        data: list[str] = []
        while True:
            line = self._resp.readline()
            if not line:
                raise ConnectionResetError("the agent closed the status stream")
            line = line.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue  # keep-alive comment
            if line:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":  # the event name is repeated in the JSON as "type"
                    data.append(value)
                continue
            if not data:
                continue
            event = json.loads("\n".join(data))
            data = []
            self._apply(event)
            yield event
            if event["type"] == "goodbye":
                return

    def _apply(self, event: dict) -> None:
        if event["type"] == "snapshot":
            if event["seq"] != 1 or event["stream"] == self.stream:
                raise StreamGap(f"snapshot {event['stream']}/{event['seq']} is not a fresh stream")
            self.stream, self.seq = event["stream"], 1
            self.instances = event["instances"]
            self.agent = event["agent"]
            return
        if event["type"] == "goodbye" and event["stream"] == self.stream:
            # an overflow goodbye follows dropped events: no gap check, the stream ends
            self.last_goodbye = event
            return
        if event["stream"] != self.stream or event["seq"] != self.seq + 1:
            raise StreamGap(
                f"expected {self.stream}/{self.seq + 1}, got {event['stream']}/{event['seq']}"
            )
        self.seq = event["seq"]
        if event["type"] == "instance":
            self.instances.setdefault(event["name"], {}).update(event["changed"])
        elif event["type"] == "agent":
            self.agent.update(event["changed"])

    def drop(self) -> None:
        """Cut the current connection (the follower reconnects and resyncs)."""
        resp = self._resp
        sock = getattr(getattr(resp, "fp", None), "raw", None)
        sock = getattr(sock, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.drop()

    def _close_response(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            with contextlib.suppress(OSError, ValueError):
                resp.close()
