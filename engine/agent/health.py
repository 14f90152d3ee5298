"""Role checks for load balancers (guide §3.7: redirecting applications to the primary).

    GET /v1/health/primary                     200 on a primary that is not in trouble
    GET /v1/health/backup[?active=1]           200 on the backup (and Active, if asked)
    GET /v1/health/async[?max_lag_s=N]         200 on a connected async (no more than N s behind)

Each takes `?instance=NAME` (needed when the agent has several instances) and `?mirror=NAME`
(a reporting async in several mirrors).  A load balancer marks a server up on 2xx and down on
anything else, as HAProxy's `option httpchk` does, so every "no" is a 503 with the reason in
the body: another role, In Trouble, not Active, too far behind, the instance down or hung.
A malformed query is 400 and an unknown instance 404, so a misconfigured check never reads as
a healthy server.  These routes are authenticated like every other (HAProxy: `http-check send
hdr Authorization "Bearer ..."`, or `check-ssl crt` for mutual TLS), and read the instance's
status afresh on every check.
"""

from __future__ import annotations

import math

from aiohttp import web

from engine import rules
from engine.agent.config import AgentConfig, InstanceEntry
from engine.agent.errors import CONFIG, APIError, api_error
from engine.agent.ops import instance_status

ROLES = ("primary", "backup", "async")
MAX_LAG_LIMIT_S = 86_400.0


def _entry(request: web.Request) -> InstanceEntry:
    cfg: AgentConfig = request.app[CONFIG]
    name = request.query.get("instance")
    if name is None:
        if len(cfg.instances) != 1:
            names = ", ".join(e.name for e in cfg.instances) or "none"
            raise api_error(
                400, "bad_request", f"this agent has several instances ({names}): add ?instance="
            )
        return cfg.instances[0]
    for entry in cfg.instances:
        if entry.name == name:
            return entry
    raise api_error(404, "not_found", f"no instance {name!r} on this agent")


def _max_lag(request: web.Request) -> float | None:
    raw = request.query.get("max_lag_s")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_LAG_LIMIT_S:  # NaN fails too
        raise api_error(
            400, "bad_request", f"max_lag_s: a number of seconds from 0 to {MAX_LAG_LIMIT_S:g}"
        )
    return value


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "0")
    if raw not in ("0", "1", "true", "false"):
        raise api_error(400, "bad_request", f"{name}: 1 or 0")
    return raw in ("1", "true")


def verdict(role: str, status: dict, active: bool, max_lag: float | None) -> str | None:
    """None when the member's status fits the check, else why not."""
    said = status.get("status")
    if role == "primary":
        if said == rules.PRIMARY:
            return None
        if said == rules.IN_TROUBLE:
            return "the primary is In Trouble: it commits nothing now"
        return f"not the primary (status {said})"
    if role == "backup":
        if said != rules.BACKUP:
            return f"not the backup (status {said})"
        transfer = status.get("journal_transfer")
        if active and transfer != rules.ACTIVE:
            return f"the backup is not Active (journal transfer: {transfer})"
        return None
    if status.get("type") not in (rules.MEMBER_TYPE_LABELS[t] for t in rules.ASYNC_TYPES):
        return f"not an async member (type {status.get('type')})"
    if said != rules.CONNECTED:
        return f"the async is not connected (status {said})"
    lags = [status.get("journal_transfer_latency_s"), status.get("dejournal_latency_s")]
    if max_lag is not None:
        if None in lags:
            behind = status.get("dejournaling") or status.get("journal_transfer")
            return f"how far behind it is is not known ({behind})"
        lag = max(lags)
        if lag > max_lag:
            return f"{lag:.1f} s behind the primary, more than {max_lag:g} s"
    return None


async def check(request: web.Request) -> web.Response:
    role = request.match_info["role"]
    if role not in ROLES:
        raise api_error(404, "not_found", f"no health check {role!r}: {', '.join(ROLES)}")
    entry = _entry(request)
    active, max_lag = _flag(request, "active"), _max_lag(request)
    if role != "backup" and "active" in request.query:
        raise api_error(400, "bad_request", "active: for /v1/health/backup only")
    if role != "async" and max_lag is not None:
        raise api_error(400, "bad_request", "max_lag_s: for /v1/health/async only")
    body = {"instance": entry.name, "check": role}
    try:
        status = await instance_status(request, entry)
    except APIError as exc:
        if exc.status_code not in (502, 503, 409):
            raise
        # the instance down, hung or not a member: a server to take out, not an error
        return web.json_response({**body, "healthy": False, "reason": exc.message}, status=503)
    why = verdict(role, status, active, max_lag)
    body.update(
        healthy=why is None,
        member=status.get("member"),
        mirror=status.get("mirror"),
        status=status.get("status"),
        journal_transfer=status.get("journal_transfer"),
    )
    if why is not None:
        body["reason"] = why
    return web.json_response(body, status=200 if why is None else 503)


HEALTH_ROUTES = [("GET", "/v1/health/{role}", check)]
