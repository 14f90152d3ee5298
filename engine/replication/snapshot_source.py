"""The source side of a database download (guide §4.8.3): what a member holds of a database
(`copy_info`), and the snapshot it streams to the member that downloads it
(`export_snapshot`).

`export_snapshot` answers on the superserver port with a one-time port and token and streams
the database's file there as LMDB writes it from one read transaction: the database exactly
as of one journal position, which it carries.  The bytes go from the snapshot writer through
a pipe to the socket with splice(2), or through TLS when the mirror requires it, then a
trailer with the byte count.  On a TLS mirror the snapshot goes only to a certificate whose
DN is an authorized member's.  ENGINE_SNAPSHOT_MAX_MB_S caps what a source sends per
snapshot (MB/s; unset: no cap).  The receiving side is engine/member/download.py.

Who may ask is checked before anything is bound (`check_requester`): on a TLS mirror a
member's certificate (the request comes on the mirror private address, over mutual TLS), on
a plain mirror a connection authenticated on the superserver or one from a member's address;
the instance's admin token on both.  One snapshot listener per requester at a time, at most
ENGINE_SNAPSHOT_MAX_EXPORTS (4) exports at once in a process, a listener nobody uses within
ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S (10 s) is closed, and a connection from another address than
the requester's is refused without ending the offer (docs/hardening.md, "Data channel and
snapshot port limits").
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import ipaddress
import logging
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.x509.oid import NameOID

from engine.storage.databases import DbEntry, Refused, check_name, db_status
from engine.storage.store import Store
from engine.wire import tls
from engine.wire.limits import RateLimitedLog
from engine.wire.protocol import ErrorCode, RequestError

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.download")
CHUNK = 1 << 20
TRAILER = struct.Struct(">8sQ")  # magic, bytes of snapshot before it
TRAILER_MAGIC = b"MPSNAPOK"
ACCEPT_TIMEOUT_S = 10.0  # ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S: an offer nobody takes expires
MAX_EXPORTS = 4  # ENGINE_SNAPSHOT_MAX_EXPORTS: snapshots offered or streaming at once
TOKEN_TIMEOUT_S = 5.0  # the requester's connection sends the token at once
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
READ_TIMEOUT_S = 30.0
HOST_CACHE_S = 60.0  # how long a member's host name is taken as resolved
# refusals on the snapshot port and of export_snapshot: a burst of 20 per kind, then 1/s
refusals = RateLimitedLog(log)
_refusals_lock = threading.Lock()


def _setting(name: str, default: float, low: float, high: float) -> float:
    """An environment setting of the snapshot port (default when unset or out of range)."""
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    if not low <= value <= high:
        log.warning("%s=%r is out of range (%g - %g): %g is used", name, raw, low, high, default)
        value = default
    return value


def accept_timeout_s() -> float:
    return _setting("ENGINE_SNAPSHOT_ACCEPT_TIMEOUT_S", ACCEPT_TIMEOUT_S, 0.1, 3600)


def max_exports() -> int:
    return int(_setting("ENGINE_SNAPSHOT_MAX_EXPORTS", MAX_EXPORTS, 1, 1000))


def refuse_line(kind: str, message: str) -> None:
    """A refusal of the snapshot port, rate-limited per kind (threads log here too)."""
    with _refusals_lock:
        refusals.emit(kind, logging.WARNING, message, f"snapshot port: {kind}")


@dataclass(frozen=True)
class Requester:
    """Who sent an export_snapshot: the connection it came on (engine/member/download.py)."""

    peer: str  # host:port as seen here
    host: str  # its address
    listener: str  # "superserver" or "private"
    user: str | None = None  # authenticated on the superserver as (a credential, "admin")
    admin: bool = False  # with this instance's admin token
    cert: Any = None  # the TLS client certificate of the connection (x509.Certificate)


@dataclass
class Exports:
    """The snapshots a process offers or streams now, and the requesters with a listener."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    listening: set = field(default_factory=set)


EXPORTS = Exports()
_hosts: dict[str, tuple[float, set[str]]] = {}


def _ip(host: str) -> str:
    """One spelling of an address (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped or addr)


def _addresses_of(host: str) -> set[str]:
    """The addresses a member's host stands for (a name resolved, cached HOST_CACHE_S)."""
    try:
        return {_ip(str(ipaddress.ip_address(host)))}
    except ValueError:
        pass
    now = time.monotonic()
    cached = _hosts.get(host)
    if cached is not None and now - cached[0] < HOST_CACHE_S:
        return cached[1]
    try:
        found = {_ip(str(info[4][0])) for info in socket.getaddrinfo(host, None)}
    except OSError:
        found = set()
    _hosts[host] = (now, found)
    return found


def member_addresses(cfg) -> set[str]:
    """The addresses of the mirror's authorized members (superserver and private)."""
    out: set[str] = set()
    for member in cfg.members:
        if member.authorized:
            for addr in (member.superserver, member.private):
                if addr is not None:
                    out |= _addresses_of(addr.host)
    return out


def check_requester(membership: Membership, requester: Requester | None, name) -> str:
    """Who may be offered a snapshot, checked before anything is bound: the requester's key
    (one listener per key at a time), or Refused with the reason (logged, rate-limited)."""
    cfg = membership.cfg
    if requester is None:
        reason = "who asks is not known (not a request of a connection)"
    elif requester.admin:
        return f"admin@{_ip(requester.host)}"
    elif cfg.tls:
        refusal = unauthorized_peer(cfg, requester.cert)
        if refusal is None:
            return "member:" + requester.cert.subject.rfc4514_string()
        if requester.cert is None:
            reason = (
                f"mirror {cfg.name} requires TLS: a snapshot is offered only to a member's "
                "certificate, asked on the mirror private address"
            )
        else:
            reason = refusal
    elif requester.user is not None:
        return f"credential:{requester.user}"
    elif _ip(requester.host) in member_addresses(cfg):
        return f"host:{_ip(requester.host)}"
    else:
        reason = (
            f"{requester.host} is not a member's address of mirror {cfg.name} and the "
            "connection is not authenticated"
        )
    peer = requester.peer if requester is not None else "?"
    refuse_line("export refused", f"export_snapshot of {name} from {peer} refused: {reason}")
    raise Refused("export_snapshot", str(name), reason)


def _source_store(membership: Membership, op: str, arg):
    name = check_name(op, arg.get("name") if isinstance(arg, dict) else arg)
    entry = membership.catalog.get(name)
    if entry is None:
        raise Refused(op, name, f"not a mirrored database on member {membership.member.name}")
    status = db_status(membership, entry)
    if not is_valid_copy(membership, status, entry):
        raise Refused(op, name, f"not a valid download source here (status {status})")
    return entry, membership.stores[name]


def is_valid_copy(membership: Membership, status: str, entry: DbEntry) -> bool:
    """Activated, whole and FailoverDB not cleared (guide §4.8.3). An Orphaned copy counts: it
    is what a primary that lost the database adopts back, but not one whose records are held
    back (paused, dejournaling stopped): it is behind what it received."""
    if status not in ("Normal", "Dejournaling", "Orphaned") or not entry.failover_db:
        return False
    runner = membership.dejournal
    if runner is None:
        return True
    held = runner.stopped or entry.name in runner.paused_databases()
    return not held and not runner.dj.held_records(entry.name)


def copy_info(membership: Membership, arg):
    """What this member holds of a database, for a primary looking for a valid copy."""
    name = check_name("copy_info", arg.get("name") if isinstance(arg, dict) else arg)
    entry = membership.catalog.get(name)
    if entry is None:
        return {"database": name, "valid": False, "status": None, "incarnation": None}
    status = db_status(membership, entry)
    return {
        "database": name,
        "valid": is_valid_copy(membership, status, entry) and name in membership.stores,
        "status": status,
        "incarnation": entry.incarnation,
    }


def export_snapshot(membership: Membership, arg, requester: Requester | None = None):
    """Offer a snapshot of a database on a one-time port (the download's source side), to a
    requester allowed one (checked first: nothing is bound for anyone else)."""
    raw_name = arg.get("name") if isinstance(arg, dict) else arg
    key = (membership.cfg.name, check_requester(membership, requester, raw_name))
    entry, store = _source_store(membership, "export_snapshot", arg)
    exports, most = EXPORTS, max_exports()
    with exports.lock:
        if key in exports.listening:
            busy = "already has a snapshot offer waiting for its connection here"
        elif exports.active >= most:
            busy = (
                f"{exports.active} snapshots offered or streaming here [limit max_exports={most}]"
            )
        else:
            busy = None
            exports.active += 1
            exports.listening.add(key)
    if busy is not None:
        refuse_line(
            "export busy", f"export_snapshot of {entry.name} from {requester.peer}: refused: {busy}"
        )
        raise RequestError(ErrorCode.UNAVAILABLE, f"export_snapshot {entry.name}: {busy}")
    done = _releaser(exports, key)
    try:
        # on the mirror private address when asked there (a TLS mirror), else the superserver's
        if requester.listener == "private" and membership.member.private is not None:
            host = membership.member.private.host
        else:
            node = membership.node
            host = (node.superserver if node else membership.member.superserver).host
        listener = socket.create_server((host, 0))
        wait = accept_timeout_s()
        token = secrets.token_hex(16)
        ssl_ctx = membership.tls_server_context() if membership.cfg.tls else None
        offer = _Offer(entry.name, listener, token, ssl_ctx, _ip(requester.host), wait, done)
        threading.Thread(
            target=_serve_snapshot,
            args=(membership, store, offer),
            name=f"snapshot-{entry.name}",
            daemon=True,
        ).start()
    except BaseException:
        done(listening=True, active=True)
        raise
    return {
        "database": entry.name,
        "incarnation": entry.incarnation,
        "host": host,
        "port": listener.getsockname()[1],
        "token": token,
        "size": store.size_bytes(),
        "expires_s": wait,
    }


def _releaser(exports: Exports, key):
    released = {"listening": False, "active": False}

    def done(listening: bool = False, active: bool = False) -> None:
        with exports.lock:
            if listening and not released["listening"]:
                released["listening"] = True
                exports.listening.discard(key)
            if active and not released["active"]:
                released["active"] = True
                exports.active -= 1

    return done


@dataclass
class _Offer:
    name: str
    listener: socket.socket
    token: str
    ssl_ctx: Any
    expected: str  # the requester's address: nobody else may connect
    wait: float
    done: Any  # _releaser's


def _serve_snapshot(membership: Membership, store: Store, offer: _Offer):
    found = None
    try:
        found = _await_requester(membership, offer)
    except Exception:  # whatever went wrong, the offer's places are given back
        log.exception("snapshot of %s: waiting for the requester", offer.name)
    finally:
        offer.listener.close()
        offer.done(listening=True)
    if found is None:
        offer.done(active=True)
        return
    conn, peer = found
    name = offer.name
    try:
        sent = _send_snapshot(store, conn, offer.ssl_ctx is None)
        conn.sendall(TRAILER.pack(TRAILER_MAGIC, sent))
        log.info("snapshot of %s sent to %s: %d bytes", name, peer, sent)
    except OSError as exc:
        log.warning("snapshot of %s to %s cut: %s", name, peer, exc)
    finally:
        conn.close()
        offer.done(active=True)


def _await_requester(membership: Membership, offer: _Offer):
    """The requester's connection to the offer (TLS and token checked), or None when the
    offer expired or the connection from its address failed the checks (the offer is one
    connection's: it ends).  Connections from any other address are refused, and waited past."""
    name, deadline = offer.name, time.monotonic() + offer.wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            refuse_line(
                "offer expired",
                f"snapshot of {name}: nobody came for it within {offer.wait:g} s: "
                f"port closed [limit accept_timeout_s={offer.wait:g}]",
            )
            return None
        offer.listener.settimeout(left)
        try:
            conn, addr = offer.listener.accept()
        except TimeoutError:
            continue
        except OSError as exc:
            log.warning("snapshot of %s: listener failed: %s", name, exc)
            return None
        peer = f"{addr[0]}:{addr[1]}"
        if _ip(addr[0]) != offer.expected:
            conn.close()
            refuse_line(
                "stranger",
                f"snapshot of {name}: refused {peer}: not the requester's address "
                f"({offer.expected})",
            )
            continue
        try:
            conn.settimeout(min(TOKEN_TIMEOUT_S, max(left, 0.1)))
            if offer.ssl_ctx is not None:
                conn = offer.ssl_ctx.wrap_socket(conn, server_side=True)
                refusal = unauthorized_peer(membership.cfg, tls.peer_certificate(conn))
                if refusal:
                    refuse_line("refused", f"snapshot of {name}: refused to {peer}: {refusal}")
                    conn.close()
                    return None
            if not hmac.compare_digest(_recv_exactly(conn, len(offer.token)), offer.token.encode()):
                refuse_line("wrong token", f"snapshot of {name}: wrong token from {peer}")
                conn.close()
                return None
        except OSError as exc:
            refuse_line("refused", f"snapshot of {name}: refused {peer}: {exc}")
            conn.close()
            return None
        conn.settimeout(READ_TIMEOUT_S)
        return conn, peer


def unauthorized_peer(cfg, cert) -> str | None:
    """Why the certificate a TLS peer presented is not an authorized member's of the mirror
    (None when it is one's): a certificate signed by the CA is not enough."""
    if cert is None:
        return "no client certificate"
    dn = cert.subject.rfc4514_string()
    try:
        normal = tls.normalize_dn(dn)
    except tls.TLSError:
        normal = None  # an empty subject: nobody's
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    for member in cfg.members:
        if not member.authorized:
            continue
        if member.dn is not None and member.dn == normal:
            return None
        # a mirror from a configuration file records no DNs: there the CN names the member,
        # as the data channel checks (engine/replication/handshake.py)
        if member.dn is None and member.name in cns:
            return None
    return f"certificate {dn!r} is not an authorized member's of mirror {cfg.name}"


def blocking_with_timeouts(conn: socket.socket) -> None:
    """splice(2) needs a blocking descriptor (Python's timeouts make it non-blocking); the
    kernel's own send/receive timeouts keep a dead peer from holding it forever."""
    conn.settimeout(None)
    timeval = struct.pack("ll", int(READ_TIMEOUT_S), 0)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _send_snapshot(store: Store, conn: socket.socket, plain: bool) -> int:
    max_rate = float(os.environ.get("ENGINE_SNAPSHOT_MAX_MB_S") or 0) * 1e6
    r, w = make_pipe()
    errors: list[Exception] = []

    def write_snapshot():
        try:
            store.copy_to_fd(w)
        except Exception as exc:  # the reader gone (EPIPE) or the store closed
            errors.append(exc)

    writer = threading.Thread(target=write_snapshot, daemon=True)
    writer.start()
    sent, started = 0, time.monotonic()
    if plain:
        blocking_with_timeouts(conn)
    try:
        while True:
            if plain:
                n = os.splice(r, conn.fileno(), CHUNK)
            else:
                data = os.read(r, CHUNK)
                conn.sendall(data)
                n = len(data)
            if n == 0:
                break
            sent += n
            if max_rate:
                ahead = sent / max_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        os.close(r)
        writer.join()
    if errors:
        raise OSError(str(errors[0]))
    return sent


def make_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups per megabyte
        fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
    return r, w


def _recv_exactly(conn, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            raise OSError("connection closed early")
        buf += part
    return buf
