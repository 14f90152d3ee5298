"""A failover member's watch over its failover mode (guide §3.3.5; docs/failover.md).

When the mirror names an arbiter (`arbiter` in the mirror file or mirror.json, set on the
primary with `set_arbiter`), each of the two failover members keeps contact with it through an
ArbiterLink (engine/failover/arbiter_link.py) and, four times a second and at every change the
link reports, works out its failover mode from what it knows (engine/failover/modes.py
`decide`): its data channel to its partner, its link to the arbiter, whether the arbiter sees
the partner, whether the backup is Active, and what the partner last relayed.  The mode and
the arbiter connection are in the member's status with the catalog's strings, and the mode is
relayed to the partner through the arbiter.

The watch acts on the decisions it can act on alone:

- a backup told to take over (Table 3–1 row 7: the arbiter lost the primary too, and this
  backup was Active) becomes primary (engine/member/takeover.py);
- a primary that must commit nothing until the backup is known not to take over, or
  indefinitely, holds its trouble state with no timeout; it is released when the decision
  says continue;
- a primary that hears, through the arbiter, that its partner became primary at a later term
  stops its process: it is no longer the primary, and it stays down until restarted;
- a failover member that starts as backup (every failover member but a new mirror's first
  one) and finds no primary asks its partner what it remembers (engine/failover/state.py):
  the member that remembers itself as primary at the highest term becomes primary again, if
  its partner answers and agrees.  A partner that does not answer may have become primary
  meanwhile, so the member waits (status Waiting, guide §6.1.1).

- a backup that lost its primary the Agent Controlled way asks the primary's agent
  (engine/member/agent_confirm.py): confirmed or forced down, it takes over, first fetching
  the latest journal through the agent unless it was Active within the trouble timeout;
- a member that took over has its predecessor forced down by the predecessor's agent while
  that one still answers as primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from engine import rules
from engine.client.app import AsyncClient, EngineError
from engine.failover.arbiter_link import ArbiterLink
from engine.failover.modes import PRIMARY, Decision, Knowledge, Outcome, decide
from engine.failover.state import FailoverState, StateError
from engine.member.agent_confirm import AgentUnreachable, ask_partner_agent, fetch_latest_journal
from engine.member.node import peer_tls
from engine.member.takeover import become_primary

if TYPE_CHECKING:
    from engine.member.membership import Membership

NOT_VALIDATED = (
    "ValidatedMember is cleared (a DR async may have been promoted without this member): it "
    "looks for a primary among all members and takes the role that primary gives it"
)
log = logging.getLogger("engine.member.failover")
TICK_S = 0.25
NEGOTIATE_EVERY_S = 1.0  # how often a member that finds no primary asks its partner
ASK_TIMEOUT_S = 2.0
WATCH_REPLACED_S = 120.0  # how long after a takeover the replaced primary is watched
FORCE_EVERY_S = 2.0


class FailoverWatch:
    def __init__(self, membership: Membership):
        self.membership = membership
        self.mode = rules.AGENT_CONTROLLED  # the mode a mirror starts in (guide §3.3.5.1)
        self.link: ArbiterLink | None = None
        self.partner_lost_at: float | None = None
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._stopped = False
        self._reported: dict | None = None  # the state last relayed to the partner
        self._acting: asyncio.Task | None = None  # a takeover or a negotiation under way
        self._negotiated_at = 0.0
        self.waiting: str | None = None  # why no role can be taken now (status Waiting)
        self._arbiter_lost_at: float | None = None  # see _tested
        self._agent_note: str | None = None  # why the partner's agent did not answer, logged once
        # a primary leaving Arbiter Controlled with its backup connected: the mode it moves to
        # and the heartbeat round that first announced it (see _coordinated)
        self._switching: tuple[str, int] | None = None

    @property
    def announced_mode(self) -> str:
        """The mode a primary's heartbeats announce: the one it is moving to while the
        backup has not yet confirmed hearing it."""
        return self._switching[0] if self._switching is not None else self.mode

    @property
    def arbiter_connection(self) -> str:
        return self.link.status if self.link is not None else rules.ARBITER_NOT_CONNECTED

    def partner(self) -> str | None:
        me = self.membership.member.name
        others = [m.name for m in self.membership.cfg.failover_members if m.name != me]
        return others[0] if others else None

    def leave_arbiter_control(self, why: str) -> None:
        """Agent Controlled from now on (guide §3.3.5.1): an operator's decision replaced the
        arbiter's, so the indefinite trouble of Arbiter Controlled no longer applies."""
        if self.mode != rules.AGENT_CONTROLLED:
            log.warning("failover mode %s -> %s: %s", self.mode, rules.AGENT_CONTROLLED, why)
            self.mode = rules.AGENT_CONTROLLED
        self._changed.set()

    def nudge(self) -> None:
        """Decide again now: a data channel to the partner opened or closed."""
        self._changed.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="failover-watch")

    async def stop(self) -> None:
        # Python 3.11's wait_for loses a cancellation that lands as the awaited call
        # completes (a nudge at the moment of a stop): the loop also reads this flag
        self._stopped = True
        self._changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_link()

    async def _run(self) -> None:
        while not self._stopped:
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
        fstate = self.membership.fstate
        return {
            "mode": self.mode,
            "role": self.membership.role,
            "term": fstate.term,  # and who was primary at that term, as this member knows
            "primary": fstate.primary,
        }

    def _partner_link(self) -> tuple[bool, bool, float | None]:
        """(the data channel to the partner is open, the backup is (or was, when the link
        was lost) Active, seconds since the partner was last heard on it)."""
        membership, partner = self.membership, self.partner()
        rep = membership.replicator
        if rep is not None:  # the primary: the partner is its backup, which acks every beat
            link = rep.links.get(partner) if partner is not None else None
            if link is None or link.closed:
                return False, False, None
            return True, rep.active is link, time.time() - link.last_ack_at
        replica = membership.replica
        if replica is None:
            return False, False, None
        if not replica.connected:
            return False, replica.active_when_lost, None
        return True, replica.active, replica.heard_ago()

    def _tested(self, up: bool, heard_ago: float | None, arbiter_ok: bool) -> bool | None:
        """The partner link as one network event sees it (guide §3.3.5.2: a member that loses
        one link tests the other).  In Arbiter Controlled mode, when the arbiter side fails
        while the data channel still looks open, the data channel counts as up only once the
        partner is heard after that moment (it speaks every QoS/4), and as lost if it stays
        silent for QoS/2: so an isolated partner is not mistaken for a lost arbiter (row 7 for
        row 3, or the other way round) just because the arbiter noticed first.  None: still
        testing, decide nothing yet."""
        now = time.monotonic()
        if self.mode != rules.ARBITER_CONTROLLED or not up or arbiter_ok:
            self._arbiter_lost_at = None
            return up
        if self._arbiter_lost_at is None:
            self._arbiter_lost_at = now
        since = now - self._arbiter_lost_at
        if heard_ago is not None and heard_ago < since:
            return True  # heard after the arbiter side failed: the link is alive
        if since >= self.membership.cfg.qos_timeout_ms / 2000:
            return False
        return None

    def knowledge(self) -> Knowledge | None:
        up, active, heard_ago = self._partner_link()
        replica = self.membership.replica
        link = self.link
        arbiter_ok = link is not None and link.connected and link.partner_seen
        up = self._tested(up, heard_ago, arbiter_ok)
        if up is None:
            return None
        now = time.monotonic()
        if up:
            self.partner_lost_at = None
        elif self.partner_lost_at is None:
            self.partner_lost_at = now
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
            arbiter_held=up
            or (
                link is not None
                and link.connected_at is not None
                and self.partner_lost_at is not None
                and link.connected_at <= self.partner_lost_at
            ),
            partner_mode_heard=replica.primary_mode if replica is not None else None,
        )

    def _step(self) -> None:
        membership = self.membership
        if membership.role not in ("primary", "backup") or membership.transition is not None:
            return
        knowledge = self.knowledge()
        if knowledge is None:
            return  # testing the partner link (see _tested)
        outcome = decide(knowledge)
        if not self._coordinated(outcome, knowledge):
            outcome = Outcome(self.mode, outcome.decision)  # decided again at the answer
        if outcome.mode != self.mode:
            log.warning(
                "failover mode %s -> %s (arbiter: %s; %s -> %s)",
                self.mode,
                outcome.mode,
                self.arbiter_connection,
                knowledge,
                outcome.decision,
            )
            self.mode = outcome.mode
            rep = membership.replicator
            if rep is not None:
                rep.beat_now()  # the backup hears the primary's new mode at once
        state = self._state()
        # a backup taking over relays nothing until it is primary: "Agent Controlled" from a
        # backup tells the primary that it will not take over (Table 3-1 row 4)
        taking_over = outcome.decision == Decision.TAKE_OVER
        if self.link is not None and state != self._reported and not taking_over:
            self._reported = state
            self.link.report(state)
        if membership.role == "primary":
            self._act_as_primary(outcome.decision)
        else:
            self._act_as_backup(outcome.decision, knowledge.partner_link)

    def _coordinated(self, outcome: Outcome, k: Knowledge) -> bool:
        """May the mode change now?  A primary leaving Arbiter Controlled while its backup is
        connected first makes sure the backup heard it (guide §3.3.5.2: the members coordinate
        the switch).  Its heartbeats announce the new mode; the backup's answer repeats the
        mode and the heartbeat's round.  Without this, a primary that lost the arbiter went
        Agent Controlled on hearing the backup, and a break right after left a backup that
        knew only the arbiter's last relay ("Arbiter Controlled") free to take over on the
        arbiter's report, while this member went on alone after the trouble timeout."""
        rep = self.membership.replicator
        leaving = (
            k.role == PRIMARY
            and k.partner_link
            and self.mode == rules.ARBITER_CONTROLLED
            and outcome.mode == rules.AGENT_CONTROLLED
            and rep is not None
        )
        if not leaving:
            self._switching = None
            return True
        if self._switching is None or self._switching[0] != outcome.mode:
            # set first: the round beat_now sends reads the mode it announces from here
            self._switching = (outcome.mode, rep.beats + 1)
            rep.beat_now()
        link = rep.links.get(self.partner() or "")
        heard = link.heard if link is not None else {}
        beat = heard.get("beat")
        confirmed = (
            heard.get("primary_mode") == outcome.mode
            and isinstance(beat, int)
            and beat >= self._switching[1]
        )
        if confirmed:
            log.info(
                "backup %s heard the switch to %s (heartbeat round %d)",
                self.partner(),
                outcome.mode,
                beat,
            )
            self._switching = None
        return confirmed

    # -- acting on the decision ---------------------------------------------------------------
    def _act_as_primary(self, decision: Decision) -> None:
        rep = self.membership.replicator
        if rep is None:
            return
        self._watch_replaced_primary(rep)
        relayed = (self.link.partner_state or {}) if self.link is not None else {}
        # the partner knows a later primary, whatever its role now: it took over and was
        # restarted since (then it says "backup"), or follows one this member never heard of
        if self.membership.stand_down_if_later(relayed, self.partner() or "the partner"):
            return
        if decision == Decision.TROUBLE_INDEFINITE:
            rep.hold_trouble("cut off from both the backup and the arbiter (Arbiter Controlled)")
        elif decision == Decision.TROUBLE_UNTIL_SWITCH:
            rep.hold_trouble("backup lost while the arbiter still sees it (Arbiter Controlled)")
        elif decision == Decision.CONTINUE and rep.trouble_held is not None:
            rep.release_trouble("the backup will not take over (Agent Controlled)")

    def _watch_replaced_primary(self, rep) -> None:
        """For a while after taking over, make sure the primary this member replaced is not
        acting as one: while it is not back as backup, its agent is asked to force it down
        if it still answers as primary (guide §3.3.2.2, §3.3.5.2)."""
        since = self.membership.took_over_at
        if since is None or time.monotonic() - since > WATCH_REPLACED_S or not self._agent_usable():
            return
        partner = self.partner()
        link = rep.links.get(partner) if partner else None
        if link is not None and not link.closed:
            self.membership.took_over_at = None  # it is back, as backup
            return
        busy = self._acting is not None and not self._acting.done()
        if busy or time.monotonic() - self._negotiated_at < FORCE_EVERY_S:
            return
        self._negotiated_at = time.monotonic()
        self._acting = self.membership.run_in_background(self._force_replaced_down())

    async def _force_replaced_down(self) -> None:
        partner = self.membership.cfg.member(self.partner())
        try:
            answer = await ask_partner_agent(
                self.membership, partner, term=self.membership.fstate.term, force=True
            )
        except AgentUnreachable:
            return
        if answer.get("state") == "forced_down":
            log.warning(
                "former primary %s still acted as primary: its agent forced it down", partner.name
            )

    def _act_as_backup(self, decision: Decision, partner_link: bool) -> None:
        if self._acting is not None and not self._acting.done():
            return
        membership = self.membership
        replica = membership.replica
        if not membership.fstate.validated and not partner_link:
            # never primary by itself: it takes its role from the primary it finds
            self.waiting = NOT_VALIDATED
            return
        if replica is None or partner_link:
            self.waiting = None
            return
        no_failover = membership.fstate.no_failover or replica.primary_no_failover
        if no_failover and not replica.connected:
            self.waiting = "no failover is set: this member does not take over (guide §3.4)"
            if membership.fstate.primary != membership.member.name:
                return  # nothing to negotiate either: it was not the last primary
        if decision == Decision.TAKE_OVER and not no_failover:
            self._acting = membership.run_in_background(
                become_primary(membership, "the arbiter lost the primary too (Table 3-1 row 7)")
            )
        elif decision == Decision.TAKE_OVER or replica.connected:
            # held by no failover; or lost as one event with the arbiter, but not yet given
            # up by the link
            return
        elif time.monotonic() - self._negotiated_at >= NEGOTIATE_EVERY_S:
            self._negotiated_at = time.monotonic()
            ask = decision == Decision.ASK_PRIMARY_AGENT and not no_failover
            work = self._ask_agent() if ask and self._agent_usable() else self._negotiate()
            self._acting = membership.run_in_background(work)

    def _agent_usable(self) -> bool:
        partner = self.membership.cfg.find(self.partner() or "")
        return (
            partner is not None
            and partner.agent is not None
            and self.membership.cfg.secret is not None
        )

    async def _ask_agent(self) -> None:
        """Agent Controlled (guide §3.3.5.1): the primary's agent confirms it down or forces it
        down; an Active backup within the trouble timeout of an Agent Controlled primary takes
        over with what it has, any other first fetches the latest journal through the agent
        (guide §3.3.2.3)."""
        membership = self.membership
        partner = membership.cfg.member(self.partner())
        if membership.fstate.primary != partner.name:
            await self._negotiate()  # this member was the last primary, not the partner
            return
        try:
            # the term this member takes over at (engine/member/membership.py start_primary)
            answer = await ask_partner_agent(membership, partner, term=membership.fstate.term + 1)
        except AgentUnreachable as exc:
            if self._agent_note != str(exc):
                self._agent_note = str(exc)
                log.warning(
                    "cannot reach the agent of primary %s (%s): no takeover", partner.name, exc
                )
            return
        self._agent_note = None
        state = answer.get("state")
        if state not in ("down", "forced_down"):
            return  # alive (the data channel reconnects) or not confirmed
        lost = self.partner_lost_at
        in_time = (
            lost is not None and time.monotonic() - lost <= 2 * membership.cfg.qos_timeout_ms / 1000
        )
        how = "confirmed it down" if state == "down" else "forced it down"
        # with what it has only from a primary that was Agent Controlled at the break, which
        # kept the trouble timeout; an Arbiter Controlled one whose arbiter lost this member
        # too carried on at once (row 6) and may have committed without it (docs/takeover.md)
        kept_timeout = membership.replica.primary_mode == rules.AGENT_CONTROLLED
        if membership.replica.active_when_lost and in_time and kept_timeout:
            reason = f"primary {partner.name}'s agent {how}; this member was its Active backup"
        else:
            got = await fetch_latest_journal(membership, partner, answer.get("files") or [])
            reason = (
                f"primary {partner.name}'s agent {how}; {got} bytes of its latest journal "
                "fetched through the agent"
            )
        await become_primary(membership, reason)

    async def _negotiate(self) -> None:
        """No primary answers: if this member was the last primary, and its partner answers
        as a backup that knows no later primary, become primary again (guide §6.2, U6)."""
        membership, partner_name = self.membership, self.partner()
        mine, cfg, me = membership.fstate, membership.cfg, membership.member.name
        # no record of any primary (failover.json lost, or from before it existed): the mirror
        # file's first failover member starts the mirror, if its partner has none either
        unrecorded = mine.term == 0 and not cfg.dynamic and me == cfg.first_primary.name
        if partner_name is None or (mine.primary != me and not unrecorded):
            self.waiting = None  # the partner is the one to act; this member keeps looking
            return
        partner = membership.cfg.member(partner_name)
        client = AsyncClient(
            [str(partner.superserver)],
            follow_primary=False,
            timeout=ASK_TIMEOUT_S,
            retries=0,
            **peer_tls(membership),
        )
        try:
            info = await client.info()
            theirs = FailoverState.from_wire(info.get("failover_state") or {})
        except (EngineError, OSError, TimeoutError, StateError) as exc:
            why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.waiting = (
                f"this member was the last primary (term {mine.term}) but cannot reach its "
                f"partner {partner_name} ({why}), which may have become primary since: it "
                "waits for the partner (or for an operator to force it primary)"
            )
            return
        finally:
            await client.close()
        if info.get("member") != partner_name or info.get("mirror") != membership.cfg.name:
            who = info.get("member")
            self.waiting = f"{partner.superserver} answers as {who}, not {partner_name}"
            return
        self.waiting = None
        if info.get("role") == "primary" or membership.replica.connected:
            return  # the data channel will find it
        if info.get("primary") not in (None, me, partner_name):
            # the partner follows another primary (a DR async promoted meanwhile): this
            # member looks for it too, among all members (engine/replication/receiver.py)
            return
        if theirs.later_than(mine):
            return
        if unrecorded:  # neither has known a primary
            await become_primary(membership, f"neither it nor {partner_name} knew a primary")
            return
        if theirs.term == mine.term and theirs.primary != membership.member.name:
            # only operators' forcing makes two primaries of one term: they choose again
            self.waiting = (
                f"both failover members were made primary at term {mine.term} (forced?): "
                "force the one whose data to keep (force_primary)"
            )
            return
        await become_primary(
            membership,
            f"the last primary (term {mine.term}), and partner {partner_name} knows no later one",
        )
