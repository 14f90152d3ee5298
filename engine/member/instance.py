"""Instance: one engine process configured through its host's agent (engine/member/node.py).

It owns the superserver listener and holds the instance's mirror memberships: none (type
Not Member, status Not Initialized), one, or — for a reporting async — up to ten, each a
Membership with its own journal and databases (engine/member/membership.py, created or
joined by engine/member/join.py).  Requests go to the
membership they concern: database requests to the one holding the database, admin actions
to the one named by `mirror` in their argument (or holding the database named), STATUS with
a mirror name to that one.  With several memberships and nothing to choose by, STATUS sums
them up (status "M/N": connected of all) and other requests are refused with the choice.

Creating, joining or leaving a mirror writes or removes a membership's mirror.json and then
restarts the process (same pid, so the agent still finds it) so that it starts as what it
is now; so does a new superserver port (engine/member/port.py).  Removing the mirror
configuration concerns every membership and the instance's TLS files, so it belongs to the
instance (engine/member/remove.py); a membership whose Join-Mirror flag it cleared is kept
but not run (`dormant`) until the second call removes it.

The superserver speaks TLS when the instance's SuperserverTLS says so (engine/member/node.py:
`auto` as soon as it has TLS files or a mirror that requires TLS), from the first byte, with
its own certificate; by default a client must present one from the same CA.  A refused
handshake is logged through the listener's rate-limited log (SuperserverRefusals).  Each listen
publishes how to reach it (engine/wire/tls.py, superserver_tls.json) for the tools of the host.
New TLS files (set_tls, reload_tls, remove_mirror_config) are taken at once: renewed files for
the next handshakes; TLS turned on or off, or another CA, by listening again — the connections
of the old listener are closed once the request that changed it has its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import sys
import time
import uuid

from engine import rules
from engine.member import join
from engine.member import mirror_file as ms
from engine.member.admin_auth import check_admin, ensure_token, split_admin_args
from engine.member.config import TYPE_LABELS, ConfigError, MirrorConfig
from engine.member.files import PID_FILE
from engine.member.membership import Membership
from engine.member.membership_ops import apply_tls_paths, set_tls
from engine.member.node import Node, SuperserverRefusals, SuperserverTLS, describe_superserver_tls
from engine.member.port import set_superserver_port
from engine.member.remove import dormant_reason, remove_mirror_config
from engine.member.requests import asking
from engine.member.session import Connection
from engine.storage.databases import Refused
from engine.wire import tls
from engine.wire.limits import ConnectionLimits, LimitSettings
from engine.wire.protocol import DEFAULT_MAX_FRAME, ErrorCode, MsgType, RequestError, unpack

log = logging.getLogger("engine.member.instance")
DATA_REQUESTS = frozenset({MsgType.GET, MsgType.SET, MsgType.KILL, MsgType.ORDER, MsgType.QUERY})
HOST_ACTIONS = frozenset(
    {
        "set_tls",
        "reload_tls",
        "mirror_create",
        "mirror_join",
        "set_superserver_port",  # engine/member/port.py
        "remove_mirror_config",  # engine/member/remove.py
    }
)


class Instance:
    def __init__(
        self,
        node: Node,
        memberships: list[tuple[MirrorConfig, str]],
        max_frame: int = DEFAULT_MAX_FRAME,
        limits: LimitSettings | None = None,
        config_error: str | None = None,
    ):
        self.node = node
        self.memberships = memberships
        self.max_frame = max_frame
        self.boot_id = uuid.uuid4().hex
        self.members: dict[str, Membership] = {}  # mirror name -> its member here
        # memberships whose Join-Mirror flag is cleared: kept, not run (engine/member/remove.py)
        self.dormant: dict[str, tuple[MirrorConfig, str]] = {}
        self.sessions: set[Connection] = set()
        self.server = None
        # the superserver's connection limits (engine/wire/limits.py, docs/hardening.md)
        self.superserver_limits = superserver_limits(limits)
        self.superserver_ssl = None  # the listener's SSL context when it speaks TLS
        self.superserver_files: tuple | None = None  # and the files it was made from
        self.stop_requested = asyncio.Event()
        self.restart = False
        # its mirror configuration could not be read: type Indeterminate until it is fixed or
        # set aside (remove_mirror_config), never overwritten by a create or join
        self.config_error = config_error

    async def start(self) -> None:
        self.node.data_dir.mkdir(parents=True, exist_ok=True)
        (self.node.data_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        self.admin_token = ensure_token(self.node.data_dir)
        for cfg, member in self.memberships:
            if not ms.joins_at_start(cfg):
                log.warning("%s; not running as member %s", dormant_reason(cfg), member)
                self.dormant[cfg.name] = (cfg, member)
                continue
            membership = Membership(
                cfg, member, node=self.node, instance=self, max_frame=self.max_frame
            )
            await membership.start()
            self.members[cfg.name] = membership
        addr = self.node.superserver
        await self._listen_superserver()
        for membership in self.members.values():
            membership.check_addresses()  # now that the superserver answers
        if not self.members:
            log.info("instance %s is not a mirror member; superserver %s", self.node.name, addr)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.sessions):
            conn.close()
        self.superserver_limits.close()
        for membership in self.members.values():
            await membership.stop()
        with contextlib.suppress(OSError):
            (self.node.data_dir / PID_FILE).unlink()

    def close_clients(self) -> None:
        """Take no more client requests (a primary handing over, engine/member/takeover.py);
        data channels that came in on the superserver port stay."""
        if self.server is not None:
            self.server.close()
        for conn in [c for c in self.sessions if c.data_link is None]:
            conn.close()

    def request_restart(self) -> None:
        self.restart = True
        # answer the request first, then stop
        asyncio.get_running_loop().call_later(0.05, self.stop_requested.set)

    # -- the superserver listener ------------------------------------------------------
    def _superserver_context(self):
        """(SSL context, files) the superserver should listen with now; ConfigError when TLS
        is wanted and cannot be had."""
        settings = SuperserverTLS.of(self.node)
        return settings.context(self, SuperserverRefusals(self.superserver_limits))

    async def _listen_superserver(self, made=None) -> None:
        limits = self.superserver_limits
        settings = SuperserverTLS.of(self.node)
        ctx, files = made or self._superserver_context()
        self.superserver_ssl, self.superserver_files = ctx, files
        extra = {}
        if ctx is not None:
            # a handshake is not yet a connection of the limits: bound it by the same wait
            extra = {"ssl": ctx, "ssl_handshake_timeout": limits.settings.handshake_timeout_s}
        # said before listening: a tool that reads it finds this listener, not the last one
        tls.publish_superserver_tls(self.node.data_dir, files, settings.client_cert)
        addr = self.node.superserver
        self.server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self, "superserver", self.max_frame, limits),
            addr.host,
            addr.port,
            reuse_address=True,
            **extra,
        )
        log.info("%s", describe_superserver_tls(settings, files))

    def _tls_files_changed(self, action: str, result):
        """TLS files set, re-read or forgotten: renewed files serve the next handshakes; TLS
        turned on or off, or another CA, needs a new listener, up before the answer goes (the
        caller's next connection reads the published state)."""
        if self.restart or self.server is None:
            return result  # the next start listens as it should
        settings = SuperserverTLS.of(self.node)
        files = settings.files(self) if settings.wanted(self) else None
        ctx, old = self.superserver_ssl, self.superserver_files
        if ctx is not None and files is not None and files[2] == old[2]:
            try:
                ctx.load_cert_chain(str(files[0]), str(files[1]))
            except (OSError, ssl.SSLError) as exc:  # checked before, so changed meanwhile
                log.error("superserver keeps its certificate %s: %s", old[0], exc)
                return result
            self.superserver_files = files
            if files != old:
                tls.publish_superserver_tls(self.node.data_dir, files, settings.client_cert)
            return result
        if files is None and ctx is None:
            return result
        try:  # before the listener goes: one that cannot be made leaves the old one serving
            made = self._superserver_context()
        except ConfigError as exc:
            log.error("the superserver listens as before: %s", exc)
            raise Refused(action, None, f"{exc}; restarting as it is would fail") from None
        return asyncio.get_running_loop().create_task(self._relisten_superserver(result, made))

    async def _relisten_superserver(self, result, made):
        old_sessions = [c for c in self.sessions if c.listener == "superserver"]
        self.server.close()
        await asyncio.sleep(0.05)  # let the listening socket go before binding again
        await self._listen_superserver(made)
        # spoken in the old way: closed once this answer is on its way
        asyncio.get_running_loop().call_later(0.2, lambda: [c.close() for c in old_sessions])
        return result

    # -- the Connection interface ---------------------------------------------------
    def accept_data_channel(self, conn: Connection, frame) -> None:
        try:
            hello = unpack(frame.body)
        except ValueError:
            hello = None
        mirror = hello.get("mirror") if isinstance(hello, dict) else None
        membership = self.members.get(mirror) if isinstance(mirror, str) else None
        if membership is None:
            conn.reject_stream(
                f"instance {self.node.name} is not a member of mirror {mirror!r}", frame.req_id
            )
            return
        membership.accept_data_channel(conn, frame)

    def handle(self, conn: Connection, mtype: int, args: list):
        if mtype == MsgType.PING:
            return "pong"
        if mtype == MsgType.INFO:
            return self.info()
        if mtype == MsgType.STATUS:
            return self.status(args[0] if args else None)
        if mtype == MsgType.ADMIN:
            action, arg, token = split_admin_args(args)
            check_admin(self.admin_token, action, token)
            with asking(conn):  # export_snapshot checks who asks
                return self.admin(action, arg)
        return self._for_request(conn, mtype, args).handle(conn, mtype, args)

    # -- choosing the membership ----------------------------------------------------
    def _only(self) -> Membership | None:
        if not self.members:
            raise RequestError(
                ErrorCode.UNAVAILABLE, f"instance {self.node.name} is not a mirror member"
            )
        return next(iter(self.members.values())) if len(self.members) == 1 else None

    def _holding(self, db) -> Membership | None:
        if not isinstance(db, str):
            return None
        for membership in self.members.values():
            if membership.catalog.get(db) is not None or db.upper() in membership.stores:
                return membership
        return None

    def _for_request(self, conn: Connection, mtype: int, args: list) -> Membership:
        only = self._only()
        if only is not None:
            return only
        if mtype in DATA_REQUESTS:
            db = args[0] if args else None
            membership = self._holding(db)
            if membership is None:
                raise RequestError(
                    ErrorCode.NO_DATABASE,
                    f"no mirror of instance {self.node.name} holds database {db!r}",
                )
            return membership
        if mtype == MsgType.TCOMMIT and conn.txn:
            owners = {self._holding(op[1]) for op in conn.txn}
            if len(owners) > 1:
                conn.txn = None
                raise RequestError(
                    ErrorCode.TRANSACTION, "a transaction cannot span databases of two mirrors"
                )
            return owners.pop() or next(iter(self.members.values()))
        # TSTART checks that some database takes local writes; TROLLBACK needs no mirror
        writable = [i for i in self.members.values() if i.member.type == "rw_reporting"]
        return (writable or list(self.members.values()))[0]

    def _for_admin(self, action: str, arg) -> tuple[Membership, object]:
        if isinstance(arg, dict) and "mirror" in arg:
            arg = dict(arg)
            mirror = str(arg.pop("mirror")).upper()
            membership = self.members.get(mirror)
            if membership is None:
                raise Refused(action, None, f"this instance is not a member of mirror {mirror}")
            return membership, arg
        only = self._only()
        if only is not None:
            return only, arg
        db = arg
        if isinstance(arg, dict):
            names = arg.get("names")
            db = arg.get("name") or (names[0] if isinstance(names, list) and names else None)
        membership = self._holding(db.split(",")[0] if isinstance(db, str) else db)
        if membership is None:
            raise Refused(
                action,
                None,
                f"instance {self.node.name} belongs to mirrors {', '.join(self.members)}: "
                "say which with 'mirror'",
            )
        return membership, arg

    # -- requests -------------------------------------------------------------------
    def info(self) -> dict:
        if len(self.members) == 1:
            return next(iter(self.members.values())).info()
        out = {"instance": self.node.name, "boot_id": self.boot_id, "role": None}
        out.update(member=None, mirror=None, mirrors=sorted(self.members))
        out["tls"] = any(membership.cfg.tls for membership in self.members.values())
        return out

    def status(self, mirror=None) -> dict:
        if isinstance(mirror, str):
            # a mirror this instance is not (yet) a member of: not another mirror's status
            found = self.members.get(mirror.upper())
            return found.status() if found else self._not_member(mirror.upper())
        if not self.members:
            return self._not_member(None)
        if len(self.members) == 1:
            return next(iter(self.members.values())).status()
        per_mirror = {name: membership.status() for name, membership in self.members.items()}
        connected = sum(1 for s in per_mirror.values() if s["status"] == rules.CONNECTED)
        first = next(iter(self.members.values()))
        return {
            "member": first.member.name,
            "mirror": None,
            "type": TYPE_LABELS[first.member.type],
            "status": f"{connected}/{len(per_mirror)}",
            "mirrors": per_mirror,
            "tls": self._tls_info(),
        }

    def _not_member(self, mirror: str | None) -> dict:
        out = {
            "member": self.node.name,
            "mirror": mirror,
            "type": rules.INDETERMINATE if self.config_error else rules.NOT_MEMBER,
            "status": rules.NOT_INITIALIZED,
            "journal_transfer": "N/A",
            "dejournaling": "N/A",
            "databases": [],
            "tls": self._tls_info(),
        }
        for cfg, _ in self.dormant.values():
            out["waiting_reason"] = dormant_reason(cfg)
        if self.config_error:
            out["waiting_reason"] = (
                f"{self.config_error}: fix the file and restart, or set it aside with "
                "remove_mirror_config"
            )
        return out

    def _tls_info(self) -> dict | None:
        if self.members:  # the same node, cached (status is polled often)
            return next(iter(self.members.values())).tls_info()
        if not self.node.has_tls:
            return None
        try:
            return tls.check_certificate(self.node.tls_cert, self.node.tls_ca)
        except tls.TLSError as exc:
            return {"error": str(exc)}

    def admin(self, action, arg):
        current = [(membership.cfg, membership.member.name) for membership in self.members.values()]
        if action == "set_superserver_port":
            return set_superserver_port(self, arg)
        if action == "remove_mirror_config" and self.config_error:
            return self._set_aside_unreadable()
        if action == "remove_mirror_config":
            return self._tls_files_changed(action, remove_mirror_config(self, arg))
        if self.config_error and action in ("mirror_create", "mirror_join", "mirror_info"):
            raise Refused(str(action), None, self.config_error)
        if self.dormant and action in ("mirror_create", "mirror_join", "mirror_info"):
            cfg = next(iter(self.dormant.values()))[0]
            raise Refused(str(action), None, dormant_reason(cfg))
        if action in ("set_tls", "reload_tls") and self.members:
            results = [set_tls(membership, arg) for membership in self.members.values()]
            return self._tls_files_changed(action, results[0])
        if action == "set_tls":
            info = apply_tls_paths(self.node, "set_tls", arg if isinstance(arg, dict) else {})
            answer = {"member": self.node.name, "dn": info["subject_dn"]}
            return self._tls_files_changed(action, answer)
        if action == "mirror_create":
            result = join.create(self.node, arg, current)
            self.request_restart()
            return result
        if action == "mirror_join":
            return asyncio.get_running_loop().create_task(self._join(arg, current))
        if not self.members:
            raise Refused(
                str(action),
                None,
                f"instance {self.node.name} is not a mirror member (create or join a mirror first)",
            )
        membership, arg = self._for_admin(str(action), arg)
        return membership.admin(action, arg)

    def _set_aside_unreadable(self) -> dict:
        """The unreadable mirror.json is renamed, not deleted (nothing is lost), and the
        instance restarts as a non-member."""
        path = self.node.data_dir / ms.MIRROR_FILE
        aside = path.with_name(f"{ms.MIRROR_FILE}.unreadable-{int(time.time())}")
        if path.exists():
            path.rename(aside)
        log.warning("unreadable mirror configuration set aside as %s", aside.name)
        self.request_restart()
        return {"set_aside": aside.name, "restarting": True}

    async def _join(self, arg, current) -> dict:
        result = await join.join(self.node, arg, current)
        self.request_restart()
        return result


def superserver_limits(settings: LimitSettings | None) -> ConnectionLimits:
    """The superserver's limits, fitted to the descriptors this process may open."""
    limits = ConnectionLimits(settings, "superserver", logging.getLogger("engine.member.session"))
    limits.fit_descriptors()
    log.info("%s", limits.describe())
    return limits


async def run_instance(
    cfg: MirrorConfig | None,
    member: str | None,
    node: Node | None = None,
    limits: LimitSettings | None = None,
    superserver_tls: SuperserverTLS | None = None,
):
    """Run one member from a mirror file, or an instance configured through its agent (`node`),
    until SIGTERM/SIGINT; True when it stopped to run again (it created, joined or left a
    mirror).  `limits`: the superserver's (engine/wire/limits.py; defaults without);
    `superserver_tls`: its TLS with a mirror file (a node has its own in node.json)."""
    # Threads (journal fsync, dejournal workers) hand results back to the event loop; with
    # the default 5 ms GIL switch interval that hand-off alone can cost milliseconds.
    sys.setswitchinterval(0.0002)
    if node is not None:
        try:
            memberships, error = ms.load_all(node), None
        except ConfigError as exc:  # a process keeps serving: it says what is wrong
            log.error("%s: running as type Indeterminate until it is fixed", exc)
            memberships, error = [], str(exc)
        membership = Instance(node, memberships, limits=limits, config_error=error)
        label, address = node.name, node.superserver
    else:
        membership = Membership(cfg, member, node=node)
        # its superserver's connections find their limits here (engine/member/session.py)
        membership.superserver_limits = superserver_limits(limits)
        membership.superserver_tls = superserver_tls or SuperserverTLS()
        label, address = membership.member.name, membership.member.superserver
    await membership.start()
    # Long-lived objects from start-up need no more cyclic-GC passes; fewer passes, fewer
    # pauses in the middle of a commit.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, membership.stop_requested.set)
    print(f"member {label} ready: superserver {address}", flush=True)
    await membership.stop_requested.wait()
    log.info("member %s stopping", label)
    await membership.stop()
    membership.superserver_limits.close()
    return membership.restart
