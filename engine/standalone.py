"""An instance that belongs to no mirror yet (SPEC §2.1: type Not Member, Not Initialized).

It answers PING, INFO, STATUS and three admin actions on its superserver port:

    set_tls {cert, key, ca}        record its TLS files ("Set up SSL/TLS", §6.10 step a)
    mirror_create {mirror, private, member?, settings?}   §6.2: becomes the primary
    mirror_join {mirror, address, type, member?, private?, superserver?}   §6.3, §6.4

Creating or joining writes <data_dir>/mirror.json and restarts the process (same pid, so the
agent still finds it) as that member.  A joining member asks the member at `address` for the
mirror's configuration first, so the limits of SPEC §1.4 and the TLS requirement are checked
before anything is written; the primary checks them again when the member connects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from engine import membership as ms
from engine import tls
from engine.client import AsyncClient, EngineError
from engine.config import MemberConfig, MirrorConfig
from engine.databases import Refused
from engine.instance_membership import apply_tls_paths
from engine.node import Node
from engine.protocol import DEFAULT_MAX_FRAME, ErrorCode, MsgType
from engine.session import Connection, RequestError

log = logging.getLogger("engine.standalone")
JOIN_TIMEOUT_S = 5.0


class Standalone:
    def __init__(self, node: Node, max_frame: int = DEFAULT_MAX_FRAME):
        self.node = node
        self.max_frame = max_frame
        self.sessions: set[Connection] = set()
        self.server = None
        self.stop_requested = asyncio.Event()
        self.restart = False

    async def start(self) -> None:
        addr = self.node.superserver
        self.server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self, "superserver", self.max_frame),
            addr.host,
            addr.port,
            reuse_address=True,
        )
        log.info("instance %s is not a mirror member; superserver %s", self.node.name, addr)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.sessions):
            conn.close()

    def request_restart(self) -> None:
        self.restart = True
        # answer the request first, then stop
        asyncio.get_running_loop().call_later(0.05, self.stop_requested.set)

    # -- the Connection interface ---------------------------------------------------
    def accept_data_channel(self, conn: Connection, frame) -> None:
        conn.reject_stream(f"instance {self.node.name} is not a mirror member", frame.req_id)

    def handle(self, conn: Connection, mtype: int, args: list):
        if mtype == MsgType.PING:
            return "pong"
        if mtype == MsgType.INFO:
            return {"instance": self.node.name, "member": None, "mirror": None, "role": None}
        if mtype == MsgType.STATUS:
            return self.status()
        if mtype == MsgType.ADMIN and args:
            return self.admin(args[0], args[1] if len(args) > 1 else None)
        raise RequestError(
            ErrorCode.UNAVAILABLE, f"instance {self.node.name} is not a mirror member"
        )

    def status(self) -> dict:
        return {
            "member": self.node.name,
            "mirror": None,
            "type": "Not Member",
            "status": "Not Initialized",
            "journal_transfer": "N/A",
            "dejournaling": "N/A",
            "databases": [],
            "tls": self._tls_info(),
        }

    def _tls_info(self) -> dict | None:
        if not self.node.has_tls:
            return None
        try:
            return tls.check_certificate(self.node.tls_cert, self.node.tls_ca)
        except tls.TLSError as exc:
            return {"error": str(exc)}

    def admin(self, action, arg):
        if action == "set_tls":
            info = apply_tls_paths(self.node, "set_tls", arg if isinstance(arg, dict) else {})
            return {"member": self.node.name, "dn": info["subject_dn"]}
        if action == "mirror_create":
            return self.create(arg)
        if action == "mirror_join":
            return asyncio.get_running_loop().create_task(self.join(arg))
        raise Refused(
            str(action),
            None,
            f"instance {self.node.name} is not a mirror member (create or join a mirror first)",
        )

    # -- create and join --------------------------------------------------------------
    def _own_dn(self, op: str) -> str:
        if not self.node.has_tls:
            raise Refused(op, None, "the mirror requires TLS: set up TLS on this instance first")
        try:
            info = tls.check_certificate(self.node.tls_cert, self.node.tls_ca)
        except tls.TLSError as exc:
            raise Refused(op, None, str(exc)) from None
        return tls.normalize_dn(info["subject_dn"])

    def create(self, arg) -> dict:
        op = "mirror_create"
        if not isinstance(arg, dict):
            raise Refused(op, None, "expected {mirror, private, member?, settings?}")
        name = ms.check_mirror_name(op, arg.get("mirror"))
        member = ms.check_member_name(op, arg.get("member") or self.node.name, "failover")
        private = ms.check_address(op, arg.get("private"), "private")
        settings = ms.check_settings(op, arg.get("settings") or {})
        if private == self.node.superserver:
            raise Refused(op, None, "the mirror private address must differ from the superserver")
        cfg = MirrorConfig(name=name, members=[], databases=[], dynamic=True, version=1)
        for key, value in settings.items():
            setattr(cfg, key, value)
        dn = self._own_dn(op) if cfg.tls else None
        m = MemberConfig(member, "failover", self.node.superserver, private, self.node.data_dir, [])
        m.dn = dn
        cfg.members.append(m)
        ms.save_local(cfg, member, self.node.data_dir)
        log.warning("mirror %s created; restarting as its primary %s", name, member)
        self.request_restart()
        return {"mirror": name, "member": member, "role": "primary", "dn": dn}

    async def join(self, arg) -> dict:
        op = "mirror_join"
        if not isinstance(arg, dict):
            raise Refused(op, None, "expected {mirror, address, type, member?, private?}")
        name = ms.check_mirror_name(op, arg.get("mirror"))
        mtype = ms.check_type(op, arg.get("type"))
        member = ms.check_member_name(op, arg.get("member") or self.node.name, mtype)
        address = str(ms.check_address(op, arg.get("address"), "address"))
        superserver = self.node.superserver
        if arg.get("superserver"):
            superserver = ms.check_address(op, arg["superserver"], "superserver")
        private = ms.check_address(op, arg["private"], "private") if arg.get("private") else None
        if mtype == "failover" and private is None:
            raise Refused(op, None, "a failover member needs a mirror private address")
        info = await self._mirror_info(op, address)
        if info.get("name") != name:
            raise Refused(op, None, f"the member at {address} is in mirror {info.get('name')}")
        cfg = ms.from_wire(info, self.node, member)
        ms.check_join(cfg, member, mtype, [a for a in (superserver, private) if a is not None])
        dn = self._own_dn(op) if cfg.tls else None
        join_id = uuid.uuid4().hex
        m = MemberConfig(member, mtype, superserver, private, self.node.data_dir, [])
        m.dn, m.authorized, m.join_id = dn, not cfg.tls, join_id
        cfg.members.append(m)
        ms.save_local(cfg, member, self.node.data_dir)
        log.warning("joining mirror %s as %s (%s); restarting as that member", name, member, mtype)
        self.request_restart()
        return {
            "mirror": name,
            "member": member,
            "type": mtype,
            "dn": dn,
            "pending": cfg.tls,
            "primary": info.get("primary"),
        }

    async def _mirror_info(self, op: str, address: str) -> dict:
        client = AsyncClient([address], follow_primary=False, timeout=JOIN_TIMEOUT_S, retries=0)
        try:
            await client.connect()
            info = await client.admin("mirror_info")
        except (EngineError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise Refused(op, None, f"cannot read the mirror from {address}: {reason}") from None
        finally:
            await client.close()
        if not isinstance(info, dict) or not info.get("dynamic"):
            raise Refused(op, None, f"the member at {address} is not configured through agents")
        return info
