"""A failover member asks its partner's agent about the partner (guide §3.3.2.2, §3.3.2.3;
docs/takeover.md "Asking the partner's agent").

    POST /v1/failover/{mirror}/confirm-down   {asker, target, stamp, proof, force?, term?}
        Is the target member's instance down?  The agent probes it: answering as primary is
        `primary` (the asker reconnects); hung (the kernel accepts, nobody answers) is forced
        down first (SIGKILL, engine/agent/probe.py) and answered `forced_down`; not running is
        `down`, which the agent makes sure of by taking the instance's data-directory lock
        (engine/storage/dir_lock.py): a process that holds it is `starting`.  The answer
        lists the target's journal files and their sizes.  With `force` (a member that took
        over, about the primary it replaced, guide §3.3.2.2) a target still answering as
        primary is forced down too.  With `term` (the term at which the asker becomes
        primary), a target that is down or forced down is told before it can start again:
        under the lock, its failover.json names the asker primary at that term, so at its
        next start it looks for the asker instead of negotiating to be primary itself.
    POST /v1/failover/{mirror}/journal        {asker, target, stamp, proof, seq, offset}
        Whole records (up to 1 MiB) of the target's journal file `seq` from `offset`, and in
        X-Journal-Next where the next read starts ("seq:offset"; the next file's start at the
        end of a finished file, the same position when there is no more): the latest journal,
        which a backup that was not Active needs before it may take over.

These routes are not for operators and take no operator credential: the request proves the
mirror secret instead.  The target's instance keeps {mirror, member, secret} in its data
directory (engine/member/files.py PARTNER_AUTH_FILE, owner-only, the agent's to read like the
admin token); `proof` is engine/wire/mirror_secret.py partner_proof over the asker, the
target and `stamp` ("<unix seconds>:<random hex>"), which must be within 30 s of the agent's
clock and is taken once.  Every refusal is logged with its reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from engine.agent.auth import PROOF_CHECKED
from engine.agent.config import AgentConfig, InstanceEntry
from engine.agent.errors import CONFIG, STATE, api_error
from engine.agent.journal import journal_dir
from engine.agent.ops import read_body
from engine.agent.probe import force_down, probe
from engine.failover import state as failover_state
from engine.member.files import PARTNER_AUTH_FILE
from engine.storage import dir_lock
from engine.storage.journal_files import (
    JournalGap,
    JournalReader,
    list_files,
    validate_mirror_name,
)
from engine.wire import mirror_secret

log = logging.getLogger("engine.agent.server")
STAMP_WINDOW_S = 30.0
MAX_STAMPS = 10_000  # stamps remembered (each for the window), against replays
CHUNK = 1 << 20
PREFIX = PROOF_CHECKED  # engine/agent/auth.py lets these through to the proof check


def _auth_of(entry: InstanceEntry) -> dict | None:
    try:
        data = json.loads((Path(entry.data_dir) / PARTNER_AUTH_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _refuse(request: web.Request, status: int, code: str, why: str):
    # logged with the peer and the reason as every refusal is (engine/agent/errors.py)
    return api_error(status, code, why)


def _check_stamp(request: web.Request, stamp: str) -> None:
    when, _, nonce = stamp.partition(":")
    if not when.isdigit() or not (16 <= len(nonce) <= 64):
        raise _refuse(request, 400, "bad_request", "stamp must be '<unix seconds>:<random hex>'")
    now = time.time()
    if abs(now - int(when)) > STAMP_WINDOW_S:
        raise _refuse(request, 401, "stale", "the stamp is not within 30 s of this agent's clock")
    seen: dict = request.app[STATE].setdefault("partner_stamps", {})
    for old in [s for s, t in seen.items() if t < now - 2 * STAMP_WINDOW_S]:
        del seen[old]
    if stamp in seen or len(seen) >= MAX_STAMPS:
        raise _refuse(request, 401, "replayed", "this stamp was used already")
    seen[stamp] = now


async def _target(request: web.Request, body: dict) -> tuple[str, InstanceEntry]:
    """(mirror, the target's instance entry), the proof checked; refusals logged."""
    cfg: AgentConfig = request.app[CONFIG]
    try:
        mirror = validate_mirror_name(request.match_info["mirror"]).upper()
    except ValueError as exc:
        raise _refuse(request, 400, "bad_request", str(exc)) from None
    if not body.get("proof") or not body.get("stamp"):
        # unauthenticated, like any other route without its credential (engine/agent/auth.py)
        raise _refuse(request, 401, "proof_required", "a partner request proves the mirror secret")
    for key in ("asker", "target", "stamp", "proof"):
        if not isinstance(body.get(key), str) or not body[key] or len(body[key]) > 200:
            raise _refuse(request, 400, "bad_request", f"{key!r} must be a short string")
    target = body["target"].upper()
    for entry in cfg.instances:
        auth = await asyncio.to_thread(_auth_of, entry)
        if auth and auth.get("mirror") == mirror and auth.get("member") == target:
            break
    else:
        raise _refuse(request, 404, "not_found", f"no member {target} of {mirror} on this host")
    expected = mirror_secret.partner_proof(
        auth["secret"], mirror, body["asker"].upper(), target, body["stamp"]
    )
    if not mirror_secret.same(expected.encode(), body["proof"].encode()):
        raise _refuse(
            request, 403, "bad_proof", f"the request about {target} did not prove the mirror secret"
        )
    _check_stamp(request, body["stamp"])
    return mirror, entry


FIELDS = {"asker": str, "target": str, "stamp": str, "proof": str}


def _down_and_told(entry: InstanceEntry, asker: str, term: int | None) -> bool:
    """True when no instance process holds the target's data directory; then, given a term,
    its failover.json names the asker primary at that term (if later than what it knows)."""
    data_dir = Path(entry.data_dir)
    with dir_lock.while_down(data_dir) as down:
        if not down or term is None:
            return down
        try:
            known = failover_state.load(data_dir)
        except failover_state.StateError as exc:
            log.warning("not telling %s of the takeover: %s", entry.name, exc)
            return down
        if term > known.term:
            failover_state.save(data_dir, replace(known, term=term, primary=asker))
            log.warning(
                "%s: primary is now %s (term %d), kept for its next start", entry.name, asker, term
            )
        return down


async def confirm_down(request: web.Request) -> web.Response:
    body = await read_body(request, {**FIELDS, "force": bool, "term": int})
    mirror, entry = await _target(request, body)
    cfg: AgentConfig = request.app[CONFIG]
    term = body.get("term")
    if term is not None and term < 1:
        raise _refuse(request, 400, "bad_request", "term must be a whole number >= 1")
    asker = body["asker"].upper()
    seen = await probe(entry, cfg.probe_timeout_s)
    state = seen["state"]
    primary = state == "up" and seen.get("role") == "primary"
    if (primary and body.get("force")) or state == "hung":
        forced = await force_down(entry)
        if forced["state"] == "down":
            answer = "forced_down"
            await asyncio.to_thread(_down_and_told, entry, asker, term)
        else:
            answer = "primary" if primary else "hung"
    elif state == "up":
        answer = "primary" if primary else "up"
    elif await asyncio.to_thread(_down_and_told, entry, asker, term):
        answer = "down"
    else:
        # its process runs but does not answer yet: starting, and it will negotiate itself
        answer = "starting"
    directory = journal_dir(entry, mirror)

    def listing() -> list[dict]:
        out = []
        for seq, name in list_files(directory, mirror):
            try:
                out.append({"seq": seq, "name": name, "size": os.path.getsize(directory / name)})
            except OSError:
                continue
        return out

    files = await asyncio.to_thread(listing) if answer != "primary" else []
    log.warning(
        "member %s asked about %s of %s: %s (%s)",
        asker,
        body["target"].upper(),
        mirror,
        answer,
        seen["detail"],
    )
    return web.json_response(
        {
            "member": body["target"].upper(),
            "state": answer,
            "role": seen.get("role"),
            "files": files,
        }
    )


async def read_journal(request: web.Request) -> web.Response:
    body = await read_body(request, {**FIELDS, "seq": int, "offset": int})
    mirror, entry = await _target(request, body)
    seq, offset = body.get("seq", -1), body.get("offset", -1)
    if seq < 0 or offset < 0:
        raise _refuse(request, 400, "bad_request", "seq and offset must be whole numbers >= 0")
    reader = JournalReader(journal_dir(entry, mirror), mirror)
    try:
        data, (next_seq, next_offset) = await asyncio.to_thread(
            reader.read_from, (seq, offset), CHUNK
        )
    except JournalGap as exc:
        raise api_error(404, "not_found", str(exc)) from None
    return web.Response(
        body=data,
        content_type="application/octet-stream",
        headers={"X-Journal-Next": f"{next_seq}:{next_offset}"},
    )


PARTNER_ROUTES = [
    ("POST", PREFIX + "{mirror}/confirm-down", confirm_down),
    ("POST", PREFIX + "{mirror}/journal", read_journal),
]
