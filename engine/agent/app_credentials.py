"""Application credentials of an instance, through the agent (engine/member/app_auth.py).

    POST   /v1/instances/{name}/app-credentials          {name}  -> {name, secret}: the secret
                                                                    is shown this once
    GET    /v1/instances/{name}/app-credentials                  -> names, never secrets
    DELETE /v1/instances/{name}/app-credentials/{credential}     -> revoked; its open
                                                                    connections are closed

Each route sends one ADMIN action (app_credential_create / _list / _revoke) to the instance
with its admin token, as the other operations do (engine/agent/ops.py: the same mapping of
failures, and on a TLS mirror only an agent with mutual TLS may act).  The instance keeps
only a salted hash of each secret; the agent keeps nothing.  Every refusal is logged by the
agent's error handling (engine/agent/errors.py) and, for the instance's own refusals, by the
instance.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from engine.agent.auth import IDENTITY
from engine.agent.errors import api_error
from engine.agent.ops import ask_admin, instance_entry, read_body

log = logging.getLogger("engine.agent.server")

# the instance's rule (engine/member/app_auth.py), checked here so a bad name never reaches it
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _credential_name(value, where: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise api_error(
            400,
            "bad_request",
            f"{where}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


async def create_credential(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    body = await read_body(request, {"name": str})
    if "name" not in body:
        raise api_error(
            400, "bad_request", "'name' (the application's credential name) is required"
        )
    name = _credential_name(body["name"], "name")
    result = await ask_admin(request, entry, "app_credential_create", {"name": name})
    # never the secret in the log
    log.info(
        "application credential %s created on instance %s by %s",
        name,
        entry.name,
        request[IDENTITY],
    )
    return web.json_response(
        {"instance": entry.name, "name": result["name"], "secret": result["secret"]},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def list_credentials(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    result = await ask_admin(request, entry, "app_credential_list")
    rows = [{"name": r.get("name"), "created": r.get("created")} for r in result["credentials"]]
    return web.json_response(
        {
            "instance": entry.name,
            "credentials": rows,
            "auth": result.get("auth"),
            "mode": result.get("mode"),
        }
    )


async def revoke_credential(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    name = _credential_name(request.match_info["credential"], "credential")
    await read_body(request, {})
    result = await ask_admin(request, entry, "app_credential_revoke", {"name": name})
    log.info(
        "application credential %s revoked on instance %s by %s",
        name,
        entry.name,
        request[IDENTITY],
    )
    return web.json_response(
        {
            "instance": entry.name,
            "name": name,
            "revoked": True,
            "closed_connections": result.get("closed_connections", 0),
        }
    )


CREDENTIAL_ROUTES = [
    ("GET", "/v1/instances/{name}/app-credentials", list_credentials),
    ("POST", "/v1/instances/{name}/app-credentials", create_credential),
    ("DELETE", "/v1/instances/{name}/app-credentials/{credential}", revoke_credential),
]
