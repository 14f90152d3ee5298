"""A backup asks its primary's agent whether the primary is down (guide §3.3.2.2, §3.3.2.3;
docs/takeover.md "Asking the partner's agent").

The Agent Controlled way to make sure the old primary no longer acts as primary: its host's
agent probes it, forces it down when it is hung, and says so (engine/agent/partner.py).  A
backup that was Active and hears this within the trouble timeout (2 x QoS after it lost the
primary) takes over with what it has; any other backup (not Active, too late, or just
restarted) first fetches the primary's journal beyond its own through the agent.

The request proves the mirror secret (engine/wire/mirror_secret.py partner_proof), so it needs
the partner's `agent` address in the mirror configuration and a mirror secret.  The calls are
blocking HTTP (engine/client/agent.py), run in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import TYPE_CHECKING

from engine.client.agent import AgentClient
from engine.client.errors import AgentConnectionError, AgentError
from engine.member.files import PARTNER_AUTH_FILE
from engine.member.node import write_json
from engine.storage.journal_codec import make_position
from engine.wire import mirror_secret

if TYPE_CHECKING:
    from engine.member.config import MemberConfig
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.agent_confirm")
TIMEOUT_S = 10.0  # a hung primary is probed, then killed: a few seconds


class AgentUnreachable(Exception):
    """The partner's agent did not answer (its host is down or cut off)."""


def publish_partner_auth(membership: Membership) -> None:
    """Let this host's agent check a partner's request about this member (owner-only file)."""
    cfg = membership.cfg
    path = membership.data_dir / PARTNER_AUTH_FILE
    if not membership.member.is_failover or cfg.secret is None:
        return
    data = {"mirror": cfg.name, "member": membership.member.name, "secret": cfg.secret}
    try:
        if json.loads(path.read_text()) == data:
            return
    except (OSError, ValueError):
        pass
    write_json(path, data)


def _client(membership: Membership, partner: MemberConfig) -> AgentClient:
    """The partner's agent over https is checked against the certificate the mirror knows
    for it (agent_cert_sha256, given by that agent when its instance created or joined the
    mirror), else, on a TLS mirror, against the mirror's CA."""
    tls = {}
    if partner.agent.startswith("https://"):
        if partner.agent_cert_sha256 is not None:
            tls = {"pin_sha256": partner.agent_cert_sha256}
        elif membership.cfg.tls:
            m = membership.member
            tls = {"cert": m.tls_cert, "key": m.tls_key, "ca": membership.cfg.tls_ca}
    return AgentClient(partner.agent, timeout=TIMEOUT_S, **tls)


def _signed(membership: Membership, partner: MemberConfig) -> dict:
    cfg, me = membership.cfg, membership.member.name
    stamp = f"{int(time.time())}:{os.urandom(12).hex()}"
    proof = mirror_secret.partner_proof(cfg.secret, cfg.name, me, partner.name, stamp)
    return {"asker": me, "target": partner.name, "stamp": stamp, "proof": proof}


def _confirm(membership: Membership, partner: MemberConfig, force: bool, term: int) -> dict:
    with _client(membership, partner) as agent:
        path = f"/v1/failover/{membership.cfg.name}/confirm-down"
        body = {**_signed(membership, partner), "term": term}
        if force:
            body["force"] = True
        return agent.call("POST", path, body=body)


async def ask_partner_agent(
    membership: Membership, partner: MemberConfig, *, term: int, force: bool = False
) -> dict:
    """{state: primary | up | down | forced_down | hung | starting, files: [...]};
    AgentUnreachable.  term: the term at which this member is (or is about to become)
    primary; a partner found down is told of it before it can start again.  force: a
    partner still answering as primary is forced down as well (this member took over)."""
    try:
        return await asyncio.to_thread(_confirm, membership, partner, force, term)
    except AgentConnectionError as exc:
        raise AgentUnreachable(str(exc)) from None
    except AgentError as exc:
        raise AgentUnreachable(f"the agent refused: {exc}") from None


def _read(membership: Membership, partner: MemberConfig, seq: int, offset: int):
    with _client(membership, partner) as agent:
        body = json.dumps({**_signed(membership, partner), "seq": seq, "offset": offset})
        path = f"/v1/failover/{membership.cfg.name}/journal"
        status, headers, data = agent.request("POST", path, body=body.encode())
    if status != 200:
        raise AgentUnreachable(f"the agent answered {status} to a journal read: {data[:200]!r}")
    next_seq, _, next_offset = headers.get("x-journal-next", "").partition(":")
    return data, make_position(int(next_seq), int(next_offset))


async def fetch_latest_journal(membership: Membership, partner: MemberConfig, files) -> int:
    """Copy the partner's journal beyond this member's end into this member's journal, as the
    data channel would have; the number of bytes fetched."""
    journal = membership.journal
    pos = journal.end_position
    if pos is None:
        seqs = [f["seq"] for f in files if isinstance(f, dict)]
        if not seqs:
            return 0
        pos = make_position(min(seqs), 0)
    fetched = 0
    while True:
        try:
            data, following = await asyncio.to_thread(
                _read, membership, partner, pos.file_seq, pos.offset
            )
        except (AgentConnectionError, AgentError) as exc:
            raise AgentUnreachable(str(exc)) from None
        if data:
            await journal.receive(pos.file_seq, pos.offset, data, durable=True)
            fetched += len(data)
        elif following == pos:
            return fetched
        pos = following if following > pos else journal.end_position
