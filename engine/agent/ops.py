"""Member and database operations through the agent (guide §4.8, §4.10.5, §5.8, §5.9, §5.11.5).

Each route validates its input, sends one ADMIN request (engine/PROTOCOL.md, "Admin
actions") to the local instance over its superserver, and answers what the instance
answered.  The agent reads from the instance's data directory both its admin token and, when
its superserver speaks TLS, how to reach it (engine/wire/tls.py superserver_client_context:
the instance's own certificate, which it always accepts; the agent's own may be a server
certificate only, engine/cluster/hosts.py).  Mapping of failures:

    bad path parameter or body             400 bad_request (nothing is sent)
    a body not sent as application/json    415 unsupported_media_type (engine/agent/body.py)
    unknown instance                       404 not_found
    the instance refuses (Refused, or a    409 with the instance's code and its reason
      request that its state does not allow)
    the instance is down, hung or stopping 503 instance_unavailable
    its TLS files cannot be used           502 instance_tls

The routes (under /v1/instances/{name}/databases, /mirroring and /dejournaling) and their
bodies and answers are listed in engine/agent_api.yaml.

Every operation is safe to retry: the instance answers `already: true` when the state
asked for already holds.  Dejournaling and pause/resume answer the state afterwards as
the instance reports it in STATUS (the instance answers nil for those actions).
"""

from __future__ import annotations

import logging

from aiohttp import web

from engine.agent.auth import IDENTITY
from engine.agent.body import NO_BODY, read_json
from engine.agent.config import AgentConfig, InstanceEntry
from engine.agent.errors import CONFIG, api_error
from engine.client.app import AsyncClient, ConnectionLost, EngineError, NoPrimaryFound, Unavailable
from engine.member.mirror_file import check_mirror_name
from engine.storage.databases import Refused as NameRefused
from engine.storage.databases import check_name
from engine.wire.admin_token import read_token
from engine.wire.protocol import ErrorCode, pack
from engine.wire.tls import TLSError, superserver_client_context

log = logging.getLogger("engine.agent.server")

# an admin request may wait for journal durability or for a data channel to close; a
# catch-up with wait=true runs until the database is caught up
ADMIN_TIMEOUT_S = 30.0
CATCHUP_WAIT_TIMEOUT_S = 300.0
_UNAVAILABLE = (NoPrimaryFound, ConnectionLost, Unavailable, TimeoutError, OSError)


def instance_entry(request: web.Request) -> InstanceEntry:
    """The configured instance named in the path, or 404."""
    cfg: AgentConfig = request.app[CONFIG]
    name = request.match_info["name"]
    entry = cfg.instance(name)
    if entry is None:
        known = ", ".join(e.name for e in cfg.instances) or "none"
        raise api_error(404, "not_found", f"no instance named {name!r} on this host ({known})")
    return entry


def _db_name(value, where: str) -> str:
    """The database name as the instance will take it (upper case), or 400: the same
    rule as the instance's, checked here so a bad name never reaches it."""
    try:
        return check_name("database", value)
    except NameRefused as exc:
        raise api_error(400, "bad_request", f"{where}: {exc.extra['reason']}") from None


async def read_body(request: web.Request, allowed: dict[str, type]) -> dict:
    """The JSON object body (no body: {}), with only `allowed` keys of those types; what
    the body must be to be read at all is engine/agent/body.py's (415 / 400)."""
    body = await read_json(request)
    if body is NO_BODY:
        return {}
    if not isinstance(body, dict):
        raise api_error(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        shown = ", ".join(repr(k[:40]) for k in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise api_error(400, "bad_request", f"unknown fields {shown}{more} (allowed: {known})")
    for key, kind in allowed.items():
        if key in body:
            check_kind(key, body[key], kind)
    return body


_KINDS = {
    bool: "a boolean",
    str: "a string",
    list: "a list",
    int: "an integer",
    dict: "a JSON object",
}


def check_kind(key: str, value, kind: type) -> None:
    """400 unless `value` is a `kind`; JSON true and false are not integers here."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise api_error(400, "bad_request", f"{key!r} must be {_KINDS[kind]}")


# what an agent without mutual TLS may still ask of an instance in a TLS mirror
READING_ACTIONS = frozenset({"mirror_info", "verify_tls", "digest", "positions"})


async def _ask(
    request: web.Request,
    entry: InstanceEntry,
    call,
    timeout: float = ADMIN_TIMEOUT_S,
    acting: bool = False,
):
    """call(client) on a connection to the instance, its failures mapped to API errors.
    Connecting (and the instance's INFO answer) gets the probe timeout, so a hung instance
    is a prompt 503; only the operation itself may take `timeout`."""
    probe_s = request.app[CONFIG].probe_timeout_s
    try:
        ssl = superserver_client_context(entry.data_dir)
    except TLSError as exc:
        raise api_error(
            502, "instance_tls", f"instance {entry.name}: its superserver's TLS: {exc}"
        ) from None
    client = AsyncClient(
        [str(entry.superserver)],
        follow_primary=False,
        timeout=probe_s,
        retries=0,
        admin_token=read_token(entry.data_dir),  # the agent may read its instances' files
        ssl=ssl,
    )
    try:
        await client.connect()
        tls_mirror = (client.member_info or {}).get("tls")
        if acting and tls_mirror and not request.app[CONFIG].mutual_tls:
            # guide §4.5: a TLS mirror is driven over mutual TLS only
            raise api_error(
                403,
                "tls_required",
                f"instance {entry.name} is in a mirror that requires TLS: this agent must be "
                "configured with mutual TLS (cert, key, ca) to act on it",
            )
        client.timeout = timeout
        return await call(client)
    except _UNAVAILABLE as exc:
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        # connect() words it for finding a primary; here there is one address
        reason = reason.removeprefix("no primary found: ").removeprefix(f"{entry.superserver}: ")
        if reason.strip() in ("", "TimeoutError"):  # a timeout has no message
            reason = "no answer in time (hung?)"
        raise api_error(
            503,
            "instance_unavailable",
            f"instance {entry.name} at {entry.superserver} is not answering: {reason}",
        ) from None
    except EngineError as exc:
        if exc.code == ErrorCode.UNAUTHORIZED:  # our configuration, not the caller's request
            raise api_error(
                502,
                "instance_unauthorized",
                f"instance {entry.name} refused the agent: {exc.message} "
                f"(the agent reads it from data_dir {entry.data_dir})",
            ) from None
        # Refused, and requests the instance's state does not allow (a dejournaling
        # action on the primary, a database not mirrored there): the instance's reason
        rule = exc.details.get("rule")
        raise api_error(409, exc.code or ErrorCode.REFUSED, exc.message, rule=rule) from None
    finally:
        await client.close()


async def ask_admin(
    request: web.Request,
    entry: InstanceEntry,
    action: str,
    arg=None,
    timeout: float = ADMIN_TIMEOUT_S,
):
    mirror = chosen_mirror(request)
    if mirror is not None:  # the instance picks that membership (engine/member/instance.py)
        arg = {**(arg if isinstance(arg, dict) else {} if arg is None else {"name": arg})}
        arg["mirror"] = mirror
    _sendable(action, arg)
    acting = action not in READING_ACTIONS
    return await _ask(request, entry, lambda c: c.admin(action, arg), timeout, acting=acting)


def _sendable(action: str, arg) -> None:
    """400 for an argument the instance could never be sent (MessagePack refuses it).  The
    body checks already keep such values out (engine/agent/body.py); this is the last line
    before the wire, so a check missed is a refusal, not a 500 after the connection."""
    try:
        pack([action, arg])
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError) as exc:
        raise api_error(
            400, "bad_request", f"the request cannot be sent to the instance: {exc}"
        ) from None


async def instance_status(request: web.Request, entry: InstanceEntry) -> dict:
    """The instance's STATUS (of the mirror ?mirror= names), failures as API errors."""
    mirror = chosen_mirror(request)
    return await _ask(request, entry, lambda c: c.status(mirror))


def chosen_mirror(request: web.Request) -> str | None:
    """The mirror named by ?mirror= (a reporting async may belong to several; the
    instance refuses what it cannot place otherwise), checked, or None."""
    mirror = request.query.get("mirror")
    if mirror is None:
        return None
    try:
        return check_mirror_name("mirror", mirror)
    except NameRefused as exc:
        raise api_error(400, "bad_request", exc.message) from None


def operation_answer(request: web.Request, entry: InstanceEntry, op: str, result) -> web.Response:
    log.info("%s on instance %s requested by %s", op, entry.name, request[IDENTITY])
    body = {"instance": entry.name, "operation": op}
    body.update(result if isinstance(result, dict) else {})
    return web.json_response(body)


# -- routes -----------------------------------------------------------------------------


async def list_databases(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    st = await instance_status(request, entry)
    body = {
        "instance": entry.name,
        "member": st.get("member"),
        "status": st.get("status"),
        "journal_transfer": st.get("journal_transfer"),
        "dejournaling": st.get("dejournaling"),
        "databases": st.get("databases", []),
        "started_at": st.get("started_at"),
    }
    if "missing_mirrored_databases" in st:
        body["missing_mirrored_databases"] = st["missing_mirrored_databases"]
    return web.json_response(body)


async def create_database(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    body = await read_body(request, {"name": str, "mode": str, "mirrored": bool})
    if "name" not in body:
        raise api_error(400, "bad_request", "'name' (the database name) is required")
    name = _db_name(body["name"], "name")
    mode = body.get("mode", "create")
    if mode not in ("create", "add"):
        raise api_error(400, "bad_request", "'mode' must be 'create' or 'add'")
    if mode == "add":
        if "mirrored" in body:
            raise api_error(400, "bad_request", "'mirrored' only applies to mode 'create'")
        result = await ask_admin(request, entry, "add_database", name)
        return operation_answer(request, entry, "add", result)
    arg = {"name": name, "mirrored": body.get("mirrored", True)}
    return operation_answer(
        request, entry, "create", await ask_admin(request, entry, "create_database", arg)
    )


def _db_op(action: str, op: str, options: dict[str, type] | None = None):
    """A POST /databases/{db}/<op> route running one admin action."""

    async def handler(request: web.Request) -> web.Response:
        entry = instance_entry(request)
        name = _db_name(request.match_info["db"], "database")
        body = await read_body(request, options or {})
        arg = {"name": name, **body} if body else name
        return operation_answer(request, entry, op, await ask_admin(request, entry, action, arg))

    handler.__name__ = action
    return handler


async def _catchup(request: web.Request, entry: InstanceEntry, names: list[str], wait: bool):
    timeout = CATCHUP_WAIT_TIMEOUT_S if wait else ADMIN_TIMEOUT_S
    result = await ask_admin(request, entry, "catchup", {"names": names, "wait": wait}, timeout)
    return operation_answer(request, entry, "catchup", result)


async def catchup_one(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    name = _db_name(request.match_info["db"], "database")
    body = await read_body(request, {"wait": bool})
    return await _catchup(request, entry, [name], body.get("wait", False))


async def catchup_many(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    body = await read_body(request, {"databases": list, "wait": bool})
    names = body.get("databases")
    if not names:
        raise api_error(400, "bad_request", "'databases' must be a non-empty list of names")
    checked = [_db_name(n, f"databases[{i}]") for i, n in enumerate(names)]
    if len(set(checked)) != len(checked):
        raise api_error(400, "bad_request", "'databases' names a database more than once")
    return await _catchup(request, entry, checked, body.get("wait", False))


async def clear_failover_many(request: web.Request) -> web.Response:
    """guide §4.10.3 "Clear FailoverDB Flags": several databases, or all; one result each."""
    entry = instance_entry(request)
    body = await read_body(request, {"databases": list, "all": bool})
    if ("databases" in body) == ("all" in body) or body.get("all") is False:
        raise api_error(400, "bad_request", "give either 'databases' (names) or 'all': true")
    if "all" in body:
        arg = {"all": True}
    else:
        names = body["databases"]
        if not names:
            raise api_error(400, "bad_request", "'databases' must be a non-empty list of names")
        checked = [_db_name(n, f"databases[{i}]") for i, n in enumerate(names)]
        if len(set(checked)) != len(checked):
            raise api_error(400, "bad_request", "'databases' names a database more than once")
        arg = {"names": checked}
    result = await ask_admin(request, entry, "clear_failover_db", arg)
    return operation_answer(request, entry, "clear-failover-db", result)


def member_op(action: str, op: str):
    """A route handler asking the instance for `action` (no body), answered as operation `op`."""

    async def handler(request: web.Request) -> web.Response:
        entry = instance_entry(request)
        await read_body(request, {})
        return operation_answer(request, entry, op, await ask_admin(request, entry, action))

    handler.__name__ = action
    return handler


def _dejournal_op(action: str, op: str, per_database: bool):
    """Dejournaling actions answer nil: the answer is the state afterwards (STATUS)."""

    async def handler(request: web.Request) -> web.Response:
        entry = instance_entry(request)
        name = _db_name(request.match_info["db"], "database") if per_database else None
        await read_body(request, {})
        await ask_admin(request, entry, action, name)
        st = await instance_status(request, entry)
        result = {"dejournaling": st.get("dejournaling")}
        if name is not None:
            rows = {r["name"]: r for r in st.get("databases", [])}
            result.update(database=name, status=rows.get(name, {}).get("status"))
        return operation_answer(request, entry, op, result)

    handler.__name__ = action
    return handler


DB = "/v1/instances/{name}/databases/{db}"
OPS_ROUTES = [
    ("GET", "/v1/instances/{name}/databases", list_databases),
    ("POST", "/v1/instances/{name}/databases", create_database),
    ("POST", "/v1/instances/{name}/databases/catchup", catchup_many),
    ("POST", "/v1/instances/{name}/databases/clear-failover-db", clear_failover_many),
    ("POST", f"{DB}/download", _db_op("download_database", "download")),
    ("POST", f"{DB}/activate", _db_op("activate", "activate")),
    ("POST", f"{DB}/catchup", catchup_one),
    ("POST", f"{DB}/mount", _db_op("mount", "mount", {"catchup": bool})),
    ("POST", f"{DB}/dismount", _db_op("dismount", "dismount")),
    ("POST", f"{DB}/remove", _db_op("remove_database", "remove")),
    ("POST", f"{DB}/clear-failover-db", _db_op("clear_failover_db", "clear-failover-db")),
    ("POST", f"{DB}/pause", _dejournal_op("pause_database", "pause", True)),
    ("POST", f"{DB}/resume", _dejournal_op("resume_database", "resume", True)),
    ("POST", "/v1/instances/{name}/mirroring/stop", member_op("stop_mirroring", "stop-mirroring")),
    (
        "POST",
        "/v1/instances/{name}/mirroring/start",
        member_op("start_mirroring", "start-mirroring"),
    ),
    (
        "POST",
        "/v1/instances/{name}/dejournaling/stop",
        _dejournal_op("dejournal_stop", "stop-dejournaling", False),
    ),
    (
        "POST",
        "/v1/instances/{name}/dejournaling/start",
        _dejournal_op("dejournal_start", "start-dejournaling", False),
    ),
]
