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
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import logging
import os
import secrets
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

from cryptography.x509.oid import NameOID

from engine.storage.databases import DbEntry, Refused, check_name, db_status
from engine.storage.store import Store
from engine.wire import tls

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.download")
CHUNK = 1 << 20
TRAILER = struct.Struct(">8sQ")  # magic, bytes of snapshot before it
TRAILER_MAGIC = b"MPSNAPOK"
ACCEPT_TIMEOUT_S = 10.0
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
READ_TIMEOUT_S = 30.0


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


def export_snapshot(membership: Membership, arg):
    """Offer a snapshot of a database on a one-time port (the download's source side)."""
    entry, store = _source_store(membership, "export_snapshot", arg)
    host = (membership.node.superserver if membership.node else membership.member.superserver).host
    listener = socket.create_server((host, 0))
    listener.settimeout(ACCEPT_TIMEOUT_S)
    token = secrets.token_hex(16)
    ssl_ctx = membership.tls_server_context() if membership.cfg.tls else None
    threading.Thread(
        target=_serve_snapshot,
        args=(membership, store, entry.name, listener, token, ssl_ctx),
        name=f"snapshot-{entry.name}",
        daemon=True,
    ).start()
    return {
        "database": entry.name,
        "incarnation": entry.incarnation,
        "port": listener.getsockname()[1],
        "token": token,
        "size": store.size_bytes(),
    }


def _serve_snapshot(
    membership: Membership, store: Store, name: str, listener: socket.socket, token: str, ssl_ctx
):
    try:
        conn, peer = listener.accept()
    except OSError as exc:
        log.warning("snapshot of %s: nobody came for it (%s)", name, exc)
        return
    finally:
        listener.close()
    try:
        conn.settimeout(READ_TIMEOUT_S)
        if ssl_ctx is not None:
            conn = ssl_ctx.wrap_socket(conn, server_side=True)
            refusal = unauthorized_peer(membership.cfg, tls.peer_certificate(conn))
            if refusal:
                log.warning("snapshot of %s: refused to %s: %s", name, peer, refusal)
                return
        if not hmac.compare_digest(_recv_exactly(conn, len(token)), token.encode()):
            log.warning("snapshot of %s: wrong token from %s", name, peer)
            return
        sent = _send_snapshot(store, conn, ssl_ctx is None)
        conn.sendall(TRAILER.pack(TRAILER_MAGIC, sent))
        log.info("snapshot of %s sent to %s: %d bytes", name, peer, sent)
    except OSError as exc:
        log.warning("snapshot of %s to %s cut: %s", name, peer, exc)
    finally:
        conn.close()


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
        # as the data channel checks (engine/replication/sender.py)
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
