"""Application requests of the superserver: argument checks, role checks, reads and writes.

Each handler takes (instance, connection, args) and returns either a plain value (the
reply is sent at once) or an asyncio.Future (the reply is sent, in order, when it
completes).  Errors are raised as RequestError or ValueError and become ERROR replies.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING, Any

from engine.member.admin_auth import check_admin, split_admin_args
from engine.storage.collation import validate_global_name
from engine.wire import trace
from engine.wire.protocol import ErrorCode, MsgType, RequestError

if TYPE_CHECKING:
    from engine.member.membership import Membership
    from engine.member.session import Connection

SET = "SET"
KILL = "KILL"
MAX_QUERY_ROWS = 100_000
# the connection whose admin request is being handled: an action that must know who asks
# (export_snapshot, engine/member/download.py) reads it; admin actions take no connection
ASKING: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("asking", default=None)


@contextlib.contextmanager
def asking(conn: Connection):
    """Handle an admin request of `conn` (see ASKING)."""
    token = ASKING.set(conn)
    try:
        yield
    finally:
        ASKING.reset(token)


def _arity(args: list, low: int, high: int, what: str) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low}-{high}"
        raise ValueError(f"{what} takes {want} arguments, got {len(args)}")


def check_subs(subs: Any) -> tuple:
    if subs is None:
        return ()
    if not isinstance(subs, (list, tuple)):
        raise ValueError(f"subscripts must be an array, not {type(subs).__name__}")
    for s in subs:
        if isinstance(s, bool) or not isinstance(s, (int, float, str)):
            raise ValueError(f"subscript {s!r} must be an integer, a float or a string")
        if isinstance(s, float) and s != s:
            raise ValueError("subscript NaN is not allowed")
    return tuple(subs)


def check_value(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, bytes)):
        raise ValueError(
            f"value must be a string, integer, float or bytes, not {type(value).__name__}"
        )
    return value


def node_args(membership: Membership, args: list, what: str, low: int, high: int):
    _arity(args, low, high, what)
    db = args[0]
    if not isinstance(db, str):
        raise ValueError("database name must be a string")
    store = membership.store_for(db)
    gname = validate_global_name(args[1])
    subs = check_subs(args[2] if len(args) > 2 else None)
    return db.upper(), store, gname, subs


def check_read(membership: Membership) -> None:
    """Backups serve no application reads (guide §3.1.1); asyncs and the primary do."""
    if membership.role == "backup":
        raise membership.not_primary_error("the backup does not serve application requests")


def check_write(membership: Membership, db=None) -> None:
    if membership.role == "primary" or membership.member.type == "rw_reporting":
        return
    if db is not None and membership.member.type == "ro_reporting" and isinstance(db, str):
        entry = membership.catalog.get(db)
        if entry is not None and not entry.failover_db:
            return  # FailoverDB cleared (guide §4.10.1): the copy takes local writes
    raise membership.not_primary_error("writes are accepted only by the primary")


def op_ping(membership: Membership, conn: Connection, args: list):
    return "pong"


def op_info(membership: Membership, conn: Connection, args: list):
    return membership.info()


def op_get(membership: Membership, conn: Connection, args: list):
    check_read(membership)
    db, store, gname, subs = node_args(membership, args, "get", 2, 3)
    if conn.txn is not None:
        found, value = _txn_lookup(conn.txn, db, gname, subs)
        if found:
            return value
    return store.get(gname, subs)


def _txn_lookup(txn: list, db: str, gname: str, subs: tuple):
    """A transaction reads its own uncommitted writes (newest first)."""
    for op, tdb, tg, tsubs, value in reversed(txn):
        if tdb != db or tg != gname:
            continue
        if op == SET and tsubs == subs:
            return True, value
        if op == KILL and subs[: len(tsubs)] == tsubs:
            return True, None
    return False, None


def op_order(membership: Membership, conn: Connection, args: list):
    check_read(membership)
    _arity(args, 3, 4, "order")
    db, store, gname, subs = node_args(membership, args[:3], "order", 3, 3)
    if not subs:
        raise ValueError("order needs at least one subscript (the level to move along)")
    direction = args[3] if len(args) > 3 else 1
    if direction not in (1, -1):
        raise ValueError("order direction must be 1 or -1")
    return store.order(gname, subs, direction)


def op_query(membership: Membership, conn: Connection, args: list):
    check_read(membership)
    _arity(args, 2, 7, "query")
    db, store, gname, prefix = node_args(membership, args[:3], "query", 2, 3)
    start = check_subs(args[3]) if len(args) > 3 and args[3] is not None else None
    stop = check_subs(args[4]) if len(args) > 4 and args[4] is not None else None
    reverse = bool(args[5]) if len(args) > 5 else False
    limit = args[6] if len(args) > 6 else None
    if limit is None:
        limit = MAX_QUERY_ROWS
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError("query limit must be a non-negative integer")
    limit = min(limit, MAX_QUERY_ROWS)
    rows = store.query(gname, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit)
    return [[list(s), v] for s, v in rows]


def op_set(membership: Membership, conn: Connection, args: list):
    check_write(membership, args[0] if args else None)
    db, store, gname, subs = node_args(membership, args[:3], "set", 3, 3)
    _arity(args, 4, 4, "set")
    value = check_value(args[3])
    return _write(membership, conn, (SET, db, gname, subs, value))


def op_kill(membership: Membership, conn: Connection, args: list):
    check_write(membership, args[0] if args else None)
    db, store, gname, subs = node_args(membership, args, "kill", 2, 3)
    return _write(membership, conn, (KILL, db, gname, subs, None))


def _write(membership: Membership, conn: Connection, op: tuple):
    if conn.txn is not None:
        conn.txn.append(op)
        return None
    if membership.role != "primary":
        membership.local_write([op])
        return None
    if trace.ENABLED:
        trace.mark("p.request")
    return membership.writer.submit([op])


def op_tstart(membership: Membership, conn: Connection, args: list):
    # a reporting copy whose FailoverDB flag is cleared takes local transactions too
    writable = [e.name for e in membership.catalog.entries.values() if not e.failover_db]
    check_write(membership, writable[0] if writable else None)
    if conn.txn is not None:
        raise RequestError(
            ErrorCode.TRANSACTION, "a transaction is already open on this connection"
        )
    conn.txn = []
    return None


def op_tcommit(membership: Membership, conn: Connection, args: list):
    if conn.txn is None:
        raise RequestError(ErrorCode.TRANSACTION, "no open transaction to commit")
    ops, conn.txn = conn.txn, None
    if not ops:
        return None
    for op in ops:
        check_write(membership, op[1])
    if membership.role != "primary":
        membership.local_write(ops)
        return None
    return membership.writer.submit(ops)


def op_trollback(membership: Membership, conn: Connection, args: list):
    if conn.txn is None:
        raise RequestError(ErrorCode.TRANSACTION, "no open transaction to roll back")
    conn.txn = None
    return None


def op_status(membership: Membership, conn: Connection, args: list):
    return membership.status()


def op_admin(membership: Membership, conn: Connection, args: list):
    action, arg, token = split_admin_args(args)
    check_admin(membership.admin_token, action, token)
    with asking(conn):
        return membership.admin(action, arg)


HANDLERS = {
    MsgType.PING: op_ping,
    MsgType.INFO: op_info,
    MsgType.GET: op_get,
    MsgType.SET: op_set,
    MsgType.KILL: op_kill,
    MsgType.ORDER: op_order,
    MsgType.QUERY: op_query,
    MsgType.TSTART: op_tstart,
    MsgType.TCOMMIT: op_tcommit,
    MsgType.TROLLBACK: op_trollback,
    MsgType.STATUS: op_status,
    MsgType.ADMIN: op_admin,
}
