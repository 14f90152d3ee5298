"""Failover mode and decision of each failover member, row by row of guide Table 3–1
(docs/mirroring-model.md §9.6, engine/failover/modes.py): all three parties connected, the
backup Active and both members Arbiter Controlled; then one event, seen from the primary and
from the backup.  Then the rules around the table: entering Arbiter Controlled (§3.3.5.2),
Agent Controlled (§3.3.5.1), and the moments when the three parties have not yet all seen
the same event."""

import pytest

from engine.failover.modes import BACKUP, PRIMARY, Decision, Knowledge, Outcome, decide
from engine.rules import AGENT_CONTROLLED, ARBITER_CONTROLLED

ARB, AGENT = ARBITER_CONTROLLED, AGENT_CONTROLLED


def primary(**lost) -> Knowledge:
    """The primary's knowledge in Arbiter Controlled, with the backup Active, minus `lost`."""
    return _view(PRIMARY, BACKUP, **lost)


def backup(**lost) -> Knowledge:
    return _view(BACKUP, PRIMARY, **lost)


def _view(role, partner_is, partner_link=True, arbiter_link=True, sees=True, **extra):
    view = Knowledge(
        role=role,
        mode=extra.pop("mode", ARB),
        partner_link=partner_link,
        arbiter_link=arbiter_link,
        arbiter_sees_partner=sees,
        backup_active=extra.pop("backup_active", True),
        partner_mode=extra.pop("partner_mode", ARB),
        partner_role=extra.pop("partner_role", partner_is),
        partner_heard_since_break=extra.pop("heard", False),
        partner_mode_heard=extra.pop("heard_on_data_channel", None),
        arbiter_held=extra.pop("arbiter_held", True),
    )
    assert not extra, f"not a field: {extra}"
    return view


# -- Table 3–1, row by row -------------------------------------------------------------


def test_row_1_nothing_lost_the_primary_carries_on_arbiter_controlled():
    assert decide(primary()) == Outcome(ARB, Decision.CONTINUE)


def test_row_1_nothing_lost_the_backup_carries_on_arbiter_controlled():
    assert decide(backup()) == Outcome(ARB, Decision.CONTINUE)


def test_row_2_backup_lost_the_arbiter_the_primary_carries_on_agent_controlled():
    # the primary sees it only as: the arbiter no longer sees the backup
    assert decide(primary(sees=False)) == Outcome(AGENT, Decision.CONTINUE)


def test_row_2_backup_lost_the_arbiter_the_backup_carries_on_agent_controlled():
    assert decide(backup(arbiter_link=False)) == Outcome(AGENT, Decision.CONTINUE)


def test_row_3_primary_lost_the_arbiter_the_primary_carries_on_agent_controlled():
    assert decide(primary(arbiter_link=False)) == Outcome(AGENT, Decision.CONTINUE)


def test_row_3_primary_lost_the_arbiter_the_backup_stays_backup_agent_controlled():
    assert decide(backup(sees=False)) == Outcome(AGENT, Decision.CONTINUE)


def test_row_4_members_lost_each_other_the_primary_waits_for_the_backup_to_switch():
    # the arbiter still sees the backup, which has not yet switched: it could still take
    # over, so nothing is committed until it has
    assert decide(primary(partner_link=False)) == Outcome(ARB, Decision.TROUBLE_UNTIL_SWITCH)
    # the arbiter relays that the backup switched: the primary carries on
    switched = primary(partner_link=False, partner_mode=AGENT, heard=True)
    assert decide(switched) == Outcome(AGENT, Decision.CONTINUE)


def test_row_4_a_switch_relayed_before_the_break_does_not_count():
    # the arbiter's last word on the backup predates the break: it may be from before the
    # backup entered Arbiter Controlled (the relay lags), and then the backup may be taking
    # over right now (row 7 seen from its side); the switch must be heard after the break
    stale = primary(partner_link=False, partner_mode=AGENT, heard=False)
    assert decide(stale) == Outcome(ARB, Decision.TROUBLE_UNTIL_SWITCH)


def test_row_4_members_lost_each_other_the_backup_retries_the_primary_agent_controlled():
    # right after the break the arbiter's view may be old: the backup waits for it
    assert decide(backup(partner_link=False)) == Outcome(ARB, Decision.AWAIT_ARBITER)
    # the arbiter heard the primary after the break: it is alive; reconnect to it
    alive = backup(partner_link=False, heard=True)
    assert decide(alive) == Outcome(AGENT, Decision.RECONNECT)


def test_row_5_arbiter_gone_the_primary_carries_on_agent_controlled():
    assert decide(primary(arbiter_link=False, sees=False)) == Outcome(AGENT, Decision.CONTINUE)


def test_row_5_arbiter_gone_the_backup_stays_backup_agent_controlled():
    assert decide(backup(arbiter_link=False, sees=False)) == Outcome(AGENT, Decision.CONTINUE)


def test_row_6_backup_gone_the_primary_carries_on_agent_controlled():
    # the arbiter lost the backup too: a backup without the arbiter can never take over
    gone = primary(partner_link=False, sees=False)
    assert decide(gone) == Outcome(AGENT, Decision.CONTINUE)


def test_an_isolated_primary_back_in_contact_with_the_arbiter_alone_stays_in_trouble():
    # rows 7 and 8 healed as far as the arbiter: it does not see the backup now, but while this
    # member was out of its reach the backup may have taken over and died since
    back = primary(partner_link=False, sees=False, arbiter_held=False)
    assert decide(back) == Outcome(ARB, Decision.TROUBLE_INDEFINITE)


def test_row_6_backup_isolated_it_never_takes_over_and_retries_the_primary_via_its_agent():
    isolated = backup(partner_link=False, arbiter_link=False, sees=False)
    assert decide(isolated) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)


def test_row_7_primary_isolated_it_stays_in_trouble_indefinitely():
    isolated = primary(partner_link=False, arbiter_link=False, sees=False)
    assert decide(isolated) == Outcome(ARB, Decision.TROUBLE_INDEFINITE)


def test_row_7_primary_gone_the_backup_takes_over_and_is_agent_controlled_afterwards():
    gone = backup(partner_link=False, sees=False)
    assert decide(gone) == Outcome(AGENT, Decision.TAKE_OVER)


def test_row_7_a_primary_that_announced_agent_controlled_on_the_data_channel_is_not_replaced():
    # it lost the arbiter first, told the backup its switch in a heartbeat, then lost the
    # backup: the arbiter's relay still says Arbiter Controlled, the heartbeat is the later word
    gone = backup(partner_link=False, sees=False, heard_on_data_channel=AGENT)
    assert decide(gone) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)
    announced_arbiter = backup(partner_link=False, sees=False, heard_on_data_channel=ARB)
    assert decide(announced_arbiter) == Outcome(AGENT, Decision.TAKE_OVER)


def test_row_8_all_lost_the_primary_stays_in_trouble_indefinitely():
    alone = primary(partner_link=False, arbiter_link=False, sees=False)
    assert decide(alone) == Outcome(ARB, Decision.TROUBLE_INDEFINITE)


def test_row_8_all_lost_the_primary_resumes_when_the_backup_reaches_it_again():
    # the backup came back as backup (it did not take over): only the arbiter is missing
    back = primary(arbiter_link=False, sees=False)
    assert decide(back) == Outcome(AGENT, Decision.CONTINUE)


def test_row_8_all_lost_the_backup_never_takes_over_and_retries_the_primary():
    alone = backup(partner_link=False, arbiter_link=False, sees=False)
    outcome = decide(alone)
    assert outcome.decision != Decision.TAKE_OVER
    assert outcome == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)


# -- entering and leaving Arbiter Controlled (guide §3.3.5.2) --------------------------


def test_both_members_enter_arbiter_controlled_once_all_three_connect_and_the_backup_is_active():
    for view in (primary(mode=AGENT), backup(mode=AGENT)):
        assert decide(view) == Outcome(ARB, Decision.CONTINUE)


def test_without_any_one_of_the_conditions_the_mirror_stays_agent_controlled():
    for missing in (
        {"arbiter_link": False},
        {"sees": False},
        {"backup_active": False},
    ):
        for view in (primary(mode=AGENT, **missing), backup(mode=AGENT, **missing)):
            assert decide(view) == Outcome(AGENT, Decision.CONTINUE), missing


def test_a_backup_no_longer_active_switches_both_members_to_agent_controlled():
    for view in (primary(backup_active=False), backup(backup_active=False)):
        assert decide(view) == Outcome(AGENT, Decision.CONTINUE)


# -- Agent Controlled (guide §3.3.5.1): the arbiter decides nothing -------------------


def test_agent_controlled_primary_losing_an_active_backup_is_in_trouble_until_the_timeout():
    lost = primary(mode=AGENT, partner_link=False, sees=False)
    assert decide(lost) == Outcome(AGENT, Decision.TROUBLE_UNTIL_TIMEOUT)


def test_agent_controlled_primary_losing_a_backup_not_active_carries_on():
    lost = primary(mode=AGENT, partner_link=False, backup_active=False)
    assert decide(lost) == Outcome(AGENT, Decision.CONTINUE)


def test_agent_controlled_backup_never_takes_over_on_the_arbiters_word():
    # the arbiter lost the primary, but the mirror is Agent Controlled: ask its agent
    gone = backup(mode=AGENT, partner_link=False, sees=False)
    assert decide(gone) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)


def test_agent_controlled_backup_reconnects_to_a_primary_the_arbiter_still_hears():
    alive = backup(mode=AGENT, partner_link=False, heard=True)
    assert decide(alive) == Outcome(AGENT, Decision.RECONNECT)
    # seen, but not heard since the break: it may be gone; its agent can tell
    stale = backup(mode=AGENT, partner_link=False)
    assert decide(stale) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)


# -- the three parties seeing one event at different moments ------------------------------


def test_a_backup_that_lost_everything_never_takes_over_when_the_arbiter_comes_back():
    # rows 6 and 8: it switched to Agent Controlled at once ...
    first = decide(backup(partner_link=False, arbiter_link=False, sees=False))
    # ... so an arbiter reconnecting later, no longer seeing a primary that went on alone
    # and then died, is no reason to take over: its decisions follow the agent rules
    later = backup(mode=first.mode, partner_link=False, sees=False)
    assert decide(later).decision == Decision.ASK_PRIMARY_AGENT


def test_the_backup_takes_over_only_from_a_primary_last_seen_arbiter_controlled():
    # the primary had switched to Agent Controlled (and may have committed alone) before
    # the arbiter lost it
    gone = backup(partner_link=False, sees=False, partner_mode=AGENT)
    assert decide(gone) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)
    never_heard = backup(partner_link=False, sees=False, partner_mode=None)
    assert decide(never_heard).decision != Decision.TAKE_OVER


def test_a_backup_not_active_never_takes_over_on_the_arbiters_word():
    gone = backup(partner_link=False, sees=False, backup_active=False)
    assert decide(gone) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)


def test_a_waiting_backup_takes_over_once_the_arbiter_loses_the_primary():
    waiting = decide(backup(partner_link=False))
    assert waiting == Outcome(ARB, Decision.AWAIT_ARBITER)
    then = backup(mode=waiting.mode, partner_link=False, sees=False)
    assert decide(then) == Outcome(AGENT, Decision.TAKE_OVER)


def test_a_holding_primary_carries_on_once_the_arbiter_loses_the_backup():
    holding = decide(primary(partner_link=False))
    assert holding == Outcome(ARB, Decision.TROUBLE_UNTIL_SWITCH)
    then = primary(mode=holding.mode, partner_link=False, sees=False)
    assert decide(then) == Outcome(AGENT, Decision.CONTINUE)


def test_a_primary_whose_backup_took_over_never_resumes_through_the_arbiter():
    # back in contact with the arbiter, which shows the old backup as primary now
    replaced = primary(partner_link=False, partner_role=PRIMARY, partner_mode=AGENT)
    assert decide(replaced) == Outcome(ARB, Decision.TROUBLE_INDEFINITE)


def test_the_arbiters_view_counts_only_while_the_member_is_registered_there():
    # a stale "sees the partner (and heard it)" from before the arbiter link dropped is no
    # sign that the primary is alive: its agent is asked
    stale = backup(mode=AGENT, partner_link=False, arbiter_link=False, heard=True)
    assert decide(stale) == Outcome(AGENT, Decision.ASK_PRIMARY_AGENT)
    stale = primary(partner_link=False, arbiter_link=False, partner_mode=AGENT)
    assert decide(stale) == Outcome(ARB, Decision.TROUBLE_INDEFINITE)


def test_a_role_or_mode_out_of_the_catalog_is_refused():
    with pytest.raises(ValueError, match="role"):
        Knowledge(role="async")
    with pytest.raises(ValueError, match="mode"):
        Knowledge(role=PRIMARY, mode="Arbiter controlled")


def test_the_arbiter_may_not_share_a_host_with_a_member_that_can_become_primary():
    from engine.rules import RuleError, check_arbiter_placement

    with pytest.raises(RuleError) as refused:
        check_arbiter_placement("Host-B", ["host-a", "host-b"])  # names compare in any case
    assert refused.value.reason == "arbiter_on_member_host"
    assert "Host-B" in refused.value.message
    check_arbiter_placement("arbiter-host", ["host-a", "host-b"])  # elsewhere: fine
    check_arbiter_placement(None, ["host-a"])  # no arbiter: nothing to check
