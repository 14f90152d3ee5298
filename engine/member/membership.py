"""Membership: an instance's part in one mirror — its databases, its journal, its data
channel links and its role.

An instance configured through its agent holds its memberships (engine/member/instance.py);
one started from a mirror file is a single membership with its own listeners:

    python -m engine instance --config FILE --member NAME

The role comes from the configuration: the first failover member starts as the primary
(switching to a new journal file), the other failover member as the backup, every other
member as an async.

The mirror private address (the data channel's listener) has connection limits
(engine/wire/limits.py, `private_limit_settings`): at most 64 connections, a connection that
has sent no whole frame (its DC_HELLO) within 10 s is closed, the buffered-frame caps of the
superserver; a connection that became a data channel link is exempt from the timers (its
link has its own QoS watchdogs).  docs/hardening.md, "Data channel and snapshot port limits".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path

from engine.failover import state as failover_state
from engine.member.actions import admin_action
from engine.member.admin_auth import ensure_token
from engine.member.agent_confirm import publish_partner_auth
from engine.member.config import Address, MemberConfig, MirrorConfig
from engine.member.dbops import on_control_record, primary_list_known, resume_downloads
from engine.member.dejournal_runner import DejournalRunner
from engine.member.failover_watch import FailoverWatch
from engine.member.files import DEJOURNAL_STOPPED_FILE, PID_FILE, STOPPED_FILE
from engine.member.gate import Gate
from engine.member.membership_ops import address_problem
from engine.member.node import Node, SuperserverRefusals, SuperserverTLS, describe_superserver_tls
from engine.member.rebuild import finish_rebuild
from engine.member.requests import HANDLERS, KILL, SET
from engine.member.session import Connection
from engine.member.status import member_status
from engine.member.takeover import hand_over
from engine.member.writer import Writer
from engine.replication.receiver import ReplicaLink
from engine.replication.sender import Replicator
from engine.storage import journal as jmod
from engine.storage.databases import CONTROL_DB, CONTROL_MARK, Catalog
from engine.storage.dejournal import Dejournaler
from engine.storage.store import Store
from engine.wire import tls
from engine.wire.limits import ConnectionLimits, LimitSettings
from engine.wire.protocol import DEFAULT_MAX_FRAME, ErrorCode, Frame, RequestError

log = logging.getLogger("engine.member.membership")
# The private listener's limits: room for the 16 members of a mirror (guide §3.1.2), their
# reconnections and a few address checks and snapshot requests; a peer has 10 s to say its
# DC_HELLO.  ENGINE_PRIVATE_LIMITS="max_connections=128,handshake_timeout_s=5" overrides any
# of engine/wire/limits.py's settings (checked: a value out of range stops the start).
PRIVATE_LIMITS_ENV = "ENGINE_PRIVATE_LIMITS"
PRIVATE_LIMIT_DEFAULTS = {"max_connections": 64, "handshake_timeout_s": 10.0}


def private_limit_settings(environ=os.environ) -> LimitSettings:
    """The mirror private listener's limits: the defaults above, then the environment's."""
    values: dict = dict(PRIVATE_LIMIT_DEFAULTS)
    for item in (environ.get(PRIVATE_LIMITS_ENV) or "").split(","):
        if item.strip():
            key, _, value = item.partition("=")
            values[key.strip()] = value.strip()
    return LimitSettings.from_mapping(values, where=f"{PRIVATE_LIMITS_ENV}: ")


def _holds_journal(member: MemberConfig, mirror: str) -> bool:
    journal_dir = Path(member.data_dir) / "journal"
    return journal_dir.is_dir() and bool(jmod.list_files(journal_dir, mirror))


def start_role(cfg: MirrorConfig, member: MemberConfig, fstate) -> str:
    """The role a member starts in.  Only a new mirror's first failover member starts as
    primary, and a failover member alone in its mirror (its partner demoted or never
    joined, guide §6.1.1); any other failover member starts as backup and becomes primary
    only by the protocol (engine/member/failover_watch.py): a restarted primary may not
    know whether its partner took over meanwhile (guide §3.3.2.3, §6.1.1)."""
    if not member.is_failover:
        return "async"
    if fstate.start_as_primary and fstate.primary == member.name:
        return "primary"  # a DR async promoted with no primary (engine/member/promotion.py)
    if not fstate.validated:
        return "backup"  # ValidatedMember=0: its role comes from the primary it finds
    if len(cfg.failover_members) == 1:
        return "primary"
    # a new mirror file's first failover member (no record of a primary, no journal yet); a
    # mirror made through the agents has its creator alone at first, and a member joined or
    # promoted later starts as backup.  A first member with journal but no failover.json
    # (lost, or from before failover.json) asks its partner first: the partner may have
    # taken over meanwhile (engine/member/failover_watch.py _negotiate)
    new = not fstate.known and not _holds_journal(member, cfg.name)
    if new and not cfg.dynamic and member.name == cfg.first_primary.name:
        return "primary"
    return "backup"


class Membership:
    def __init__(
        self,
        cfg: MirrorConfig,
        member_name: str,
        max_frame: int = DEFAULT_MAX_FRAME,
        node: Node | None = None,
        instance=None,
    ):
        self.cfg = cfg
        self.member = cfg.member(member_name)
        self.node = node  # set when configured through the agent (engine/member/node.py)
        # engine/member/instance.py: owns the superserver listener and the pid file
        self.instance = instance
        self.gate = Gate(self)  # what its data channel links ask of the membership
        self.max_frame = max_frame
        self.data_dir = Path(self.member.data_dir)
        # who was primary at which term, as this member last knew (engine/failover/state.py)
        self.fstate = failover_state.load(self.data_dir)
        self.role = start_role(cfg, self.member, self.fstate)
        # why this member is changing role now (status Transition), or None
        self.transition: str | None = None
        self.took_over_at: float | None = None  # when it last became primary by takeover
        self.took_over_from: str | None = None  # the primary it then replaced, as it knew
        self.hook_waiting: str | None = None  # a hook said no to taking over (hooks.py)
        self.stopping_started = False
        self.journal_dir = self.data_dir / "journal"
        self.sessions: set[Connection] = set()
        self.stores: dict[str, Store] = {}  # mounted mirrored databases
        self.dj_stores: dict[str, Store] = {}  # the ones being dejournaled (non-primary)
        self.catalog = Catalog(self.data_dir)
        self.catching_up: dict[str, int] = {}  # database -> records applied so far
        self.downloading: set[str] = set()
        self.background: set[asyncio.Task] = set()  # see run_in_background
        self.unreplayed: set[str] = set()  # stopped / paused since start-up: journal not applied
        self.db_errors: dict[str, str] = {}
        # the primary's mirrored databases (name -> wire entry) as last heard; None: not yet
        self.primary_db_info: dict[str, dict] | None = None
        self.primary_db_info_as_of = None  # the primary's journal end the list describes
        self.mirroring_stopped = False
        self.journal: jmod.Journal | None = None
        self.writer: Writer | None = None
        self.replicator: Replicator | None = None
        self.replica: ReplicaLink | None = None
        self.failover: FailoverWatch | None = None  # failover members (failover_watch.py)
        self.dejournal = None
        self.servers: list[asyncio.base_events.Server] = []
        self.listeners: dict[str, asyncio.base_events.Server] = {}
        self.started_at = time.time()
        self.rate_samples: collections.deque = collections.deque()  # engine/member/status.py
        self.stopping = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.restart = False  # leaving the mirror: run again as a non-member
        self.removed = False  # the primary removed this member
        self.address_error: str | None = None
        # tells this process from a copy answering elsewhere (guide §5.3)
        self.boot_id = instance.boot_id if instance is not None else uuid.uuid4().hex
        self.rebuilding = False
        self._private_ssl = None
        # the data channel listener's limits, kept across relistens (TLS turned on or off)
        self.private_limits = ConnectionLimits(
            private_limit_settings(),
            "mirror private",
            logging.getLogger("engine.member.membership"),
        )

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.instance is None:
            # the host agent finds the process to force down from this file
            (self.data_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        instance = self.instance
        self.admin_token = ensure_token(self.data_dir) if instance is None else instance.admin_token
        self.journal_dir.mkdir(exist_ok=True)
        if not self.cfg.tls and self.cfg.secret is None:
            log.warning(
                "mirror %s has neither TLS nor a mirror secret: its data channel is not "
                "authenticated (set mirror.secret_file, docs/hardening.md)",
                self.cfg.name,
            )
        partner_agents = [m.name for m in self.cfg.failover_members if m.agent is not None]
        if self.member.is_failover and partner_agents and self.cfg.secret is None:
            log.warning(
                "mirror %s names agents (%s) but has no mirror secret: no agent can check a "
                "partner's request, so no takeover through an agent (set mirror.secret_file, "
                "also with TLS; docs/takeover.md)",
                self.cfg.name,
                ", ".join(partner_agents),
            )
        self._open_storage()
        publish_partner_auth(self)  # for this host's agent (engine/member/agent_confirm.py)
        if self.role == "primary":
            self.start_primary()
        else:
            self._start_following()
        if self.member.type == "failover":
            self.failover = FailoverWatch(self)
            self.failover.start()
        # private first: a member answering on its superserver port is fully listening
        await self._listen_private()
        if self.instance is None:
            await self._listen_superserver()
        log.info(
            "member %s (%s) of mirror %s started as %s; superserver %s, private %s",
            self.member.name,
            self.member.type_label,
            self.cfg.name,
            self.role,
            self.member.superserver,
            self.member.private,
        )
        resume_downloads(self)

    def start_primary(self) -> None:
        """Serve as primary: the Writer commits, the Replicator ships (storage is open)."""
        # a new term, written durably before the first commit (engine/failover/state.py);
        # a primary's start clears "no failover" (guide §6.1.3)
        if self.fstate.no_failover:
            self.fstate = replace(self.fstate, no_failover=False)
            log.info("no failover cleared: this member starts as primary")
        if self.fstate.start_as_primary:  # promoted: the term was chosen and announced then
            self.fstate = replace(self.fstate, start_as_primary=False)
            failover_state.save(self.data_dir, self.fstate)
        else:
            self.remember_primary(self.member.name, self.fstate.term + 1)
        self.replicator = Replicator(self, self.gate)
        self.journal.on_append = self.replicator.on_append
        self.journal.new_file()  # guide §3.2: a new journal file on becoming primary
        self.writer = Writer(self)
        self.writer.start()
        self.replicator.start()

    def _start_following(self) -> None:
        """Follow a primary: dejournal what it sends over the data channel."""
        self.dejournal = DejournalRunner(self._make_dejournaler())
        if self.dejournal_stopped_at_start:
            log.warning("dejournaling is stopped on this member; start it with dejournal_start")
            self.dejournal.stop()
        self.dejournal.start_task()
        self.replica = ReplicaLink(self, self.gate)
        self.mirroring_stopped = (self.data_dir / STOPPED_FILE).exists()
        if self.mirroring_stopped:
            log.warning("mirroring is stopped on this member; start it with start_mirroring")
            self.replica.stopped = True
        else:
            self.replica.start()

    def primary_databases(self, databases: dict[str, dict], as_of) -> None:
        primary_list_known(self, databases, as_of)  # engine/member/dbops.py

    def remember_primary(self, primary: str, term: int) -> None:
        """Record (durably) who is primary at which term.  Asyncs keep it too: a DR async
        promoted with no primary takes over at the next term (engine/member/promotion.py).
        A member not validated is again once it has found a primary (guide §6.3.1.1)."""
        if term < self.fstate.term:
            return
        if (term, primary, True) == (self.fstate.term, self.fstate.primary, self.fstate.validated):
            return
        if not self.fstate.validated:
            log.warning(
                "validated again: primary %s (term %d) gives this member its role", primary, term
            )
        self.fstate = replace(self.fstate, term=term, primary=primary, validated=True)
        failover_state.save(self.data_dir, self.fstate)
        log.info("the mirror's primary is %s (term %d)", primary, term)

    def stand_down_if_later(self, known: object, source: str) -> bool:
        """True, and this primary stands down, if `known` ({term, primary} from `source`: a
        partner's relayed state, a member's hello) names a later term than its own."""
        term = known.get("term") if isinstance(known, dict) else None
        if not isinstance(term, int) or isinstance(term, bool) or term <= self.fstate.term:
            return False
        self.stand_down(known.get("primary"), term, source)
        return True

    def stand_down(self, primary: object, term: int, source: str) -> None:
        """A primary learns that `primary` was primary at a later `term` (from `source`): it
        missed a takeover (guide §3.3.5.2).  It commits nothing more, remembers the later
        primary, and stops; restarted, it rejoins as backup."""
        if not isinstance(primary, str) or self.cfg.find(primary) is None:
            primary = source
        log.error(
            "member %s was primary at term %d (this member's term %d, as %s says): stopping; "
            "restart this member to rejoin as backup",
            primary,
            term,
            self.fstate.term,
            source,
        )
        if self.replicator is not None:
            self.replicator.hold_trouble(f"{primary} was primary at a later term")
        self.remember_primary(primary, term)
        (self.instance or self).stop_requested.set()

    def link_changed(self) -> None:
        """A data channel link came or went (engine/replication): the failover watch decides
        at once rather than at its next tick."""
        if self.failover is not None:
            self.failover.nudge()

    def primary_member(self) -> MemberConfig:
        """The member this one knows as primary: the one it follows or last heard of, else
        the first failover member (the primary of a new mirror)."""
        for name in (
            self.member.name if self.role == "primary" else None,
            self.replica.primary_name if self.replica is not None else None,
            self.fstate.primary,
        ):
            # a DR async promoted with no primary is primary before this member's
            # configuration says it is a failover member (engine/member/promotion.py)
            found = name and self.cfg.find(name)
            if found:
                return found
        return self.cfg.first_primary

    def _open_storage(self) -> None:
        finish_rebuild(self)  # a rebuild asked before this start (engine/member/rebuild.py)
        # opening the journal cuts a torn tail first, so replay sees only whole records
        self.journal = jmod.Journal(
            self.journal_dir, self.cfg.name, max_file_bytes=self.cfg.journal_file_bytes
        )
        self.dejournal_stopped_at_start = (
            self.role != "primary" and (self.data_dir / DEJOURNAL_STOPPED_FILE).exists()
        )
        self.catalog.load(self.member.databases, failover_db=self.member.type != "rw_reporting")
        self.dj_stores.clear()
        self.unreplayed.clear()
        for entry in self.catalog.entries.values():
            if not entry.mounted or entry.needs_download:
                continue  # (a download cut short left no usable copy)
            store = self.open_store(entry.name, entry.since)
            self.stores[entry.name] = store
            live = self.role == "primary" or (entry.activated and entry.caught_up)
            held = self.dejournal_stopped_at_start or entry.paused
            if live and not entry.obsolete and held and self.role != "primary":
                self.dj_stores[entry.name] = store  # replayed when started / resumed
                self.unreplayed.add(entry.name)
            elif live and not entry.obsolete:
                # the journal is the durability point: bring the store up to it
                jmod.replay_into(store, self.journal_dir, entry.name, mirror=self.cfg.name)
                if self.role != "primary":
                    self.dj_stores[entry.name] = store

    def db_path(self, db: str) -> Path:
        return self.data_dir / "db" / db

    def open_store(self, db: str, since=None) -> Store:
        """Open (creating if need be) a database; a new one starts at journal position
        `since`, so journal records of an earlier database of that name are never applied."""
        store = Store.open(str(self.db_path(db)))
        if since is not None and store.applied_position is None:
            store.apply([], upto=jmod.make_position(*since))
        return store

    async def cut_journal(self, pos) -> None:
        """Drop journal this member has beyond `pos` (bytes the primary never made durable,
        e.g. shipped just before it was killed) and rebuild the databases from the rest,
        since they may already hold those records."""
        log.warning(
            "journal beyond %s is not on the primary: cutting it, rebuilding databases", pos
        )
        self.rebuilding = True
        try:
            await self.dejournal.close()
            self.journal.close()
            for store in self.stores.values():
                store.close()
            self.stores = {}
            for seq, name in jmod.list_files(self.journal_dir, self.cfg.name):
                if seq > pos.file_seq:
                    os.remove(self.journal_dir / name)
                elif seq == pos.file_seq:
                    os.truncate(self.journal_dir / name, pos.offset)
            for entry in self.catalog.entries.values():
                # a database made in the mirror is rebuilt from the journal; one added with
                # its data (restored) cannot be, and is left as it is
                if entry.created:
                    shutil.rmtree(self.db_path(entry.name), ignore_errors=True)
                else:
                    log.warning("database %s may hold records beyond the cut", entry.name)
            self._open_storage()
            self.dejournal = DejournalRunner(self._make_dejournaler())
            self.dejournal.start_task()
        finally:
            self.rebuilding = False

    def _make_dejournaler(self) -> Dejournaler:
        dj = Dejournaler(
            self.dj_stores,
            parallel=self.cfg.parallel_for(self.member),
            workers=self.member.dejournal_workers,
            record_filter=self.member.dejournal_filter,
        )
        for entry in self.catalog.entries.values():
            if entry.paused and entry.name in self.dj_stores:
                dj.pause_database(entry.name)  # an operator's pause outlives a restart
        return dj

    def tls_server_context(self):
        """Mutual TLS for the data channel when the mirror requires TLS (guide §4.5)."""
        if not self.cfg.tls:
            return None
        return tls.server_context(self.member.tls_cert, self.member.tls_key, self.cfg.tls_ca)

    def tls_client_context(self):
        if not self.cfg.tls:
            return None
        return tls.client_context(self.member.tls_cert, self.member.tls_key, self.cfg.tls_ca)

    async def _listen(
        self, addr: Address, name: str, ssl=None, limits: ConnectionLimits | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        extra = {}
        if ssl is not None and limits is not None:
            # a TLS handshake is not yet a connection of the limits: bound it by the same wait
            extra["ssl_handshake_timeout"] = limits.settings.handshake_timeout_s
        server = await loop.create_server(
            lambda: Connection(self, name, self.max_frame, limits),
            addr.host,
            addr.port,
            reuse_address=True,
            ssl=ssl,
            **extra,
        )
        self.servers.append(server)
        self.listeners[name] = server

    async def _listen_superserver(self) -> None:
        """A member run from a mirror file listens on its superserver itself, with the TLS
        its options ask (engine/member/node.py SuperserverTLS; an instance does this for its
        memberships, engine/member/instance.py)."""
        limits = getattr(self, "superserver_limits", None)
        settings = getattr(self, "superserver_tls", None) or SuperserverTLS()
        refusals = SuperserverRefusals(limits) if limits is not None else None
        ctx, files = settings.context(self, refusals)
        self.superserver_files = files
        tls.publish_superserver_tls(self.data_dir, files, settings.client_cert)
        await self._listen(self.member.superserver, "superserver", ctx, limits)
        log.info("%s", describe_superserver_tls(settings, files))

    def _own_superserver_tls(self):
        """A client context for this member's own superserver when it speaks TLS."""
        owner = self.instance if self.instance is not None else self
        files = getattr(owner, "superserver_files", None)
        return tls.client_context(*files) if files else None

    def reload_tls(self) -> None:
        """Pick up new TLS files: the private listener's context takes the new chain for
        the next handshakes; the data channel to the primary is made with a new context."""
        if self._private_ssl is not None and self.cfg.tls:
            self._private_ssl.load_cert_chain(self.member.tls_cert, self.member.tls_key)
        if self.replica is not None:
            self.replica.refresh_tls()

    async def relisten_private(self) -> None:
        """TLS turned on or off on the mirror: listen on the private address again."""
        server = self.listeners.pop("private", None)
        if server is not None:
            server.close()
            self.servers.remove(server)
        for conn in [c for c in self.sessions if c.listener == "private"]:
            conn.close()
        await asyncio.sleep(0.05)  # let the closed sockets go before binding again
        await self._listen_private()
        self.check_addresses()

    async def _listen_private(self) -> None:
        if self.member.private is None:
            return
        self._private_ssl = self.tls_server_context()
        try:
            await self._listen(
                self.member.private, "private", self._private_ssl, self.private_limits
            )
            log.info("%s", self.private_limits.describe())
        except OSError as exc:
            if not self.cfg.dynamic:
                raise
            # the mirror's address for this member is not one of this host's: reported by
            # the address validation (guide §5.3) rather than a crash at every start
            log.error("cannot listen on mirror private address %s: %s", self.member.private, exc)

    def tls_info(self) -> dict | None:
        """This member's certificate: DN and expiry (re-read at most every few seconds,
        since status is asked for often and a renewed file should show up)."""
        node = self.node
        if node is None or not node.has_tls:
            return None
        now = time.monotonic()
        cached = getattr(self, "_tls_info", None)
        if cached is None or now - cached[0] > 5.0:
            try:
                info = tls.check_certificate(node.tls_cert, node.tls_ca)
            except tls.TLSError as exc:
                info = {"error": str(exc)}
            cached = self._tls_info = (now, info)
        return cached[1]

    def check_addresses(self) -> None:
        """guide §5.3, in the background: this member must be the one answering at the
        addresses the mirror has for it."""
        if self.node is not None:
            asyncio.get_running_loop().create_task(self._validate_addresses())

    async def _validate_addresses(self) -> None:
        problems = []
        me = self.member
        for what, addr in (("superserver", me.superserver), ("private", me.private)):
            ssl = self.tls_client_context() if what == "private" else self._own_superserver_tls()
            problem = addr and await address_problem(self, what, addr, ssl)
            if problem:
                problems.append(problem)
        self.address_error = "; ".join(problems) or None
        if self.address_error:
            log.error("network address validation: %s", self.address_error)

    def request_restart(self) -> None:
        if self.instance is not None:
            self.instance.request_restart()
            return
        self.restart = True
        asyncio.get_running_loop().call_later(0.05, self.stop_requested.set)

    async def stop(self) -> None:
        self.stopping_started = True  # a backup that is stopping takes over nothing
        # a takeover under way (engine/member/takeover.py, a fraction of a second) finishes
        # first: stopping in its middle would close what it is reopening
        deadline = time.monotonic() + 10.0
        while self.transition is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        restarting = self.restart or (self.instance is not None and self.instance.restart)
        if not restarting:
            await hand_over(self)  # a graceful shutdown of the primary (guide §3.3.2.2)
        for server in self.servers:
            server.close()
        self.private_limits.close()
        for conn in list(self.sessions):
            conn.close()
        if self.failover is not None:
            await self.failover.stop()
        if self.replica is not None:
            await self.replica.stop()
        if self.replicator is not None:
            await self.replicator.stop()
        if self.writer is not None:
            await self.writer.stop()
        if self.dejournal is not None:
            await self.dejournal.close()
        if self.journal is not None:
            self.journal.close()
        for store in self.stores.values():
            store.close()
        if self.instance is None:
            with contextlib.suppress(OSError):
                (self.data_dir / PID_FILE).unlink()
        self.stopping.set()

    # -- helpers used by request handlers -----------------------------------
    def journal_entry(self, txid, db, op, gname, subs, value):
        return jmod.Entry(txid, db, op, gname, subs, value)

    def journal_reader(self):
        return jmod.JournalReader(self.journal_dir, self.cfg.name)

    def store_for(self, db: str) -> Store:
        store = self.stores.get(db.upper())
        if store is None:
            raise RequestError(
                ErrorCode.NO_DATABASE,
                f"database {db!r} is not mirrored on member {self.member.name} "
                f"(databases: {', '.join(self.stores)})",
            )
        return store

    def not_primary_error(self, why: str) -> RequestError:
        primary = self.primary_member()
        name = primary.name
        return RequestError(
            ErrorCode.NOT_PRIMARY,
            f"member {self.member.name} is not the primary ({why}); "
            f"the primary is {name} at {primary.superserver}",
            primary=name,
            primary_address=str(primary.superserver),
        )

    def apply_records(self, records) -> None:
        by_db: dict[str, list] = {}
        for r in records:
            by_db.setdefault(r.database, []).append(r)
        for db, recs in by_db.items():
            store = self.stores.get(db)
            # control records have no store; a database dismounted meanwhile replays on mount
            if store is not None:
                store.apply(recs)

    def local_write(self, ops: list) -> None:
        """Writes on a read-write reporting async: local only, never journaled to the mirror."""
        stores = {db: self.store_for(db) for _, db, _, _, _ in ops}
        for store in stores.values():
            store.begin()
        try:
            for op, db, gname, subs, value in ops:
                if op == SET:
                    stores[db].set(gname, subs, value)
                elif op == KILL:
                    stores[db].kill(gname, subs)
        except BaseException:
            for store in stores.values():
                store.rollback()
            raise
        for store in stores.values():
            store.commit()

    def dejournal_feed(self, records, data: bytes, pos) -> None:
        if records is None:
            records = jmod.decode_records(data)
        if data is None or CONTROL_MARK in data:
            self._control_records(records)
        self.dejournal.submit(records)

    def _control_records(self, records) -> None:
        for r in records:
            if r[3] == CONTROL_DB:
                on_control_record(self, r)

    def accept_data_channel(self, conn: Connection, frame: Frame) -> None:
        if self.cfg.tls and conn.listener != "private":
            conn.reject_stream(
                "this mirror requires TLS: open the data channel to the mirror private address",
                frame.req_id,
            )
            return
        if self.replicator is None:
            # asked by members looking for the primary (after a failover, at start-up): the
            # answer names the primary this member knows, and is not worth a log line
            conn.reject_stream(
                self.not_primary_error("journal is served only by the primary").message,
                frame.req_id,
                quiet=True,
                code=ErrorCode.NOT_PRIMARY,
            )
            return
        self.replicator.accept(conn, frame)

    def run_in_background(self, coro) -> asyncio.Task:
        """A task nobody awaits (a download, a catch-up), kept referenced until it ends: the
        event loop holds only weak references to tasks."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def handle(self, conn: Connection, mtype: int, args: list):
        return HANDLERS[mtype](self, conn, args)

    # -- info, status, admin --------------------------------------------------
    def info(self) -> dict:
        primary = self.primary_member()
        return {
            "instance": self.node.name if self.node else self.member.name,
            "boot_id": self.boot_id,
            "member": self.member.name,
            "mirror": self.cfg.name,
            "type": self.member.type,
            "role": self.role,
            "primary": primary.name,
            "primary_address": str(primary.superserver),
            "databases": list(self.stores),
            "tls": self.cfg.tls,  # the mirror requires TLS
            # who was primary at which term, as this member knows (engine/failover/state.py)
            "failover_state": self.fstate.to_wire() if self.member.is_failover else None,
            # a primary in trouble may have been replaced: clients look further (client/app.py)
            "in_trouble": bool(self.replicator is not None and self.replicator.in_trouble),
        }

    def status(self) -> dict:
        return member_status(self)

    def admin(self, action, arg):
        return admin_action(self, action, arg)
