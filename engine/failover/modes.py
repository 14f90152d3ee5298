"""The failover mode and the decision of one failover member: pure logic, no I/O.

`decide(Knowledge(...))` takes what one failover member knows now and returns the mode it
should be in and what it should do (an Outcome).  It is meant to be called again at every
change of what the member knows (its partner link, its ArbiterLink's on_change): the mode
it returns is the only memory it keeps, which is how "after the first event is handled, any
later event before all links return follows the agent-controlled rules" (guide §3.3.5.2) is
kept — a member that has left Arbiter Controlled never takes a decision of that mode again
until all the conditions to enter it hold once more.

Modes (guide §3.3.5; docs/mirroring-model.md §9.4, §9.5):

- Agent Controlled (every mirror starts so): the arbiter plays no part in a decision.  A
  primary that loses an Active backup is in trouble until the backup confirms or the trouble
  timeout (2 × QoS) passes (guide §3.3.5.1); a backup that loses the primary asks the
  primary's agent (guide §3.3.2.2, §3.3.2.3), unless the arbiter has heard the primary since
  the break: then the primary is alive and the backup reconnects.
- Arbiter Controlled, entered only when the two failover members reach each other, each
  reaches the arbiter (and the arbiter sees the other, as proved by the mirror secret) and the
  backup is Active (guide §3.3.5.2).  What each does on a lost link is Table 3–1 (below, and
  docs/mirroring-model.md §9.6).

Table 3–1 as decided here (P primary, B backup, A arbiter; rows numbered as in the doc):

    1 nothing lost          P continue                     B continue            Arbiter
    2 B-A lost              P continue                     B continue            Agent
    3 P-A lost              P continue                     B continue            Agent
    4 P-B lost              P trouble_until_switch, then   B await_arbiter, then Agent
                              continue once B has switched   reconnect
    5 arbiter gone          P continue                     B continue            Agent
    6 backup gone           P continue (once A lost B)     B ask_primary_agent   Agent
    7 primary gone          P trouble_indefinite           B take_over           B: Agent
    8 all three             P trouble_indefinite           B ask_primary_agent   Agent once
                                                                                 resolved

Two choices beyond the table's words, both for the case where one network event is seen at
different moments by the three parties (the arbiter drops a silent member only after its
timeout, a link notices a break only after its QoS):

- Row 4, the primary: "carries on" only once the backup is known not to take over — the
  arbiter relays that the backup has switched to Agent Controlled, or that it lost the
  backup.  Until then it commits nothing (trouble_until_switch).  Otherwise a primary that
  carried on at once and died a moment later could be replaced by a backup, still in Arbiter
  Controlled, that lacks what the primary committed in between.
- Row 4 and 7, the backup: the arbiter still showing the primary right after the break may be
  a view not yet updated (row 7 before the arbiter's timeout).  The backup waits
  (await_arbiter) until the arbiter either hears the primary after the break (alive: row 4,
  reconnect) or loses it (row 7: take over).  It takes over only from a primary the arbiter
  last relayed as Arbiter Controlled: a primary that had already switched to Agent
  Controlled may have committed without it.

Rows 6 and 8 for the backup: it has lost both the primary and the arbiter, so it cannot
confirm anything through the arbiter; it switches to Agent Controlled at once (so an arbiter
coming back later can never make it take over on a stale basis) and "retries the primary"
the agent-controlled way: through the primary's agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.rules import AGENT_CONTROLLED, ARBITER_CONTROLLED, FAILOVER_MODES

PRIMARY, BACKUP = "primary", "backup"
ROLES = (PRIMARY, BACKUP)


class Decision(StrEnum):
    """What one failover member does now."""

    CONTINUE = "continue"  # carry on in its role
    RECONNECT = "reconnect"  # backup: the primary is alive, connect to it again
    # primary: commit nothing until the backup is known not to take over (it switched to Agent
    # Controlled, or the arbiter lost it); then continue
    TROUBLE_UNTIL_SWITCH = "trouble_until_switch"
    # primary, Agent Controlled: an Active backup was lost; commit nothing until it confirms it
    # is no longer active or the trouble timeout (2 × QoS) passes (guide §3.3.5.1)
    TROUBLE_UNTIL_TIMEOUT = "trouble_until_timeout"
    # primary: it cannot know whether the backup took over; commit nothing until the backup
    # reaches it again (then it resumes) or an operator acts (guide §3.3.5.2, rows 7 and 8)
    TROUBLE_INDEFINITE = "trouble_indefinite"
    # backup: the arbiter still shows the primary but has not heard it since the break: wait
    # until it hears it (reconnect) or loses it (take over)
    AWAIT_ARBITER = "await_arbiter"
    TAKE_OVER = "take_over"  # backup: become primary (and force the old one down once reachable)
    # backup, Agent Controlled: ask the primary's agent whether the primary is down (guide
    # §3.3.2.2, §3.3.2.3); the answer decides between reconnecting and taking over
    ASK_PRIMARY_AGENT = "ask_primary_agent"


@dataclass(frozen=True)
class Knowledge:
    """What one failover member knows at a moment.

    partner_link          its data channel to the partner is up
    arbiter_link          it is registered with the arbiter (ArbiterLink.connected)
    arbiter_sees_partner  the arbiter sees the partner, proof checked (ArbiterLink.partner_seen)
    backup_active         the backup is Active (for a backup that lost the primary: it was,
                          when the link broke)
    partner_mode          the partner's failover mode as the arbiter last relayed it (kept
                          after the partner is lost; None: never heard)
    partner_role          the partner's role as last relayed ("primary" once it took over)
    partner_heard_since_break  the arbiter heard the partner after the partner link broke
    arbiter_held          the arbiter link has stayed up since the partner link broke (True
                          while the partner link is up)
    partner_mode_heard    backup: the primary's failover mode as its last heartbeat on the
                          data channel announced it (None: not heard this session).  Fresher
                          than the arbiter's relay when the primary has lost the arbiter
    """

    role: str
    mode: str = AGENT_CONTROLLED
    partner_link: bool = True
    arbiter_link: bool = False
    arbiter_sees_partner: bool = False
    backup_active: bool = False
    partner_mode: str | None = None
    partner_role: str | None = None
    partner_heard_since_break: bool = False
    arbiter_held: bool = True
    partner_mode_heard: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.mode not in FAILOVER_MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(FAILOVER_MODES)}")


@dataclass(frozen=True)
class Outcome:
    mode: str
    decision: Decision


def decide(k: Knowledge) -> Outcome:
    """The mode this member should be in now, and what it should do."""
    # what the arbiter says of the partner counts only while this member is registered there
    sees = k.arbiter_link and k.arbiter_sees_partner
    if k.mode == ARBITER_CONTROLLED:
        return _arbiter_controlled(k, sees)
    return _agent_controlled(k, sees)


def _agent_controlled(k: Knowledge, sees: bool) -> Outcome:
    if k.partner_link:
        if k.arbiter_link and sees and k.backup_active:
            # all three parties reach each other and the backup is Active (guide §3.3.5.2)
            return Outcome(ARBITER_CONTROLLED, Decision.CONTINUE)
        return Outcome(AGENT_CONTROLLED, Decision.CONTINUE)
    if k.role == PRIMARY:
        # losing a backup that was not Active causes no trouble state (guide §3.3.5.1)
        decision = Decision.TROUBLE_UNTIL_TIMEOUT if k.backup_active else Decision.CONTINUE
        return Outcome(AGENT_CONTROLLED, decision)
    if sees and k.partner_heard_since_break:
        return Outcome(AGENT_CONTROLLED, Decision.RECONNECT)  # the primary is alive
    return Outcome(AGENT_CONTROLLED, Decision.ASK_PRIMARY_AGENT)


def _arbiter_controlled(k: Knowledge, sees: bool) -> Outcome:
    if k.partner_link:
        if k.arbiter_link and sees and k.backup_active:
            return Outcome(ARBITER_CONTROLLED, Decision.CONTINUE)  # row 1
        # an arbiter link lost on either side (rows 2, 3, 5) or the backup no longer Active:
        # the members still reach each other, so both carry on Agent Controlled
        return Outcome(AGENT_CONTROLLED, Decision.CONTINUE)
    if k.role == PRIMARY:
        return _primary_lost_backup(k, sees)
    return _backup_lost_primary(k, sees)


def _primary_lost_backup(k: Knowledge, sees: bool) -> Outcome:
    if not k.arbiter_link:
        # rows 7 and 8: the backup may have taken over, and nothing can say it has not
        return Outcome(ARBITER_CONTROLLED, Decision.TROUBLE_INDEFINITE)
    if not sees and k.arbiter_held:
        # row 6: the backup cannot take over without the arbiter, and the arbiter saw this
        # member all along, so it never told the backup that the primary was gone
        return Outcome(AGENT_CONTROLLED, Decision.CONTINUE)
    if not sees:
        # back in contact with the arbiter, which does not see the backup now; but while this
        # member was out of its reach, it may have told the backup that the primary was gone,
        # and the backup may have taken over and died since: only the backup's own word (or an
        # operator) ends this trouble, as in rows 7 and 8
        return Outcome(ARBITER_CONTROLLED, Decision.TROUBLE_INDEFINITE)
    if k.partner_role == PRIMARY:
        return Outcome(ARBITER_CONTROLLED, Decision.TROUBLE_INDEFINITE)  # it took over
    if k.partner_mode == AGENT_CONTROLLED and k.partner_heard_since_break:
        return Outcome(AGENT_CONTROLLED, Decision.CONTINUE)  # row 4: it will not take over
    # row 4, not yet known: a mode relayed before the break may predate the backup's entry
    # into Arbiter Controlled (the relay lags), so only one heard after the break counts
    return Outcome(ARBITER_CONTROLLED, Decision.TROUBLE_UNTIL_SWITCH)


def _backup_lost_primary(k: Knowledge, sees: bool) -> Outcome:
    if not k.arbiter_link:
        # rows 6 and 8: nothing can be confirmed through the arbiter
        return Outcome(AGENT_CONTROLLED, Decision.ASK_PRIMARY_AGENT)
    if not sees:
        # the relay is the primary's last word to the arbiter; a primary that then lost the
        # arbiter told this member its switch on the data channel instead (_coordinated in
        # engine/member/failover_watch.py), and that word is the later one
        arbiter_controlled = (
            k.partner_mode == ARBITER_CONTROLLED and k.partner_mode_heard != AGENT_CONTROLLED
        )
        if k.backup_active and arbiter_controlled:
            return Outcome(AGENT_CONTROLLED, Decision.TAKE_OVER)  # row 7
        # not Active, or a primary that had left Arbiter Controlled: agent-controlled rules
        return Outcome(AGENT_CONTROLLED, Decision.ASK_PRIMARY_AGENT)
    if k.partner_heard_since_break:
        return Outcome(AGENT_CONTROLLED, Decision.RECONNECT)  # row 4: the primary is alive
    return Outcome(ARBITER_CONTROLLED, Decision.AWAIT_ARBITER)
