"""Failover operations through the agent (guide §3.4, §6.1, §6.2; docs/failover.md).

    POST /v1/instances/{name}/stop                        graceful shutdown: SIGTERM, then
                                                          wait until the process is gone; a
                                                          primary hands over to its Active
                                                          backup on the way (engine/member/
                                                          takeover.py)
    POST /v1/instances/{name}/failover/set-no-failover    no automatic takeover (§6.1.3)
    POST /v1/instances/{name}/failover/clear-no-failover
    POST /v1/instances/{name}/failover/force-primary      {"confirm": bool}: without
                                                          confirm, what is at stake (Active
                                                          backup or not, journal end); with
                                                          it, the member becomes primary
    POST /v1/instances/{name}/failover/demote-to-dr       on the backup: ask its primary to make
                                                          it a DR async (guide §5.6)
    POST /v1/instances/{name}/rebuild                     {"confirm": bool}: without confirm,
                                                          what is at stake; with it, the member
                                                          sets its journal and databases aside
                                                          and takes them again from the mirror
                                                          (guide §5.7, engine/member/rebuild.py)
    POST /v1/instances/{name}/failover/promote-to-primary {"partner": NAME | null, "confirm":
                                                          bool}: a DR async with no primary
                                                          running (engine/member/promotion.py)
    POST /v1/instances/{name}/failover/clear-validated-member
                                                          on a stopped instance: ValidatedMember
                                                          = 0 (guide §6.3.1.1); it takes its
                                                          role from the primary it finds

Failures map as in engine/agent/ops.py (409 with the instance's reason, 503 when it is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from engine.agent.auth import IDENTITY
from engine.agent.errors import api_error
from engine.agent.ops import ask_admin, instance_entry, member_op, operation_answer, read_body
from engine.agent.probe import find_pid, process_gone
from engine.failover import state as failover_state
from engine.storage import dir_lock

log = logging.getLogger("engine.agent.server")
# a primary handing over waits up to QoS (8 s by default) for its backup's last ack
STOP_WAIT_S = 60.0
# a promotion with a partner asks its agent, then copies the journal the partner had
PROMOTE_WAIT_S = 120.0


async def stop_instance(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    await read_body(request, {})
    pid = await asyncio.to_thread(find_pid, entry)
    if pid is None:
        return operation_answer(
            request, entry, "stop", {"stopped": False, "pid": None, "detail": "not running"}
        )
    log.warning("graceful stop of instance %s (pid %d) by %s", entry.name, pid, request[IDENTITY])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while not process_gone(pid):
        if time.monotonic() > deadline:
            detail = f"SIGTERM sent; pid {pid} still runs after {STOP_WAIT_S:g} s"
            result = {"stopped": False, "pid": pid, "detail": detail}
            return operation_answer(request, entry, "stop", result)
        await asyncio.sleep(0.02)
    detail = f"pid {pid} stopped (SIGTERM)"
    return operation_answer(request, entry, "stop", {"stopped": True, "pid": pid, "detail": detail})


def confirmed_op(action: str, op: str):
    """A route handler for a two-step action: {"confirm": bool} passed on to the instance
    (without it, the instance only says what is at stake); a confirmation is logged."""

    async def handler(request: web.Request) -> web.Response:
        entry = instance_entry(request)
        body = await read_body(request, {"confirm": bool})
        confirm = body.get("confirm", False)
        result = await ask_admin(request, entry, action, {"confirm": confirm})
        if confirm:
            log.warning("%s of instance %s confirmed by %s", op, entry.name, request[IDENTITY])
        return operation_answer(request, entry, op, result)

    handler.__name__ = action
    return handler


async def promote_to_primary(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    body = await read_body(request, {"partner": str, "confirm": bool})
    arg = {"partner": body.get("partner"), "confirm": body.get("confirm", False)}
    result = await ask_admin(request, entry, "promote_to_primary", arg, timeout=PROMOTE_WAIT_S)
    if arg["confirm"]:
        log.warning(
            "promotion to primary of instance %s (partner %s) confirmed by %s",
            entry.name,
            arg["partner"],
            request[IDENTITY],
        )
    return operation_answer(request, entry, "promote-to-primary", result)


def _clear_validated(data_dir: Path) -> bool:
    """False when the instance runs (its data-directory lock is held)."""
    with dir_lock.while_down(data_dir) as down:
        if down:
            known = failover_state.load(data_dir)
            failover_state.save(data_dir, replace(known, validated=False))
        return down


async def clear_validated_member(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    await read_body(request, {})
    try:
        down = await asyncio.to_thread(_clear_validated, Path(entry.data_dir))
    except failover_state.StateError as exc:
        raise api_error(409, "refused", str(exc)) from None
    if not down:
        why = f"instance {entry.name} is running: ValidatedMember is cleared on a stopped instance"
        raise api_error(409, "refused", why)
    log.warning("ValidatedMember cleared on instance %s by %s", entry.name, request[IDENTITY])
    return operation_answer(request, entry, "clear-validated-member", {"validated": False})


INSTANCE = "/v1/instances/{name}"
FAILOVER_ROUTES = [
    ("POST", f"{INSTANCE}/stop", stop_instance),
    (
        "POST",
        f"{INSTANCE}/failover/set-no-failover",
        member_op("set_no_failover", "set-no-failover"),
    ),
    (
        "POST",
        f"{INSTANCE}/failover/clear-no-failover",
        member_op("clear_no_failover", "clear-no-failover"),
    ),
    ("POST", f"{INSTANCE}/failover/force-primary", confirmed_op("force_primary", "force-primary")),
    ("POST", f"{INSTANCE}/failover/demote-to-dr", member_op("demote_to_dr", "demote-to-dr")),
    ("POST", f"{INSTANCE}/rebuild", confirmed_op("rebuild_member", "rebuild")),
    ("POST", f"{INSTANCE}/failover/promote-to-primary", promote_to_primary),
    ("POST", f"{INSTANCE}/failover/clear-validated-member", clear_validated_member),
]
