"""A failover member's watch over its failover mode (guide §3.3.5; docs/failover.md).

When the mirror names an arbiter (`arbiter` in the mirror file or mirror.json, set on the
primary with `set_arbiter`), each of the two failover members keeps contact with it through an
ArbiterLink (engine/failover/arbiter_link.py) and, four times a second and at every change the
link reports, works out its failover mode from what it knows (engine/failover/modes.py
`decide`): its data channel to its partner, its link to the arbiter, whether the arbiter sees
the partner, whether the backup is Active, and what the partner last relayed.  The mode and
the arbiter connection are in the member's status with the catalog's strings, and the mode is
relayed to the partner through the arbiter.

What the decisions ask beyond the mode (taking over, indefinite trouble) is not acted on yet:
the primary's trouble state follows the Agent Controlled rule (engine/replication/sender.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from engine import rules
from engine.failover.arbiter_link import ArbiterLink
from engine.failover.modes import Knowledge, decide

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.failover")
TICK_S = 0.25


class FailoverWatch:
    def __init__(self, membership: Membership):
        self.membership = membership
        self.mode = rules.AGENT_CONTROLLED  # the mode a mirror starts in (guide §3.3.5.1)
        self.link: ArbiterLink | None = None
        self.partner_lost_at: float | None = None
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()

    @property
    def arbiter_connection(self) -> str:
        return self.link.status if self.link is not None else rules.ARBITER_NOT_CONNECTED

    def partner(self) -> str | None:
        me = self.membership.member.name
        others = [m.name for m in self.membership.cfg.failover_members if m.name != me]
        return others[0] if others else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="failover-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_link()

    async def _run(self) -> None:
        while True:
            try:
                await self._follow_configuration()
                self._step()
            except Exception:  # the watch must outlive whatever went wrong in one round
                log.exception("failover watch failed")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), TICK_S)

    # -- the link follows the configuration ------------------------------------------------
    async def _follow_configuration(self) -> None:
        cfg, partner = self.membership.cfg, self.partner()
        wanted = str(cfg.arbiter) if cfg.arbiter is not None and partner is not None else None
        current = f"{self.link.host}:{self.link.port}" if self.link is not None else None
        if wanted == current:
            return
        await self._close_link()
        if wanted is None:
            return
        self.link = ArbiterLink(
            wanted,
            cfg.name,
            self.membership.member.name,
            partner,
            secret=cfg.secret,
            ssl_context=self.membership.tls_client_context(),
            timeout_ms=cfg.qos_timeout_ms,
            state=self._state(),
            on_change=lambda _link: self._changed.set(),
        )
        self.link.start()
        log.info("keeping contact with the arbiter at %s", wanted)

    async def _close_link(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            await link.stop()

    # -- the mode ----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"mode": self.mode, "role": self.membership.role}

    def _partner_link_and_active(self) -> tuple[bool, bool]:
        membership, partner = self.membership, self.partner()
        rep = membership.replicator
        if rep is not None:  # the primary: the partner is its backup
            link = rep.links.get(partner) if partner is not None else None
            up = link is not None and not link.closed
            return up, rep.active is not None and rep.active is link
        replica = membership.replica
        if replica is None:
            return False, False
        return replica.connected, replica.active

    def knowledge(self) -> Knowledge:
        up, active = self._partner_link_and_active()
        now = time.monotonic()
        if up:
            self.partner_lost_at = None
        elif self.partner_lost_at is None:
            self.partner_lost_at = now
        link = self.link
        relayed = (link.partner_state or {}) if link is not None else {}
        return Knowledge(
            role=self.membership.role,
            mode=self.mode,
            partner_link=up,
            arbiter_link=link is not None and link.connected,
            arbiter_sees_partner=link is not None and link.partner_seen,
            backup_active=active,
            partner_mode=relayed.get("mode"),
            partner_role=relayed.get("role"),
            partner_heard_since_break=(
                link is not None
                and self.partner_lost_at is not None
                and link.heard_partner_since(self.partner_lost_at)
            ),
        )

    def _step(self) -> None:
        if self.membership.role not in ("primary", "backup"):
            return
        outcome = decide(self.knowledge())
        if outcome.mode != self.mode:
            log.warning(
                "failover mode %s -> %s (arbiter: %s)",
                self.mode,
                outcome.mode,
                self.arbiter_connection,
            )
            self.mode = outcome.mode
            if self.link is not None:
                self.link.report(self._state())
