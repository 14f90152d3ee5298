"""Mirror membership through the agent (guide §4.5, §4.7, §4.9, §4.10.2-§4.10.4, §5.2, §5.4).

Each route checks its input, sends one ADMIN request to the local instance
(engine/member/instance.py and engine/member/join.py: create, join, TLS files;
engine/member/membership_ops.py: the rest)
and answers what the instance answered, mapped as in engine/agent/ops.py: 400 for a
malformed path or body (nothing is sent), 404 for an unknown instance, 409 with the
instance's reason when it refuses (a limit of guide §3.1.2, an operation its role does not
allow, a non-member asked about its mirror), 503 when the instance is down, hung or
restarting.

Names, addresses, member types and setting values are checked here with the instance's
own rules (engine/rules.py, through engine/member/mirror_file.py), so a malformed one is a 400
that never reaches it; the limits and everything that depends on the mirror's state are the
instance's to refuse (engine/member/instance.py, engine/member/join.py,
engine/member/membership_ops.py).

A reporting async may belong to several mirrors (guide §3.1.2.2); the routes acting on one of
an instance's mirrors take `?mirror=NAME` to say which, and the instance refuses (409) an
action on an instance in several mirrors that does not.  TLS files are the instance's, for
all its mirrors.

The routes (under /v1/instances/{name}: /mirror..., /tls, /superserver), which of them take
`?mirror`, and their bodies and answers are listed in engine/agent_api.yaml.

Creating, joining, leaving, removing the configuration and a new superserver port restart
the instance process (same pid); the answer comes before the restart and says `restarting:
true` (the primary's first removal step restarts; its second does not).  A caller waits for
the new membership with AgentClient.wait_member.  After a new superserver port the agent
reaches the instance there; its configuration file still names the old port until edited.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

from aiohttp import web

from engine import rules
from engine.agent.auth import IDENTITY
from engine.agent.config import InstanceEntry
from engine.agent.errors import CONFIG, api_error
from engine.agent.ops import ask_admin, check_kind, chosen_mirror, instance_entry, read_body
from engine.member import mirror_file as ms
from engine.member.config import Address
from engine.storage.databases import Refused
from engine.wire import mirror_secret
from engine.wire.tls import TLSError, fingerprint_sha256, load_certificate

log = logging.getLogger("engine.agent.server")

# the JSON type of each mirror setting (its default's); its allowed values are the catalog's
SETTING_KINDS: dict[str, type] = {key: type(default) for key, default in rules.SETTINGS.items()}
MAX_MEMBER_NAME = rules.MAX_MEMBER_NAME


def _rule(check, *args):
    """One of the instance's input rules (engine/member/mirror_file.py), a refusal made a 400."""
    try:
        return check(*args)
    except Refused as exc:
        reason = exc.extra.get("reason", exc.message)
        raise api_error(400, "bad_request", reason, rule=exc.extra.get("rule")) from None


def _required(body: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in body]
    if missing:
        raise api_error(400, "bad_request", f"missing {', '.join(map(repr, missing))}")


def _settings(changes: dict, where: str) -> dict:
    unknown = sorted(set(changes) - set(SETTING_KINDS))
    if unknown:
        known = ", ".join(SETTING_KINDS)
        raise api_error(
            400, "bad_request", f"{where}: unknown settings {unknown} (settings: {known})"
        )
    for key, value in changes.items():
        check_kind(key, value, SETTING_KINDS[key])
    return _rule(ms.check_settings, "settings", changes)


def _member(request: web.Request) -> str:
    """The member named in the path.  Whether the mirror has it is the instance's to say."""
    name = request.match_info["member"]
    if not 0 < len(name) <= MAX_MEMBER_NAME or not name.isprintable():
        raise api_error(
            400, "bad_request", f"member name {name!r} must be 1-{MAX_MEMBER_NAME} characters"
        )
    return name


def _answer(
    request: web.Request, entry: InstanceEntry, op: str, result, detail: str = ""
) -> web.Response:
    log.info(
        "%s%s on instance %s requested by %s",
        op,
        f" {detail}" if detail else "",
        entry.name,
        request[IDENTITY],
    )
    body = {"instance": entry.name, "operation": op}
    body.update(result if isinstance(result, dict) else {})
    return web.json_response(body)


def own_pin(request: web.Request) -> str | None:
    """The SHA-256 of this agent's certificate, which a failover partner pins
    (engine/member/agent_confirm.py); None without https."""
    cfg = request.app[CONFIG]
    if not cfg.cert:
        return None
    try:
        return fingerprint_sha256(load_certificate(cfg.cert))
    except TLSError as exc:
        log.warning("this agent's certificate cannot be pinned by partners: %s", exc)
        return None


def _own_agent(request: web.Request, entry, body: dict) -> None:
    """The agent a partner asks about this instance: this one, unless the body names one."""
    if "agent" not in body:
        body["agent"] = own_url(request, entry)
        pin = own_pin(request)
        if pin is not None:
            body.setdefault("agent_cert_sha256", pin)


def own_url(request: web.Request, entry) -> str:
    """This agent as the instance's failover partner reaches it: on the instance's host, at
    the port this agent listens on, https when it has a certificate (docs/takeover.md)."""
    cfg = request.app[CONFIG]
    scheme = "https" if cfg.cert else "http"
    return f"{scheme}://{entry.superserver.host}:{cfg.listen.port}"


def _which(request: web.Request) -> dict:
    """{"mirror": NAME} when the query names one of the instance's mirrors, else {}."""
    mirror = chosen_mirror(request)
    return {} if mirror is None else {"mirror": mirror}


# -- the mirror -----------------------------------------------------------------------


async def mirror_info(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    info = await ask_admin(request, entry, "mirror_info", _which(request) or None)
    return web.json_response({"instance": entry.name, **info})


async def create_mirror(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    body = await read_body(
        request,
        {
            "mirror": str,
            "private": str,
            "member": str,
            "settings": dict,
            "secret": str,
            "agent": str,
            "agent_cert_sha256": str,
        },
    )
    _required(body, "mirror", "private")
    _own_agent(request, entry, body)
    _check_secret(body)
    _rule(ms.check_mirror_name, "create", body["mirror"])
    _rule(ms.check_address, "create", body["private"], "private")
    if "member" in body:
        _rule(ms.check_member_name, "create", body["member"], "failover")
    if "settings" in body:
        body["settings"] = _settings(body["settings"], "settings")
    result = await ask_admin(request, entry, "mirror_create", body)
    return _answer(request, entry, "create-mirror", {**result, "restarting": True}, body["mirror"])


async def join_mirror(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    allowed = {"mirror": str, "address": str, "type": str, "member": str, "private": str}
    extra = {"superserver": str, "secret": str, "agent": str, "agent_cert_sha256": str}
    body = await read_body(request, {**allowed, **extra})
    _required(body, "mirror", "address", "type")
    _own_agent(request, entry, body)
    _check_secret(body)
    _rule(ms.check_mirror_name, "join", body["mirror"])
    mtype = _rule(ms.check_type, "join", body["type"])
    for key in ("address", "private", "superserver"):
        if key in body:
            _rule(ms.check_address, "join", body[key], key)
    if "member" in body:
        _rule(ms.check_member_name, "join", body["member"], mtype)
    if mtype == "failover" and "private" not in body:
        raise api_error(
            400, "bad_request", "a failover member needs 'private' (its mirror address)"
        )
    result = await ask_admin(request, entry, "mirror_join", body)
    detail = f"{body['mirror']} as {mtype} via {body['address']}"
    return _answer(request, entry, "join-mirror", {**result, "restarting": True}, detail)


async def mirror_secret_of(request: web.Request) -> web.Response:
    """The primary's mirror secret, for a caller to hand to an instance that joins a mirror
    without TLS (engine/wire/mirror_secret.py).  Never logged; on a TLS host an acting
    caller's route, so only a client with mutual TLS reads it."""
    entry = instance_entry(request)
    await read_body(request, {})
    result = await ask_admin(request, entry, "mirror_secret", _which(request) or None)
    return _answer(request, entry, "mirror-secret", result)


async def set_arbiter(request: web.Request) -> web.Response:
    """The mirror's arbiter, set on the primary (guide §3.1.4; docs/failover.md): the failover
    members keep contact with it.  An empty string removes it."""
    entry = instance_entry(request)
    body = await read_body(request, {"arbiter": str})
    _required(body, "arbiter")
    if body["arbiter"]:
        _rule(ms.check_address, "set_arbiter", body["arbiter"], "arbiter")
    result = await ask_admin(request, entry, "set_arbiter", {**_which(request), **body})
    return _answer(request, entry, "set-arbiter", result, body["arbiter"] or "none")


def _check_secret(body: dict) -> None:
    if "secret" in body:
        try:
            mirror_secret.check_secret(body["secret"])
        except mirror_secret.SecretError as exc:
            raise api_error(400, "bad_request", f"secret: {exc}") from None


async def edit_mirror(request: web.Request) -> web.Response:
    """Turning TLS on is refused (409) while a reachable member has no valid TLS
    configuration, unless `skip_verify` (engine/member/tls_check.py)."""
    entry = instance_entry(request)
    body = await read_body(request, {**SETTING_KINDS, "name": str, "skip_verify": bool})
    if "name" in body:
        raise api_error(400, "bad_request", "the mirror name cannot be changed (guide §4.10.4)")
    skip = body.pop("skip_verify", False)
    if not body:
        raise api_error(400, "bad_request", f"give at least one of {', '.join(SETTING_KINDS)}")
    changes = _settings(body, "body")
    arg = {**changes, **_which(request), **({"skip_verify": True} if skip else {})}
    result = await ask_admin(request, entry, "edit_mirror", arg)
    return _answer(request, entry, "edit-mirror", result, ", ".join(sorted(changes)))


async def verify_tls(request: web.Request) -> web.Response:
    """Verify SSL (guide §4.10.4 step b): one row per member, unreachable ones included."""
    entry = instance_entry(request)
    await read_body(request, {})
    result = await ask_admin(request, entry, "verify_tls", _which(request) or None)
    failing = ", ".join(result.get("failing", [])) or "none failing"
    return _answer(request, entry, "verify-tls", result, f"({failing})")


async def leave_mirror(request: web.Request) -> web.Response:
    """Leave one mirror; the instance restarts as a non-member of it (guide §4.10.2-§4.10.4)."""
    entry = instance_entry(request)
    body = await read_body(request, {"remove_db_attribute": bool})
    arg = {"remove_db_attribute": body.get("remove_db_attribute", False)}
    result = await ask_admin(request, entry, "leave_mirror", {**arg, **_which(request)})
    detail = "removing" if arg["remove_db_attribute"] else "keeping"
    result = {**result, "restarting": True}
    return _answer(request, entry, "leave-mirror", result, f"({detail} the mirrored attribute)")


async def remove_mirror_config(request: web.Request) -> web.Response:
    """Remove the instance's mirror configuration (engine/member/remove.py): a backup or
    async restarts as a non-member; the primary, as the last member, in two steps."""
    entry = instance_entry(request)
    body = await read_body(request, {"remove_db_attribute": bool, "remove_tls": bool})
    arg = {k: body.get(k, False) for k in ("remove_db_attribute", "remove_tls")}
    result = await ask_admin(request, entry, "remove_mirror_config", {**arg, **_which(request)})
    detail = f"step {result['step']}" if "step" in result else "removed"
    return _answer(request, entry, "remove-mirror-config", result, f"({detail})")


# -- other members --------------------------------------------------------------------


def _member_op(action: str, op: str):
    """An action on another member named in the path (pending members, DN updates,
    removal)."""

    async def handler(request: web.Request) -> web.Response:
        entry = instance_entry(request)
        member = _member(request)
        await read_body(request, {})
        arg = {"member": member, **_which(request)}
        result = await ask_admin(request, entry, action, arg)
        return _answer(request, entry, op, result, member)

    handler.__name__ = action
    return handler


async def update_member_address(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    member = _member(request)
    body = await read_body(request, {"superserver": str, "private": str})
    if not body:
        raise api_error(400, "bad_request", "give 'superserver' and/or 'private'")
    for key, value in body.items():
        _rule(ms.check_address, "update", value, key)
    arg = {"member": member, **body, **_which(request)}
    result = await ask_admin(request, entry, "update_member_address", arg)
    return _answer(request, entry, "update-member-address", result, member)


# -- the instance's own TLS files -----------------------------------------------------


async def set_tls(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    body = await read_body(request, {"cert": str, "key": str, "ca": str})
    _required(body, "cert", "key", "ca")
    for key, value in body.items():
        # the instance resolves a relative path against its own working directory
        if not PurePosixPath(value).is_absolute() or "\0" in value:
            raise api_error(
                400, "bad_request", f"{key!r} must be an absolute path on the agent's host"
            )
    result = await ask_admin(request, entry, "set_tls", body)
    return _answer(request, entry, "set-tls", result, body["cert"])


async def reload_tls(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    await read_body(request, {})
    return _answer(request, entry, "reload-tls", await ask_admin(request, entry, "reload_tls"))


async def set_superserver_port(request: web.Request) -> web.Response:
    """The instance's own superserver port (guide §5.2 exception 1, engine/member/port.py).
    The instance restarts there; from then on this agent asks it at the new port."""
    entry = instance_entry(request)
    body = await read_body(request, {"port": int})
    _required(body, "port")
    if not 0 < body["port"] < 65536:
        raise api_error(400, "bad_request", "'port' must be from 1 to 65535")
    result = await ask_admin(request, entry, "set_superserver_port", {"port": body["port"]})
    entry.superserver = Address(entry.superserver.host, body["port"])
    return _answer(request, entry, "set-superserver-port", result, str(entry.superserver))


M = "/v1/instances/{name}/mirror"
MEMBER = f"{M}/members/{{member}}"
DN_UPDATE = f"{M}/dn-updates/{{member}}"
MIRROR_ROUTES = [
    ("GET", M, mirror_info),
    ("POST", M, create_mirror),
    ("PATCH", M, edit_mirror),
    ("POST", f"{M}/join", join_mirror),
    ("GET", f"{M}/secret", mirror_secret_of),
    ("PUT", f"{M}/arbiter", set_arbiter),
    ("POST", f"{M}/verify-tls", verify_tls),
    ("POST", f"{M}/leave", leave_mirror),
    ("POST", f"{M}/remove-config", remove_mirror_config),
    ("POST", f"{MEMBER}/authorize", _member_op("authorize_member", "authorize-member")),
    ("POST", f"{MEMBER}/reject", _member_op("reject_member", "reject-member")),
    ("PATCH", MEMBER, update_member_address),
    ("DELETE", MEMBER, _member_op("remove_member", "remove-member")),
    ("POST", f"{MEMBER}/promote", _member_op("promote_member", "promote-member")),
    ("POST", f"{MEMBER}/demote", _member_op("demote_member", "demote-member")),
    ("POST", f"{DN_UPDATE}/authorize", _member_op("authorize_dn_update", "authorize-dn-update")),
    ("POST", f"{DN_UPDATE}/reject", _member_op("reject_dn_update", "reject-dn-update")),
    ("PUT", "/v1/instances/{name}/tls", set_tls),
    ("POST", "/v1/instances/{name}/tls/reload", reload_tls),
    ("PUT", "/v1/instances/{name}/superserver", set_superserver_port),
]
