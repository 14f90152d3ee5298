"""The collector against a real mirror: it follows the agents' status streams, keeps each
member's live state, and writes the history of what changed — a backup killed with SIGKILL is
Down within a second or two, and Backup again once it is started and has caught up."""

import pytest
from django.db import OperationalError

from members.models import Member
from monitor.models import Event, MemberState
from tests.monitor.live_cluster import wait_for

pytestmark = [pytest.mark.timeout(240)]


def live(name: str) -> MemberState | None:
    return MemberState.objects.filter(member__name=name).first()


def status_of(name: str) -> str:
    state = live(name)
    return state.status if state else ""


def test_the_collector_shows_each_member_as_its_agent_streams_it(collector):
    wait_for(lambda: status_of("DR") == "Connected", what="every member read")

    assert status_of("A") == "Primary"
    assert status_of("B") == "Backup"
    assert live("B").journal_transfer == "Active"
    assert live("A").record["failover_mode"] == "Agent Controlled"
    assert [d["name"] for d in live("B").record["databases"]] == ["ORDERS"]
    # the portal's member rows follow what the members said
    assert Member.objects.get(name="B").status == "Backup"


def test_a_killed_backup_is_down_then_backup_again_with_its_history(collector, live_portal):
    wait_for(lambda: live("B") and live("B").journal_transfer == "Active", what="B active")

    argv = live_portal.kill("B")

    wait_for(lambda: status_of("B") == "Down", timeout=5, what="B down")
    assert Member.objects.get(name="B").status == "Down"
    down = Event.objects.get(member_name="B", kind=Event.STATUS, after="Down")
    # refused at once (Down), or first no answer in time from the dying process (Error)
    assert down.before in ("Backup", "Error") and down.mirror_name == "LIVE"

    live_portal.start_again("B", argv)

    wait_for(lambda: status_of("B") == "Backup", timeout=60, what="B backup again")
    wait_for(lambda: live("B").journal_transfer == "Active", timeout=30, what="B active again")
    history = [
        (e.before, e.after)
        for e in Event.objects.filter(member_name="B", kind=Event.STATUS).order_by("at", "id")
    ]
    assert history[0] == ("", "Backup")  # first seen
    assert history[1] in (("Backup", "Down"), ("Backup", "Error")), history
    assert history[-1][1] == "Backup"
    assert [after for _, after in history].count("Down") == 1, history


def test_members_whose_agent_cannot_be_reached_are_marked_so_until_it_answers_again(
    collector, live_portal
):
    wait_for(lambda: status_of("DR") == "Connected", what="every member read")

    argv = live_portal.kill("beta", kind="agent")  # B and DR live on beta

    wait_for(lambda: not live("DR").agent_reachable, timeout=10, what="DR marked unreachable")
    assert not live("B").agent_reachable and live("A").agent_reachable
    assert live("DR").status == "Connected"  # the last word, shown as stale
    lost = Event.objects.get(member_name="DR", kind=Event.AGENT, after="unreachable")
    assert "unreachable at https://127.0.0.1:" in lost.text

    live_portal.start_again("beta", argv, kind="agent")

    wait_for(lambda: live("DR").agent_reachable, timeout=20, what="DR reachable again")
    assert Event.objects.filter(member_name="DR", kind=Event.AGENT, after="reachable").exists()


def test_a_change_whose_write_failed_is_written_once_the_database_answers_again(
    collector, live_portal, monkeypatch
):
    # a deadlock (CI saw one on PostgreSQL, against a job's transaction) or a restart rolls the
    # collector's write back: what it had noted must still reach the database, once
    from monitor.collector import Collector

    wait_for(lambda: live("B") and live("B").journal_transfer == "Active", what="B active")
    backup = Member.objects.get(name="B").pk
    failed = []
    write = Collector._save_states

    def deadlocked_once(self, rows):
        if not failed and any(r.member_id == backup and r.status != "Backup" for r in rows):
            failed.append([r.status for r in rows if r.member_id == backup])
            raise OperationalError("deadlock detected (injected by the test)")
        return write(self, rows)

    monkeypatch.setattr(Collector, "_save_states", deadlocked_once)
    argv = live_portal.kill("B")

    wait_for(lambda: failed, timeout=5, what="the write of B's loss to fail")
    wait_for(lambda: status_of("B") == "Down", timeout=10, what="B down all the same")
    assert Member.objects.get(name="B").status == "Down"
    assert Event.objects.filter(member_name="B", kind=Event.STATUS, after="Down").count() == 1

    live_portal.start_again("B", argv)
    wait_for(lambda: status_of("B") == "Backup", timeout=60, what="B backup again")
