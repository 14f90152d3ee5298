"""From agent records to member states and history events (monitor/states.py): what becomes an
event, what is only a moving figure, and which member a record speaks for."""

from monitor.models import Event
from monitor.states import (
    changes,
    follow_takeover,
    keep_last_known,
    members_of,
    phase,
    reported_type,
    significant,
    state_of,
    took_over,
    unreachable,
)


def record(**fields) -> dict:
    base = {
        "name": "B",
        "member": "B",
        "mirror": "SHOP",
        "state": "up",
        "type": "Failover",
        "status": "Backup",
        "journal_transfer": "Active",
        "dejournaling": "Caught up",
        "journal_transfer_latency_s": 0.0,
        "dejournal_latency_s": 0.0,
        "databases": [{"name": "ORDERS", "status": "Dejournaling", "applied": [1, 10]}],
        "journal_end": [1, 10],
    }
    return base | fields


def test_behind_by_more_or_fewer_seconds_is_one_phase():
    assert phase("5 s behind") == phase("2 min behind") == "behind"
    assert phase("Disconnected on 12/05/2026 10:00:01") == "disconnected"
    assert phase("Active") == "Active"


def test_a_status_change_is_an_event_and_in_trouble_is_a_trouble_event():
    old = state_of(record())

    down = changes("B", old, state_of(record(status="Down", state="down")))
    trouble = changes(
        "A", state_of(record(status="Primary")), state_of(record(status="In Trouble"))
    )

    assert (Event.STATUS, "Backup", "Down", "B: Backup → Down") in down
    assert [kind for kind, *_ in trouble] == [Event.TROUBLE]


def test_a_lag_moving_is_no_event_and_not_urgent_but_a_new_phase_is_both():
    old = state_of(record(journal_transfer="3 s behind", journal_transfer_latency_s=3.0))
    later = state_of(record(journal_transfer="9 s behind", journal_transfer_latency_s=9.0))
    caught_up = state_of(record(journal_transfer="Caught up"))

    assert changes("B", old, later) == []
    assert not significant(old, later)
    assert [kind for kind, *_ in changes("B", old, caught_up)] == [Event.JOURNAL_TRANSFER]
    assert significant(old, caught_up)


def test_a_journal_position_moving_is_not_urgent_but_a_database_status_is():
    old = state_of(record())
    written = state_of(record(journal_end=[1, 99]))
    needs = state_of(record(databases=[{"name": "ORDERS", "status": "Needs Catchup"}]))

    assert not significant(old, written)
    assert significant(old, needs)
    assert changes("B", old, needs) == [
        (Event.DATABASE, "Dejournaling", "Needs Catchup", "B: ORDERS Dejournaling → Needs Catchup")
    ]


def test_members_waiting_for_authorization_come_and_go_in_the_history():
    old = state_of(record(pending_members=[]))
    new = state_of(record(pending_members=[{"name": "DR", "type": "dr", "dn": "CN=DR"}]))

    assert changes("A", old, new) == [
        (Event.PENDING, "", "pending", "A: DR waits for authorization")
    ]
    assert changes("A", new, old)[0][3] == "A: DR no longer pending"


def test_an_unreachable_agent_keeps_the_last_status_and_says_why():
    old = state_of(record())

    stale = unreachable(old, "unreachable at https://10.0.0.2:2188")

    assert stale["status"] == "Backup" and stale["agent_reachable"] is False
    assert significant(old, stale)
    assert changes("B", old, stale) == [
        (Event.AGENT, "reachable", "unreachable", "B: agent unreachable at https://10.0.0.2:2188")
    ]


def test_a_down_instance_speaks_for_the_member_it_was_in_every_mirror():
    down = {"name": "inst-b", "state": "down", "status": "Down", "mirror": None, "member": None}

    assert members_of(down, known_as="B") == [("", "B", down)]


def test_a_reporting_async_in_two_mirrors_is_two_members():
    rec = {
        "name": "REP",
        "member": "REP",
        "state": "up",
        "status": "2/2",
        "mirrors": {
            "SHOP": {"member": "REP", "status": "Connected", "journal_transfer": "Caught up"},
            "BOOKS": {"member": "REP", "status": "Synchronizing"},
        },
    }

    seen = {(mirror, member): flat["status"] for mirror, member, flat in members_of(rec, None)}

    assert seen == {("SHOP", "REP"): "Connected", ("BOOKS", "REP"): "Synchronizing"}


def test_a_member_seen_for_the_first_time_is_one_line_of_history():
    assert changes("B", None, state_of(record())) == [
        (Event.STATUS, "", "Backup", "B: Backup (first seen)")
    ]


def test_the_primary_seeing_a_member_disconnect_is_urgent_its_lag_moving_is_not():
    def primary(transfer):
        links = [{"member": "B", "status": "Backup", "journal_transfer": transfer}]
        return state_of(record(member="A", status="Primary", members=links))

    assert not significant(primary("2 s behind"), primary("3 s behind"))
    assert significant(primary("Active"), primary("Disconnected on 12/06/2026 07:01:39"))


def test_a_member_that_went_down_keeps_its_last_databases_and_none_is_removed():
    old = state_of(record())
    down = state_of(record(state="down", status="Down", databases=None, journal_transfer=None))

    kept = keep_last_known(old, down)

    assert kept["record"]["databases"] == old["record"]["databases"]
    assert [kind for kind, *_ in changes("B", old, kept)] == [Event.STATUS]


# --- Takeovers: a member's role becoming primary ----------------------------------------------
def test_a_backup_whose_role_becomes_primary_took_over_and_says_whom_it_followed():
    old = state_of(record(role="backup", primary="A"))
    new = state_of(record(role="primary", status="Primary"))

    events = [e for e in changes("B", old, new) if e[0] == Event.TAKEOVER]

    assert events == [
        (
            Event.TAKEOVER,
            "backup",
            "primary",
            "B: takeover, now the primary (was backup, following A)",
        )
    ]
    marked = follow_takeover(old, new, "2026-12-06T12:00:00+00:00")
    assert marked["record"]["took_over_at"] == "2026-12-06T12:00:00+00:00"
    assert marked["record"]["took_over_from"] == "A"


def test_a_takeover_names_the_former_primary_the_new_one_reports_when_the_last_sample_had_none():
    # sampled after the old primary went and before the takeover: following nobody
    old = state_of(record(role="backup"))
    new = state_of(record(role="primary", status="Primary", took_over_from="A"))

    marked = follow_takeover(old, new, "T1")

    assert marked["record"]["took_over_from"] == "A"


def test_the_takeover_mark_stays_while_the_member_is_primary_and_goes_after():
    old = state_of(record(role="backup", primary="A"))
    primary = follow_takeover(old, state_of(record(role="primary")), "T1")

    still = follow_takeover(primary, state_of(record(role="primary")), "T2")
    demoted = follow_takeover(still, state_of(record(role="backup")), "T3")

    assert still["record"]["took_over_at"] == "T1"
    assert "took_over_at" not in demoted["record"]


def test_a_primary_seen_first_or_back_as_primary_after_going_down_took_nothing_over():
    primary = state_of(record(role="primary", status="Primary"))
    down = keep_last_known(primary, state_of(record(state="down", role=None, status="Down")))
    back = state_of(record(role="primary", status="Primary"))

    assert down["record"]["role"] == "primary"  # its last known role
    assert not took_over(None, primary)
    assert not took_over(down, back)
    assert Event.TAKEOVER not in [e[0] for e in changes("A", down, back)]


def test_the_type_a_member_reports_is_its_type_and_a_change_of_it_is_urgent():
    backup = state_of(record())
    demoted = state_of(record(type="Disaster Recovery", status="Connected"))
    outsider = state_of(record(type="Not a member", status="Not initialized"))

    assert (reported_type(backup), reported_type(demoted)) == ("failover", "dr")
    assert reported_type(outsider) is None and reported_type(state_of({})) is None
    # down, it says the last type it had, in its first mirror: not a word about this one
    assert reported_type(state_of(record(state="down", status=None))) is None
    assert significant(state_of(record(type="Disaster Recovery")), backup)
