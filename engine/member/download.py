"""Database download from another member (guide §4.8.3).

The member that needs a copy asks sources in the order backup -> primary -> asyncs (skipping
itself and read-write reporting asyncs, whose FailoverDB flag is cleared), moving to the next
one when a source is unreachable, refuses, or goes away mid-download (the partial copy is
thrown away).

A source answers `export_snapshot` on its superserver port with a one-time port and token,
and streams a snapshot of the database's file there: LMDB writes it from one read
transaction, so it is the database exactly as of one journal position P, which it carries
(the applied position is stored in the database).  Sources go on applying journal meanwhile.
The bytes go from the snapshot writer through a pipe to the socket and from the socket to
the new file with splice(2) (no copy through Python), or through TLS when the mirror requires
it; a trailer with the byte count tells a whole copy from a cut one.  The whole copy is
fsync'ed, its file and the directories naming it, before the catalog records it (needs_download
cleared, the catalog's rename fsync'ed too): a start after a crash, even of the OS, finds
either a durable copy or one that still Needs Download, which it downloads again from scratch
(engine/storage/durable.py).  The copy is then caught up from P automatically (Downloading
-> Catchup Running -> Dejournaling).  With no source able to supply it, the database is Needs
Download with the reasons and is tried again after 1 s, doubling to 15 s, until a source can
(guide §4.8.3); `download_database` tries at once.
While it downloads, its status row shows the bytes received of the size offered.

The source's side (copy_info, export_snapshot, the TLS check of who receives, the rate cap)
is engine/replication/snapshot_source.py.  It checks who asks before it offers anything: on a
TLS mirror a member's certificate, so a member asks on the source's mirror private address,
over mutual TLS with its own certificate (`_ask_offer`), and connects to the host the offer
names; on a plain mirror it asks on the superserver, from a member's address.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.client.app import AsyncClient, EngineError, ProtocolError, error_from_reply
from engine.member import app_auth
from engine.member.db_steps import catch_up_one, journal_covers
from engine.member.node import peer_tls
from engine.member.requests import ASKING
from engine.replication.snapshot_source import (
    CHUNK,
    READ_TIMEOUT_S,
    TRAILER,
    TRAILER_MAGIC,
    Requester,
    blocking_with_timeouts,
    copy_info,
    export_snapshot,
    make_pipe,
)
from engine.storage.databases import DbEntry, Refused, check_name, db_status
from engine.storage.durable import sync_copy
from engine.storage.store import Store
from engine.wire import tls
from engine.wire.protocol import FrameError, MsgType, encode_frame, read_frame, unpack

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.download")
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 15.0


@dataclass
class Progress:
    """One download in flight: `received_bytes` is set by the receiving thread once per
    chunk (up to CHUNK bytes) and only read elsewhere; `total_bytes` is the size offered."""

    received_bytes: int
    total_bytes: int
    source: str


@dataclass
class Downloads:
    """An instance's downloads: progress of those in flight, and the wake-up of those
    waiting to try again."""

    progress: dict[str, Progress] = field(default_factory=dict)
    waiting: dict[str, asyncio.Event] = field(default_factory=dict)


# per instance (one process can run several), without a field on Instance for it
_DOWNLOADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def downloads_of(membership: Membership) -> Downloads:
    found = _DOWNLOADS.get(membership)
    if found is None:
        found = _DOWNLOADS[membership] = Downloads()
    return found


def download_progress(membership: Membership, name: str) -> dict | None:
    """`{received_bytes, total_bytes, source}` of the database's download in flight, or None."""
    found = _DOWNLOADS.get(membership)
    progress = found.progress.get(name) if found is not None else None
    return None if progress is None else asdict(progress)


# -- destination side ---------------------------------------------------------------------


def may_hold_copy(member) -> bool:
    """Whether a member's copy may be downloaded at all: authorized, not a read-write
    reporting async (FailoverDB cleared) and not dejournaling a filtered part of the records."""
    return member.authorized and member.type != "rw_reporting" and not member.dejournal_filter


def _sources(membership: Membership) -> list:
    cfg, me = membership.cfg, membership.member.name
    primary = membership.primary_member()
    backups = [m for m in cfg.failover_members if m.name not in (primary.name, me)]
    asyncs = [m for m in cfg.members if not m.is_failover and may_hold_copy(m)]
    return [m for m in [*backups, primary, *asyncs] if m.name != me]


def download_database(membership: Membership, arg):
    """Start downloading a database the primary has (retry-safe)."""
    name = check_name("download_database", arg.get("name") if isinstance(arg, dict) else arg)
    if membership.role == "primary":
        raise Refused("download_database", name, "not available on the primary")
    entry = membership.catalog.get(name)
    if entry is not None and name in membership.downloading:
        return {"database": name, "status": "Downloading", "already": True}
    if entry is not None and retry_now(membership, name):
        return {"database": name, "status": "Downloading", "already": False}
    if entry is not None and not entry.needs_download:
        return {"database": name, "status": db_status(membership, entry), "already": True}
    known = (membership.primary_db_info or {}).get(name)
    if known is None:
        raise Refused(
            "download_database", name, "the primary has no mirrored database of that name"
        )
    if entry is None and membership.db_path(name).exists():
        raise Refused(
            "download_database", name, "a local database of that name exists; remove it first"
        )
    if entry is None:
        entry = DbEntry(name, known["incarnation"], since=known["since"], mounted=True)
        entry.caught_up = entry.activated = False
        entry.created = known["created"]
        entry.failover_db = membership.member.type != "rw_reporting"
        membership.catalog.entries[name] = entry
    entry.needs_download = True
    membership.catalog.save()
    membership.downloading.add(name)
    membership.run_in_background(download_in_background(membership, entry))
    return {"database": name, "status": "Downloading", "already": False}


async def _ask_offer(membership: Membership, source, arg: dict) -> dict:
    """export_snapshot asked of `source`: on a TLS mirror on its mirror private address with
    this member's certificate (the source offers a snapshot only to a member's), else on its
    superserver."""
    ssl_ctx = membership.tls_client_context()
    if ssl_ctx is None or source.private is None:
        async with AsyncClient(
            [str(source.superserver)],
            follow_primary=False,
            timeout=10,
            retries=0,
            **peer_tls(membership),
        ) as c:
            return await c.admin("export_snapshot", arg)
    address = source.private
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address.host, address.port, ssl=ssl_ctx), 10
    )
    try:
        writer.write(encode_frame(MsgType.ADMIN, 1, ["export_snapshot", arg]))
        frame = await asyncio.wait_for(read_frame(reader), 10)
    except (FrameError, asyncio.IncompleteReadError) as exc:
        raise ProtocolError(f"export_snapshot on {address}: {exc}") from None
    finally:
        writer.close()
    body = unpack(frame.body)
    if frame.type == MsgType.ERROR:
        raise error_from_reply(body)
    if not isinstance(body, dict):
        raise ProtocolError(f"export_snapshot on {address}: unexpected answer {body!r}")
    return body


async def _copy_from(membership: Membership, entry: DbEntry, source) -> Store | None:
    offer = await _ask_offer(
        membership, source, {"name": entry.name, "mirror": membership.cfg.name}
    )
    if offer["incarnation"] != entry.incarnation:
        log.warning("%s on %s is another incarnation; skipped", entry.name, source.name)
        return None
    path = membership.db_path(entry.name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    ssl_ctx = membership.tls_client_context()
    address = (offer.get("host") or source.superserver.host, offer["port"])
    progress = Progress(0, offer["size"], source.name)
    in_flight = downloads_of(membership).progress
    in_flight[entry.name] = progress
    try:
        size = await asyncio.to_thread(
            _receive_snapshot, address, offer["token"], ssl_ctx, path / "data.mdb", progress
        )
        log.info("received %s from %s: %d bytes", entry.name, source.name, size)
        # durable before it counts as a copy (the catalog records it only after this):
        # no journal here could bring back pages an OS crash lost (engine/storage/durable.py)
        fsyncs = await asyncio.to_thread(sync_copy, path)
        log.info("copy of %s durable: %d fsyncs (data file and directories)", entry.name, fsyncs)
        return Store.open(str(path))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        if in_flight.get(entry.name) is progress:
            del in_flight[entry.name]


def _receive_snapshot(address, token: str, ssl_ctx, target: Path, progress: Progress) -> int:
    with socket.create_connection(address, timeout=READ_TIMEOUT_S) as raw:
        conn = ssl_ctx.wrap_socket(raw, server_hostname=address[0]) if ssl_ctx else raw
        conn.sendall(token.encode())
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            total = _receive_into(conn, fd, ssl_ctx is None, progress)
            if total < TRAILER.size:
                raise OSError("the source closed the snapshot early")
            tail = os.pread(fd, TRAILER.size, total - TRAILER.size)
            magic, size = TRAILER.unpack(tail)
            if magic != TRAILER_MAGIC or size != total - TRAILER.size:
                raise OSError(f"the snapshot was cut after {total} bytes")
            os.ftruncate(fd, size)  # fsync'ed by _copy_from, with the directories
        finally:
            os.close(fd)
    return size


def _receive_into(conn, fd: int, plain: bool, progress: Progress) -> int:
    total = 0
    if plain:
        blocking_with_timeouts(conn)
        r, w = make_pipe()
        try:
            while n := os.splice(conn.fileno(), w, CHUNK):
                while n:
                    moved = os.splice(r, fd, n)
                    n -= moved
                    total += moved
                progress.received_bytes = total  # one store per chunk of up to CHUNK
        finally:
            os.close(r)
            os.close(w)
        return total
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := conn.recv_into(buf):
        done = 0
        while done < n:
            done += os.write(fd, view[done:n])
        total += n
        progress.received_bytes = total
    return total


def info_pos(store: Store) -> list | None:
    p = store.applied_position
    return None if p is None else [p.file_seq, p.offset]


async def fetch_copy(
    membership: Membership, entry: DbEntry, sources: list
) -> tuple[Store | None, list]:
    """The first whole copy the sources give, in their order, and what went wrong on the way."""
    errors = []
    started = time.monotonic()
    for source in sources:
        try:
            store = await _copy_from(membership, entry, source)
        except (EngineError, OSError, TimeoutError) as exc:
            errors.append(f"{source.name}: {exc or type(exc).__name__}")
            log.warning("download of %s from %s failed: %s", entry.name, source.name, exc)
            continue
        if store is not None:
            log.info(
                "downloaded %s from %s in %.2f s",
                entry.name,
                source.name,
                time.monotonic() - started,
            )
            return store, errors
    return None, errors


def _wanted(membership: Membership, entry: DbEntry) -> bool:
    return (
        membership.catalog.get(entry.name) is entry
        and entry.needs_download
        and not membership.stopping.is_set()
    )


async def until_copied(
    membership: Membership, entry: DbEntry, attempt, failed: str
) -> Store | None:
    """Run `attempt()` -> (store or None, errors) until it gives a whole copy (guide §4.8.3:
    the download happens once a source is available).  In between, the database is Needs
    Download showing `failed` and the errors, and waits RETRY_FIRST_S doubling to RETRY_MAX_S,
    or until retry_now.  None, with no more attempts, once the database is removed or needs
    no download any more, or the member stops."""
    name, delay, attempts = entry.name, RETRY_FIRST_S, 0
    try:
        while True:
            if not _wanted(membership, entry):  # removed (maybe made anew) while this one waited
                return None
            attempts += 1
            membership.downloading.add(name)
            store, errors = await attempt()
            _release(membership, entry)
            if not _wanted(membership, entry):
                if store is not None:
                    store.close()
                return None
            if store is not None:
                membership.db_errors.pop(name, None)
                if attempts > 1:
                    log.info("download of %s succeeded on attempt %d", name, attempts)
                return store
            why = f"{failed}: {'; '.join(errors)}"
            membership.db_errors[name] = f"{why} (next attempt in {delay:g} s)"
            log.warning("download of %s: %s; trying again in %g s", name, why, delay)
            woken = await _wait_to_retry(membership, entry, delay)
            if woken is None:
                return None
            delay = RETRY_FIRST_S if woken else min(delay * 2, RETRY_MAX_S)
    finally:
        _release(membership, entry)


def _release(membership: Membership, entry: DbEntry) -> None:
    """No longer downloading entry, unless its name now belongs to another entry, whose
    own download may be running."""
    if membership.catalog.get(entry.name) in (entry, None):
        membership.downloading.discard(entry.name)


async def _wait_to_retry(membership: Membership, entry: DbEntry, delay: float) -> bool | None:
    """Wait `delay` s or until retry_now: True if woken, False after the delay, None when
    the download is not wanted any more."""
    waiting = downloads_of(membership).waiting
    wake = waiting[entry.name] = asyncio.Event()
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(membership.stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        if waiting.get(entry.name) is wake:
            del waiting[entry.name]
    return wake.is_set() if _wanted(membership, entry) else None


def retry_now(membership: Membership, name: str) -> bool:
    """Make a download waiting to try again try at once (shown Downloading from now on);
    False when none is waiting."""
    wake = downloads_of(membership).waiting.get(name)
    if wake is None:
        return False
    membership.downloading.add(name)
    wake.set()
    return True


def follow_the_primary(membership: Membership, entry: DbEntry) -> str | None:
    """A copy set aside by a rebuild (engine/member/rebuild.py) is to become the primary's
    database of its name as it is now: one the primary made anew while this member was refused
    is taken in its new incarnation.  Why it cannot be taken (the primary has none of that
    name), or None."""
    if not (entry.rebuilt and entry.needs_download):
        return None
    known = membership.primary_db_info
    if known is None:  # its arrival wakes the download (dbops.primary_list_known)
        return "waiting for the primary's list of its databases"
    info = known.get(entry.name)
    if info is None:
        return (
            f"the primary has no mirrored database {entry.name} (removed while this member "
            "was refused?): remove it here"
        )
    if info["incarnation"] != entry.incarnation:
        entry.incarnation, entry.since = info["incarnation"], info["since"]
        entry.created = info.get("created", entry.created)
        entry.obsolete = False
        membership.catalog.save()
        log.warning("rebuild: %s is taken as the primary has made it anew", entry.name)
    return None


async def download_in_background(membership: Membership, entry: DbEntry) -> None:
    name = entry.name

    async def attempt():
        why_not = follow_the_primary(membership, entry)
        if why_not is not None:
            return None, [why_not]
        incarnation = entry.incarnation
        store, errors = await fetch_copy(membership, entry, _sources(membership))
        if store is not None and entry.incarnation != incarnation:
            store.close()  # the primary made it anew meanwhile: that copy is of the old one
            return None, [*errors, f"the primary made {name} anew while it downloaded"]
        return store, errors

    store = await until_copied(membership, entry, attempt, "no source could supply it")
    if store is None:
        return
    try:
        journal_covers(membership, "download_database", name, info_pos(store))
    except Refused as exc:
        store.close()
        membership.db_errors[name] = exc.message
        return
    entry.needs_download = entry.rebuilt = False
    entry.activated = True
    membership.stores[name] = store
    membership.catching_up[name] = 0
    membership.catalog.save()
    started = time.monotonic()
    await catch_up_one(membership, entry)
    log.info("%s caught up after its download in %.2f s", name, time.monotonic() - started)


def requester() -> Requester | None:
    """Who sent the admin request being handled (engine/member/requests.py ASKING)."""
    conn = ASKING.get()
    if conn is None:
        return None
    transport = conn.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return Requester(
        peer=conn.peer,
        host=str(peername[0]) if peername else "?",
        listener=conn.listener,
        user=conn.user,
        admin=conn.user == app_auth.ADMIN_USER,
        cert=tls.peer_certificate(ssl_object),
    )


def export_snapshot_asked(membership: Membership, arg):
    """export_snapshot for the connection that asks (checked before anything is bound)."""
    return export_snapshot(membership, arg, requester())


ACTIONS = {
    "copy_info": copy_info,
    "export_snapshot": export_snapshot_asked,
    "download_database": download_database,
}
