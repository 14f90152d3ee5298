"""One instance watched by the status stream: a kept-open connection asking INFO + STATUS.

Each poll pipelines INFO (role, primary) and STATUS (engine/member/status.py: the guide §5.1.1
strings, latencies, rates, databases) in one round trip on a connection that stays open
between polls, so a poll every 100 ms costs the instance two small requests, not a TCP
handshake.  A poll that fails is classified like the agent's probe (engine/agent/probe.py):
refused = down, no answer within the probe timeout = hung.  A failure on a kept-open
connection is retried once on a fresh one, so an instance that just died reads as down
(refused), not as hung.

An instance whose superserver speaks TLS is reached as engine/agent/ops.py reaches it: with
the context its data directory names (engine/wire/tls.py superserver_client_context), made
again when the instance publishes another (after set_tls, or a restart).

`certificate` is the expiry of the instance's certificate: the file named in the agent
configuration, else the one the instance was given through the agent (its node.json).

The record is flat, so a change is a patch of top-level keys (see agent_stream.py).  When
the instance is not up, every status key is None except `type` (the last type it reported)
and `status`: "Down" when down, "Error" when hung (guide §5.1.1.1: the status could not be
fetched).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from engine import rules
from engine.agent.certificates import certificate_summary, node_certificate
from engine.agent.config import InstanceEntry
from engine.agent.probe import find_pid
from engine.member.node import NODE_FILE
from engine.wire.admin_token import read_token
from engine.wire.protocol import FrameDecoder, FrameError, MsgType, encode_frame, unpack
from engine.wire.tls import TLSError, superserver_client_context

MAX_STATUS_FRAME = 4 << 20
# keys of the instance's STATUS answer carried in the record (the rest stays out)
STATUS_KEYS = (
    "member",
    "type",
    "status",
    "journal_transfer",
    "dejournaling",
    "journal_transfer_latency_s",
    "dejournal_latency_s",
    "incoming_journal_rate",
    "incoming_journal_figures",
    "journal_end",
    "databases",
    "missing_mirrored_databases",
    "primary",
    "codec",
    "members",
    # membership configured through the agent (engine/member/mirror_file.py): why a member waits
    # for an operator, the primary's pending new members, DN updates awaiting authorization
    "waiting_reason",
    "pending_members",
    "dn_updates",
    "mirror_version",
    # a reporting async in several mirrors: status "M/N" (connected of all) and each
    # mirror's own status under its name (engine/member/instance.py)
    "mirrors",
    "failover_mode",
    "arbiter_connection",
    # who the member knows as primary at which term, and "no failover" (docs/takeover.md)
    "term",
    "no_failover",
    "hooks",
    "took_over_from",  # a primary by takeover: whom it replaced (the monitor's takeover alert)
)


AUTH_REQ_ID = 0x7FFFFFFE  # outside the ids of the INFO / STATUS exchanges


class InstanceWatch:
    def __init__(self, entry: InstanceEntry, timeout: float):
        self.entry = entry
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.decoder = FrameDecoder(MAX_STATUS_FRAME)
        self.req_id = 0
        self.last_type: str | None = None
        self.last_state: str | None = None
        self.pid: int | None = None
        self.pid_stale = True
        self.cert_checked = 0.0
        self.cert: dict | None = None
        self.node_stamp: int | None = None

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 0.5)

    async def _connect(self) -> None:
        host, port = self.entry.superserver.host, self.entry.superserver.port
        try:
            ssl = superserver_client_context(self.entry.data_dir)
        except TLSError as exc:  # read as a bad answer: the instance is not reachable as it is
            raise ValueError(f"its superserver's TLS: {exc}") from None
        self.reader, self.writer = await asyncio.open_connection(host, port, ssl=ssl)
        self.decoder = FrameDecoder(MAX_STATUS_FRAME)
        self.pid_stale = True  # maybe a restarted instance
        token = read_token(self.entry.data_dir)
        if token is not None:
            # authenticated with the admin token, so an instance that requires authentication
            # does not close this kept-open connection (engine/member/app_auth.py)
            self.writer.write(encode_frame(MsgType.ADMIN, AUTH_REQ_ID, ["auth", None, token]))
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("the instance closed the connection")
                if any(getattr(f, "req_id", None) == AUTH_REQ_ID for f in self.decoder.feed(data)):
                    break  # a refused token: STATUS says what the instance allows

    async def _exchange(self) -> tuple[dict, dict]:
        """INFO and STATUS, pipelined; raises OSError/ValueError/FrameError on a bad answer.
        A STATUS the instance refuses comes back as {"error": <its error>}."""
        base = self.req_id
        self.req_id = (self.req_id + 2) % 0x7FFFFFF0
        self.writer.write(
            encode_frame(MsgType.INFO, base + 1, []) + encode_frame(MsgType.STATUS, base + 2, [])
        )
        replies: dict[int, dict] = {}
        while len(replies) < 2:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionResetError("the instance closed the connection")
            for frame in self.decoder.feed(data):
                if not hasattr(frame, "body") or frame.req_id not in (base + 1, base + 2):
                    raise ValueError(f"unexpected reply: {frame!r}")
                body = unpack(frame.body)
                if frame.req_id == base + 2 and frame.type == MsgType.ERROR:
                    body = {"error": body.get("message") if isinstance(body, dict) else body}
                elif frame.type != MsgType.OK or not isinstance(body, dict):
                    raise ValueError(f"request refused: {body!r}")
                replies[frame.req_id] = body
        return replies[base + 1], replies[base + 2]

    async def _ask(self) -> tuple[dict, dict]:
        reused = self.writer is not None
        if not reused:
            await self._connect()
        try:
            return await self._exchange()
        except (OSError, ValueError, FrameError):
            await self.close()
            if not reused:
                raise
        await self._connect()  # the kept-open connection broke: once more, fresh
        return await self._exchange()

    async def poll(self) -> dict:
        """The instance's record now (never raises for an unreachable instance)."""
        entry = self.entry
        rec = {
            "name": entry.name,
            "superserver": str(entry.superserver),
            "mirror": entry.mirror,
            "state": "down",
            "detail": "",
            "pid": None,
            "role": None,
            "certificate": self._certificate(),
        }
        info = status = None
        try:
            info, status = await asyncio.wait_for(self._ask(), self.timeout)
        except ConnectionRefusedError:
            rec["detail"] = f"connection to {entry.superserver} refused"
        except TimeoutError:
            rec["state"] = "hung"
            rec["detail"] = f"no answer from {entry.superserver} within {self.timeout:g} s"
        except (OSError, ValueError, FrameError) as exc:
            rec["state"] = "hung"
            rec["detail"] = f"bad answer from {entry.superserver}: {exc}"
        if info is None:
            await self.close()
        else:
            rec.update(state="up", detail="answering", role=info.get("role"))
            rec["mirror"] = info.get("mirror") or entry.mirror
            if "error" in status:
                rec["detail"] = f"answering, but its status failed: {status['error']}"
                status = None
            else:
                self.last_type = status.get("type")
        if rec["state"] != self.last_state or self.pid_stale:
            # the pid changes only with the state or the connection; finding it may scan /proc
            self.pid = await asyncio.to_thread(find_pid, entry)
            self.last_state = rec["state"]
            self.pid_stale = False
        rec["pid"] = self.pid
        for key in STATUS_KEYS:
            rec[key] = None if status is None else status.get(key)
        if status is None:
            # guide §5.1.1.1: Error = the member's status could not be fetched
            rec["type"] = self.last_type
            rec["status"] = rules.DOWN if rec["state"] == "down" else rules.ERROR
        elif isinstance(rec["incoming_journal_figures"], dict):
            # the sampling interval is the poll interval: it jitters and is not a change
            figures = dict(rec["incoming_journal_figures"])
            figures.pop("interval_s", None)
            rec["incoming_journal_figures"] = figures
        return rec

    def _certificate(self) -> dict | None:
        """The certificate named in the agent's configuration, else the one the instance
        was given through the agent (node.json).  Files may be replaced (renewal), so look
        again now and then, and at once when node.json changes (set_tls), not on every
        poll."""
        now = time.monotonic()
        stamp = None if self.entry.cert is not None else self._node_stamp()
        if now - self.cert_checked > CERT_RECHECK_S or stamp != self.node_stamp:
            self.cert_checked, self.node_stamp = now, stamp
            path = self.entry.cert
            if path is None and stamp is not None:
                path = node_certificate(self.entry.data_dir)
            self.cert = certificate_summary(path)
        return self.cert

    def _node_stamp(self) -> int | None:
        try:
            return os.stat(Path(self.entry.data_dir) / NODE_FILE).st_mtime_ns
        except OSError:
            return None


CERT_RECHECK_S = 10.0
