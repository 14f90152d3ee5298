"""The arbiter: a third party that tells each failover member whether it still sees the other.

The arbiter is not a quorum and decides nothing (guide §3.1.4, §3.3.4): it only supplies
context.  Each failover member keeps a connection to it (engine/failover/arbiter_link.py)
and asks, in effect, "do you still see my partner?"; the member decides (modes.py).  One
arbiter serves many mirrors: registrations are keyed by (mirror, member).  It runs in an
agent (agent configuration `arbiter`, engine/agent/config.py) or on its own:

    python -m engine arbiter --listen HOST:PORT [--cert F --key F --ca F]

Protocol (engine/PROTOCOL.md "Arbiter"; the engine's frames, engine/wire/protocol.py):

    arbiter -> member  ARB_CHALLENGE {nonce}                       as the connection opens
    member -> arbiter  ARB_HELLO     {mirror, member, peer, timeout_ms, proof, state}
    arbiter -> member  ARB_STATE     {peer_connected, peer_since, peers, ...}  its reply
    member -> arbiter  ARB_PING      {state}                       every timeout/4
    arbiter -> member  ARB_STATE     the reply to each ping, and pushed (req_id 0) at once
                                     when the partner's registrations or state change

Authentication: the arbiter knows no mirror secret.  The hello carries
proof = HMAC(secret, "arbiter" | mirror | member | the arbiter's nonce for this connection)
(engine/wire/mirror_secret.py arbiter_proof); the arbiter relays every registration under the
partner's name with its nonce and proof, and the member counts its partner as seen only if a
proof checks with the secret.  So a stranger registering under the partner's name can never
make a member believe its partner is connected; at worst it takes registration slots (up to
MAX_PER_KEY per name; a newcomer never evicts an earlier one) and disturbs availability.
With TLS (a CA given) every member presents a certificate from that CA whose CN must be the
member named in the hello; the proof is then optional (relayed with `tls: true`).

A registration is lost when its connection closes or when nothing was heard from it within
its own timeout_ms (a timer per registration, re-armed at the deadline computed afresh from
the last frame heard; it never sleeps past it); then the arbiter closes the connection and
tells the partner at once.

Limits (engine/wire/limits.py, like the members' listeners): at most 256 connections, 5 s
from connecting (TLS handshake included) to the hello, small frames (MAX_FRAME), 8 KiB of an
unfinished frame per connection and 1 MiB in all, pings at most PING_RATE per second; every
refusal is a rate-limited WARNING line naming the peer and the reason.  ENGINE_ARBITER_LIMITS
="max_connections=512,handshake_timeout_s=2" overrides any of those settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.x509.oid import NameOID

from engine.rules import (
    ARBITER_PORT,
    FAILOVER,
    RuleError,
    check_member_name,
    check_mirror_name,
)
from engine.wire import mirror_secret, tls
from engine.wire.limits import KIB, MIB, ConnectionLimits, LimitSettings, TokenBucket
from engine.wire.protocol import (
    BadFrame,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    MsgType,
    describe_truncation,
    encode_frame,
    error_frame,
    unpack,
)
from engine.wire.serving import accepted, serve_until_signalled

log = logging.getLogger("engine.failover.arbiter")

DEFAULT_PORT = ARBITER_PORT
MAX_PER_KEY = 4  # registrations under one (mirror, member): the real one and a few others
MAX_FRAME = 4 * KIB  # a hello or ping is a few hundred bytes
# the QoS timeout's range (docs/mirroring-model.md §4.3): members use their QoS timeout here
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 100, 600_000
# a member pings every timeout/4 (40 a second at the shortest timeout) and when its state
# changes, at most every 20 ms in all (arbiter_link.py MIN_PING_GAP_S): below this
PING_RATE, PING_BURST = 100.0, 50.0
# pushes a member does not read: past this its connection is closed
MAX_UNREAD_BYTES = 64 * KIB
ARBITER_LIMITS_ENV = "ENGINE_ARBITER_LIMITS"
ARBITER_LIMIT_DEFAULTS = {
    "max_connections": 256,
    "handshake_timeout_s": 5.0,
    "max_buffered_per_connection": 8 * KIB,
    "max_buffered_total": 1 * MIB,
}


def arbiter_limit_settings(environ=os.environ) -> LimitSettings:
    """The arbiter listener's limits: the defaults above, then the environment's."""
    values: dict = dict(ARBITER_LIMIT_DEFAULTS)
    for item in (environ.get(ARBITER_LIMITS_ENV) or "").split(","):
        if item.strip():
            key, _, value = item.partition("=")
            values[key.strip()] = value.strip()
    return LimitSettings.from_mapping(values, where=f"{ARBITER_LIMITS_ENV}: ")


class ArbiterConfigError(ValueError):
    """An arbiter setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class ArbiterSettings:
    """Where an arbiter listens, and its TLS files (all three, or none)."""

    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert is None:
            return None
        return tls.server_context(self.cert, self.key, self.ca)


def parse_listen(value: object, where: str = "arbiter") -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, or a bare host (DEFAULT_PORT)."""
    if not isinstance(value, str) or not value.strip():
        raise ArbiterConfigError(f"{where}: expected a listen address HOST:PORT")
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if not sep or (rest and port_text is None):
            raise ArbiterConfigError(f"{where}: {value!r} is not HOST:PORT")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        raise ArbiterConfigError(f"{where}: an IPv6 address goes in brackets: [{text}]:PORT")
    else:
        host, port_text = text, None
    if not host:
        raise ArbiterConfigError(f"{where}: {value!r} names no host")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ArbiterConfigError(f"{where}: port {port_text!r} is not 1-65535")
    return host, int(port_text)


def parse_arbiter_setting(value: object, base: Path, where: str = "agent.arbiter"):
    """The agent's `arbiter` setting: absent (None: no arbiter), a listen address, or a table
    {listen, cert, key, ca} (relative paths from `base`).  ArbiterSettings, or
    ArbiterConfigError naming what is wrong."""
    if value is None:
        return None
    if isinstance(value, str):
        return ArbiterSettings(*parse_listen(value, where))
    if not isinstance(value, dict):
        raise ArbiterConfigError(f"{where}: expected a listen address or a table")
    unknown = sorted(set(value) - {"listen", "cert", "key", "ca"})
    if unknown:
        raise ArbiterConfigError(f"{where}.{unknown[0]}: unknown setting")
    host, port = parse_listen(value.get("listen"), f"{where}.listen")
    files = {}
    for name in ("cert", "key", "ca"):
        if name in value:
            item = value[name]
            if not isinstance(item, str) or not item:
                raise ArbiterConfigError(f"{where}.{name}: expected a file path")
            files[name] = Path(item) if Path(item).is_absolute() else base / item
    if files and len(files) != 3:
        # without a CA the certificate CN could not be checked against the hello's member
        raise ArbiterConfigError(f"{where}: TLS needs cert, key and ca together")
    return ArbiterSettings(host, port, **files)


class Refusal(Exception):
    """A hello or ping the arbiter does not accept: answered with the reason, then closed."""

    def __init__(self, kind: str, reason: str, code: str = ErrorCode.PROTOCOL):
        super().__init__(reason)
        self.kind, self.reason, self.code = kind, reason, code


@dataclass(eq=False)
class Registration:
    conn: ArbiterConnection
    mirror: str
    member: str
    peer: str
    timeout_ms: int
    nonce: bytes
    proof: bytes | None
    tls: bool
    since: float  # loop time of the hello
    heard: float  # loop time of the last whole frame
    state: dict = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    current: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return self.mirror, self.member

    @property
    def peer_key(self) -> tuple[str, str]:
        return self.mirror, self.peer

    @property
    def name(self) -> str:
        return f"{self.mirror}/{self.member}"


def _text(body: dict, key: str, check) -> str:
    value = body.get(key)
    try:
        return check(value)
    except RuleError as exc:
        raise Refusal("bad hello", f"{key}: {exc}") from None


def _state(value: object) -> dict:
    """A member's state as it is relayed: a map of short text keys (None: an empty one)."""
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(isinstance(k, str) and len(k) <= 32 for k in value)
    ):
        raise Refusal("bad state", "state: expected a map of at most 16 short text keys")
    return value


class Arbiter:
    """One arbiter listener and its registrations (start() / stop())."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: LimitSettings | None = None,
        max_per_key: int = MAX_PER_KEY,
    ):
        self.host, self.port = host, port
        self.ssl = ssl_context
        self.max_per_key = max_per_key
        self.limits = ConnectionLimits(limits or arbiter_limit_settings(), "arbiter", log)
        self.regs: dict[tuple[str, str], list[Registration]] = {}
        # (mirror, member) -> the registrations whose partner it is
        self.watchers: dict[tuple[str, str], set[Registration]] = {}
        # (mirror, member) -> loop time its presence (any registration) last changed
        self.presence: dict[tuple[str, str], float] = {}
        self.conns: set[ArbiterConnection] = set()
        self.server: asyncio.base_events.Server | None = None
        self.counts = {"registered": 0, "dropped_silent": 0, "refused": 0}

    @classmethod
    def from_settings(cls, settings: ArbiterSettings) -> Arbiter:
        return cls(settings.host, settings.port, ssl_context=settings.ssl_context())

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.limits.fit_descriptors()
        extra = {}
        if self.ssl is not None:
            # a TLS handshake is not yet a connection of the limits: bound it by the same wait
            extra["ssl_handshake_timeout"] = self.limits.settings.handshake_timeout_s
        self.server = await loop.create_server(
            lambda: ArbiterConnection(self),
            self.host,
            self.port,
            reuse_address=True,
            ssl=self.ssl,
            **extra,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info(
            "arbiter listening on %s:%s (%s)",
            self.host,
            self.port,
            "mutual TLS: certificate CN = member" if self.ssl else "mirror secret proofs",
        )
        log.info("%s", self.limits.describe())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.close()
        self.limits.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            self.server = None

    def stats(self) -> dict:
        return {
            "registrations": sum(len(v) for v in self.regs.values()),
            "mirrors": len({m for m, _ in self.regs}),
            **self.counts,
            "listener": self.limits.stats(),
        }

    # -- registrations ----------------------------------------------------------------
    def register(self, conn: ArbiterConnection, req_id: int, body: object) -> Registration:
        if not isinstance(body, dict):
            raise Refusal("bad hello", "ARB_HELLO body must be a map")
        mirror = _text(body, "mirror", check_mirror_name)
        member = _text(body, "member", lambda v: check_member_name(v, FAILOVER))
        peer = _text(body, "peer", lambda v: check_member_name(v, FAILOVER))
        if peer == member:
            raise Refusal("bad hello", f"peer: a member ({member}) is not its own partner")
        timeout_ms = body.get("timeout_ms")
        if type(timeout_ms) is not int or not MIN_TIMEOUT_MS <= timeout_ms <= MAX_TIMEOUT_MS:
            raise Refusal(
                "bad hello",
                f"timeout_ms: must be an integer from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}",
            )
        proof = body.get("proof")
        if proof is not None and (not isinstance(proof, bytes) or len(proof) != 32):
            raise Refusal("bad hello", "proof: expected the 32 bytes of an HMAC-SHA256")
        state = _state(body.get("state"))
        if conn.cns is not None:
            if member not in conn.cns:
                raise Refusal(
                    "certificate not the member's",
                    f"certificate {conn.subject!r} is not member {member}'s",
                    ErrorCode.UNAUTHORIZED,
                )
        elif proof is None:
            raise Refusal(
                "no proof",
                "proof missing: without TLS a member proves the mirror secret",
                ErrorCode.UNAUTHORIZED,
            )
        key = (mirror, member)
        held = self.regs.setdefault(key, [])
        if len(held) >= self.max_per_key:
            # the earlier ones stay: a newcomer under a name already held could be anyone
            raise Refusal(
                "registrations full",
                f"{mirror}/{member} already has {len(held)} registrations "
                f"[limit max_per_key={self.max_per_key}]",
                ErrorCode.REFUSED,
            )
        now = asyncio.get_running_loop().time()
        reg = Registration(
            conn, mirror, member, peer, timeout_ms, conn.nonce, proof, conn.cns is not None,
            now, now, state,
        )  # fmt: skip
        if not held:
            self.presence[key] = now
        held.append(reg)
        self.watchers.setdefault(reg.peer_key, set()).add(reg)
        self.presence.setdefault(reg.peer_key, now)  # "not seen" counts from now at least
        self._arm(reg)
        self.counts["registered"] += 1
        # through the limits' token bucket: strangers registering in a loop cannot flood it
        self.limits.log.emit(
            "registered",
            logging.INFO,
            f"arbiter: {reg.name} registered from {conn.peer} (partner {peer}, timeout "
            f"{timeout_ms} ms"
            + (f", {len(held)} registrations under the name)" if len(held) > 1 else ")"),
            "arbiter: registrations",
        )
        conn.send(encode_frame(MsgType.ARB_STATE, req_id, self.state_for(reg)))
        self._notify(key)
        return reg

    def unregister(self, reg: Registration, why: str) -> None:
        if not reg.current:
            return
        reg.current = False
        if reg.timer is not None:
            reg.timer.cancel()
            reg.timer = None
        held = self.regs.get(reg.key, [])
        if reg in held:
            held.remove(reg)
        if not held:
            self.regs.pop(reg.key, None)
            self.presence[reg.key] = asyncio.get_running_loop().time()
        watching = self.watchers.get(reg.peer_key)
        if watching is not None:
            watching.discard(reg)
            if not watching:
                del self.watchers[reg.peer_key]
        for key in (reg.key, reg.peer_key):  # forget what nobody holds or watches
            if key not in self.regs and key not in self.watchers:
                self.presence.pop(key, None)
        self.limits.log.emit(
            "unregistered",
            logging.INFO,
            f"arbiter: {reg.name} from {reg.conn.peer} unregistered: {why}",
            "arbiter: registrations ended",
        )
        self._notify(reg.key)

    def heard(self, reg: Registration, req_id: int, body: object) -> None:
        """A ping: the registration is alive; its state may have changed."""
        reg.heard = asyncio.get_running_loop().time()
        if body is not None and not isinstance(body, dict):
            raise Refusal("bad ping", "ARB_PING body must be a map")
        changed = False
        if body and "state" in body:
            state = _state(body["state"])
            changed = state != reg.state
            reg.state = state
        reg.conn.send(encode_frame(MsgType.ARB_STATE, req_id, self.state_for(reg)))
        if changed:
            self._notify(reg.key)

    def state_for(self, reg: Registration) -> dict:
        """What `reg`'s member is told of its partner."""
        now = asyncio.get_running_loop().time()
        peers = self.regs.get(reg.peer_key, [])
        since = self.presence.get(reg.peer_key, reg.since)
        return {
            "mirror": reg.mirror,
            "member": reg.member,
            "peer": reg.peer,
            "peer_connected": bool(peers),
            "peer_since": round(now - since, 3),
            "peers": [
                {
                    "nonce": p.nonce,
                    "proof": p.proof,
                    "tls": p.tls,
                    "since": round(now - p.since, 3),
                    "heard_ms": int((now - p.heard) * 1000),
                    "state": p.state,
                }
                for p in peers
            ],
            "timeout_ms": reg.timeout_ms,
        }

    def _notify(self, key: tuple[str, str]) -> None:
        """Push the new state at once to every registration whose partner is `key`."""
        for reg in list(self.watchers.get(key, ())):
            reg.conn.send(encode_frame(MsgType.ARB_STATE, 0, self.state_for(reg)))

    def _arm(self, reg: Registration) -> None:
        loop = asyncio.get_running_loop()
        reg.timer = loop.call_at(reg.heard + reg.timeout_ms / 1000, self._check, reg)

    def _check(self, reg: Registration) -> None:
        """The registration's deadline, read afresh: dropped if nothing came since, else the
        timer is set again for the new deadline (a ping moved it)."""
        reg.timer = None
        if not reg.current:
            return
        now = asyncio.get_running_loop().time()
        if now - reg.heard >= reg.timeout_ms / 1000:
            self.counts["dropped_silent"] += 1
            reason = (
                f"nothing heard for {now - reg.heard:.3f} s [timeout_ms={reg.timeout_ms}]: "
                "registration dropped"
            )
            self.limits.warn("silent", f"arbiter: {reg.name} from {reg.conn.peer}: {reason}")
            reg.conn.close_with(ErrorCode.UNAVAILABLE, reason, abort=True)
            self.unregister(reg, "silent")
        else:
            self._arm(reg)


class ArbiterConnection(asyncio.Protocol):
    """One member's connection: the challenge, its hello, then its pings."""

    def __init__(self, arbiter: Arbiter):
        self.arbiter = arbiter
        self.limits = arbiter.limits
        self.decoder = FrameDecoder(MAX_FRAME)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.nonce = mirror_secret.new_nonce()
        self.cns: list[str] | None = None  # the certificate's CNs, with TLS
        self.subject = ""
        self.reg: Registration | None = None
        self.closed = False
        self.limit_closed = False
        self.bucket = TokenBucket(PING_RATE, PING_BURST)

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = accepted(transport)
        refusal = self.limits.admit(self, self.peer)
        if refusal is not None:  # counted and logged by the limits
            transport.write(error_frame(0, ErrorCode.UNAVAILABLE, refusal))
            transport.close()
            self.closed = self.limit_closed = True
            return
        self.arbiter.conns.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            cert = tls.peer_certificate(ssl_object)
            self.cns = []
            if cert is not None:
                self.subject = cert.subject.rfc4514_string()
                names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                self.cns = [a.value for a in names]
        self.send(encode_frame(MsgType.ARB_CHALLENGE, 0, {"nonce": self.nonce}))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.limits.release(self)
        self.arbiter.conns.discard(self)
        trunc = describe_truncation(self.decoder)
        if trunc and not self.limit_closed:
            self.limits.warn("truncated frame", f"arbiter listener, peer {self.peer}: {trunc}")
        if self.reg is not None:
            self.arbiter.unregister(self.reg, "connection closed")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self.refuse(Refusal("garbage", exc.reason), exc.req_id)
            return
        decoder = self.decoder
        reason = self.limits.received(self, decoder.pending, decoder.expected, len(frames))
        if reason is not None:
            self.limit_close(reason)
            return
        for frame in frames:
            if self.closed:
                return
            try:
                self.on_frame(frame)
            except Refusal as refusal:
                self.refuse(refusal, getattr(frame, "req_id", 0))
                return

    def on_frame(self, frame: Frame | BadFrame) -> None:
        if isinstance(frame, BadFrame):
            raise Refusal("rejected frame", frame.reason)
        try:
            body = unpack(frame.body)
        except ValueError as exc:
            raise Refusal("bad body", str(exc)) from None
        if self.reg is None:
            if frame.type != MsgType.ARB_HELLO:
                raise Refusal("no hello", f"expected ARB_HELLO, got message type {frame.type}")
            self.reg = self.arbiter.register(self, frame.req_id, body)
            self.limits.exempt(self)  # from now on its own timeout says whether it is alive
        elif frame.type == MsgType.ARB_PING:
            if not self.bucket.take():
                raise Refusal(
                    "too many pings",
                    f"more than {PING_RATE:g} pings per second [limit ping_rate={PING_RATE:g}]",
                )
            self.arbiter.heard(self.reg, frame.req_id, body)
        else:
            raise Refusal("unexpected frame", f"message type {frame.type} is not an ARB_PING")

    # -- the limits' interface (engine/wire/limits.py) --------------------------------
    def in_flight(self) -> bool:
        return False  # every request is answered at once

    def limit_close(self, reason: str) -> None:
        self.limits.release(self)
        self.close_with(ErrorCode.PROTOCOL, reason, abort=True)
        self.limit_closed = True

    # -- replies ----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        t.write(data)
        if t.get_write_buffer_size() > MAX_UNREAD_BYTES:
            self.limits.warn(
                "not reading",
                f"arbiter listener: closed {self.peer}: it does not read its state "
                f"[limit unread_bytes={MAX_UNREAD_BYTES}]",
            )
            self.closed = True
            t.abort()

    def refuse(self, refusal: Refusal, req_id: int = 0) -> None:
        self.arbiter.counts["refused"] += 1
        self.limits.warn(refusal.kind, f"arbiter listener: refused {self.peer}: {refusal.reason}")
        self.close_with(refusal.code, refusal.reason, req_id)

    def close_with(self, code: str, reason: str, req_id: int = 0, abort: bool = False) -> None:
        t = self.transport
        if t is not None and not self.closed:
            t.write(error_frame(req_id, code, reason))
            if abort and t.get_write_buffer_size():
                t.abort()
            else:
                t.close()
        self.closed = True

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


# -- standalone -------------------------------------------------------------------------


async def run_arbiter(settings: ArbiterSettings) -> None:
    arbiter = Arbiter.from_settings(settings)
    await serve_until_signalled(arbiter.start, arbiter.stop)
    log.info("arbiter stopped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m engine arbiter", description="run an arbiter on its own (guide §3.1.4)"
    )
    p.add_argument("--listen", required=True, help=f"HOST:PORT (default port {DEFAULT_PORT})")
    p.add_argument("--cert", help="TLS: the arbiter's certificate (with --key and --ca)")
    p.add_argument("--key", help="TLS: its private key")
    p.add_argument("--ca", help="TLS: members present a certificate from this CA")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s arbiter %(levelname)s %(name)s: %(message)s",
    )
    table = {"listen": args.listen}
    table.update({k: v for k in ("cert", "key", "ca") if (v := getattr(args, k))})
    try:
        settings = parse_arbiter_setting(table, Path.cwd(), "arbiter")
        asyncio.run(run_arbiter(settings))
    except (ArbiterConfigError, ValueError) as exc:
        print(f"arbiter configuration error: {exc}", file=sys.stderr)
        return 2
    except tls.TLSError as exc:
        print(f"arbiter TLS error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"arbiter cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
