"""Table 3–1 of the guide (§3.3.5.2; docs/mirroring-model.md §9.6), one test per row: a mirror
in Arbiter Controlled mode (both failover members and the arbiter in contact, the backup
Active) loses some of its links, and each member does what the row says.  Real member
processes, a real arbiter, links cut in a TCP proxy of our own (tests/faults/mirror.py).
QoS is 1 s, so a lost link is noticed within about a second."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from engine import rules
from tests.engine.cluster_fixtures import wait_for
from tests.engine.test_write_contracts import journal_bytes
from tests.faults.mirror import LinkedMirror, arbiter_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(150)

ARBITER_CONTROLLED = (rules.ARBITER_CONTROLLED, rules.ARBITER_BOTH)
AGENT_ALONE = (rules.AGENT_CONTROLLED, rules.ARBITER_NOT_CONNECTED)
AGENT_WITH_ARBITER = (rules.AGENT_CONTROLLED, rules.ARBITER_ONLY_THIS)


@pytest.fixture
def mirror(tmp_path, arbiter):  # noqa: F811
    m = LinkedMirror(tmp_path / "mirror", arbiter, types=("failover", "failover", "dr"))
    try:
        m.start()
        m.wait_backup_active()
        for member in "AB":
            wait_for(lambda x=member: m.view(x) == ARBITER_CONTROLLED, 15, f"{member} Arbiter")
        yield m
    finally:
        m.close()


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


class Write:
    """A write to A on a thread of its own, to see when (and whether) it is answered."""

    def __init__(self, mirror: LinkedMirror):
        self.key = key()
        self.answered = threading.Event()
        self.error: Exception | None = None
        threading.Thread(target=self._run, args=(mirror,), daemon=True).start()

    def _run(self, mirror):
        try:
            with mirror.client("A", timeout=60, retries=0) as c:
                c.set("USER", "Faults", (self.key,), self.key)
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.answered.set()


def test_row_1_all_three_connected_is_arbiter_controlled(mirror):
    assert mirror.view("A") == mirror.view("B") == ARBITER_CONTROLLED
    assert mirror.role("A") == "primary" and mirror.role("B") == "backup"
    mirror.write(key())


def test_row_2_backup_loses_the_arbiter_both_switch_to_agent_controlled_primary_continues(
    mirror,
):
    with mirror.cut("B->arbiter"):
        wait_for(lambda: mirror.view("B") == AGENT_ALONE, 10, "B Agent Controlled, alone")
        wait_for(lambda: mirror.view("A")[0] == rules.AGENT_CONTROLLED, 10, "A Agent Controlled")
        mirror.write(key())  # the primary continues
        assert mirror.status("A")["status"] == rules.PRIMARY
        assert mirror.role("B") == "backup"
    # the backup retries the arbiter: all three again
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 15, f"{member} back")


def test_row_3_primary_loses_the_arbiter_both_switch_to_agent_controlled_primary_continues(
    mirror,
):
    with mirror.cut("A->arbiter"):
        wait_for(lambda: mirror.view("A") == AGENT_ALONE, 10, "A Agent Controlled, alone")
        # the switch waited for B's word that it heard it (docs/takeover.md, coordinated switch)
        assert "backup B heard the switch to Agent Controlled" in mirror.log("A")
        wait_for(lambda: mirror.view("B")[0] == rules.AGENT_CONTROLLED, 10, "B Agent Controlled")
        mirror.write(key())
        assert mirror.role("A") == "primary" and mirror.role("B") == "backup"
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 15, f"{member} back")


def test_row_4_members_lose_each_other_but_see_the_arbiter_primary_continues_no_takeover(
    mirror,
):
    with mirror.cut_between("A", "B"):
        # the primary is briefly in trouble, then continues once B switched mode
        written = Write(mirror)
        assert written.answered.wait(15) and written.error is None
        wait_for(lambda: mirror.view("B")[0] == rules.AGENT_CONTROLLED, 10, "B Agent Controlled")
        assert mirror.view("A")[0] == rules.AGENT_CONTROLLED
        assert mirror.role("B") == "backup" and mirror.role("A") == "primary"
        assert "becomes primary" not in mirror.log("B")
    # the backup retries the primary and is Active again, with what A wrote meanwhile
    mirror.wait_backup_active(timeout=20)
    assert written.key.encode() in journal_bytes(mirror, "B")
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 15, f"{member} back")


def test_row_5_arbiter_down_both_switch_to_agent_controlled_primary_continues(mirror):
    mirror.arbiter.stop()
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == AGENT_ALONE, 10, f"{member} alone")
    mirror.write(key())
    assert mirror.role("A") == "primary" and mirror.role("B") == "backup"
    mirror.arbiter.start()  # both retry the arbiter
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 15, f"{member} back")


def test_row_6_backup_down_primary_switches_to_agent_controlled_and_continues(mirror):
    mirror.kill9("B")
    wait_for(lambda: mirror.view("A") == AGENT_WITH_ARBITER, 10, "A Agent Controlled")
    written = Write(mirror)
    assert written.answered.wait(15) and written.error is None
    assert mirror.status("A")["status"] == rules.PRIMARY
    mirror.start("B")  # it retries the primary and rejoins as backup
    mirror.wait_backup_active(timeout=20)


def test_row_6_an_isolated_backup_switches_to_agent_controlled_and_never_takes_over(mirror):
    with mirror.isolate("B"):
        wait_for(lambda: mirror.view("B") == AGENT_ALONE, 10, "B Agent Controlled")
        wait_for(lambda: mirror.view("A") == AGENT_WITH_ARBITER, 10, "A Agent Controlled")
        mirror.write(key())
        assert mirror.role("B") == "backup"
    mirror.wait_backup_active(timeout=20)
    assert "becomes primary" not in mirror.log("B")


def test_row_7_primary_isolated_backup_takes_over_and_the_old_primary_stands_down(mirror):
    before = key()
    mirror.write(before)
    with mirror.isolate("A"):
        # A, alive, keeps Arbiter Controlled in trouble with no timeout: nothing committed
        held = Write(mirror)
        wait_for(lambda: mirror.role("B") == "primary", 15, "B primary")
        assert mirror.status("A")["status"] == rules.IN_TROUBLE
        assert mirror.view("A")[0] == rules.ARBITER_CONTROLLED
        assert not held.answered.is_set()  # journaled on A perhaps, never acknowledged
        assert mirror.view("B")[0] == rules.AGENT_CONTROLLED
        after = key()
        # the new primary takes writes; a client given both addresses passes over A, which
        # still answers as primary but is in trouble at an older term
        mirror.write(after)
        assert "the arbiter lost the primary too" in mirror.log("B")
    # connectivity returns: A hears that B is primary at a later term and stops for good
    wait_for(lambda: mirror.exited("A"), 15, "A to stop")
    assert "restart this member to rejoin as backup" in mirror.log("A")
    assert held.answered.wait(5) and held.error is not None  # never acknowledged
    mirror.forget("A")
    mirror.start("A")
    mirror.wait_backup_active(backup="A", primary="B", timeout=20)
    journal = journal_bytes(mirror, "A")
    assert before.encode() in journal and after.encode() in journal
    assert held.key.encode() not in journal


def test_row_8_all_links_lost_the_primary_waits_indefinitely_then_resumes_no_takeover(mirror):
    with mirror.cut():
        held = Write(mirror)
        wait_for(lambda: mirror.status("A")["status"] == rules.IN_TROUBLE, 10, "A In Trouble")
        wait_for(lambda: mirror.view("B") == AGENT_ALONE, 10, "B Agent Controlled")
        # well past the trouble timeout of Agent Controlled mode (2 x QoS): still in trouble
        assert not held.answered.wait(4 * mirror.qos_ms / 1000)
        assert mirror.status("A")["status"] == rules.IN_TROUBLE
        assert mirror.view("A")[0] == rules.ARBITER_CONTROLLED
        assert mirror.role("B") == "backup"
    # the backup contacts the primary again: it resumes, and the held write is answered
    assert held.answered.wait(20) and held.error is None
    mirror.wait_backup_active(timeout=20)
    assert mirror.role("A") == "primary" and "becomes primary" not in mirror.log("B")


def test_row_7_with_agents_the_new_primary_has_the_old_one_forced_down_at_once(
    tmp_path,
    arbiter,  # noqa: F811
):
    # guide §3.3.2.2: the new primary forces its predecessor down; here its agent can be
    # reached while its links to B and the arbiter are cut, so that happens before they heal
    mirror = LinkedMirror(tmp_path / "agents", arbiter, agents=True)
    try:
        mirror.start()
        mirror.wait_backup_active()
        for member in "AB":
            wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 15, f"{member}")
        old = mirror.procs["A"]
        with mirror.isolate("A"):
            wait_for(lambda: mirror.role("B") == "primary", 15, "B primary")
            assert old.wait(15) == -9  # SIGKILL from its agent, links still cut
        # B logs the agent's answer, which may arrive after A is seen gone
        wait_for(lambda: "its agent forced it down" in mirror.log("B"), 10, "B's log of it")
        mirror.forget("A")
        mirror.start("A")
        mirror.wait_backup_active(backup="A", primary="B", timeout=20)
    finally:
        mirror.close()


def test_row_7_a_new_primary_killed_before_the_links_heal_is_never_outlived_by_the_old_one(mirror):
    # found by the long random run (seed 584896100): B took over, died, and came back as a
    # backup that remembers its term; the old primary took B's relayed "Agent Controlled" as
    # the end of its trouble and went on at term 1 beside B's acknowledged term-2 writes
    with mirror.isolate("A"):
        wait_for(lambda: mirror.role("B") == "primary", 15, "B primary")
        after = key()
        mirror.write(after, "B")  # acknowledged by B at term 2 only
        mirror.procs["B"].kill()
        mirror.forget("B")
        held = Write(mirror)
    # back in contact with the arbiter, which does not see B: that proves nothing about what
    # B did meanwhile, so A stays in trouble
    wait_for(lambda: mirror.view("A")[1] != rules.ARBITER_NOT_CONNECTED, 10, "A's arbiter")
    assert not held.answered.wait(3 * mirror.qos_ms / 1000)
    assert mirror.status("A")["status"] == rules.IN_TROUBLE
    mirror.start("B", wait=False)
    # A hears through the arbiter that B knows term 2: it stops, whatever B's role now
    wait_for(lambda: mirror.exited("A"), 15, "A to stop")
    assert "was primary at term 2" in mirror.log("A")
    assert held.answered.wait(5) and held.error is not None  # never acknowledged at term 1
    mirror.forget("A")
    mirror.start("A")
    # restarted, A knows B's term: B, the last primary, is primary again, A its backup
    mirror.wait_backup_active(backup="A", primary="B", timeout=30)
    journal = journal_bytes(mirror, "A")
    assert after.encode() in journal and held.key.encode() not in journal


def test_row_6_an_active_backup_cut_off_takes_over_with_what_the_primary_committed_alone(
    tmp_path,
    arbiter,  # noqa: F811
):
    # found by the long random run (seed 590673112): B's links were cut but not its way to A's
    # agent; the arbiter lost B too, so A (row 6) carried on at once, committed without B, and
    # stopped.  B, Active at the break, heard "down" from A's agent within the trouble timeout
    # and took over with what it had: A's last acknowledged writes were lost.  A primary that
    # was Arbiter Controlled at the break kept no trouble timeout, so B fetches A's journal.
    mirror = LinkedMirror(tmp_path / "agents", arbiter, qos_ms=2000, agents=True)
    try:
        mirror.start()
        mirror.wait_backup_active()
        for member in "AB":
            wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 15, f"{member}")
        # B cut off in two steps, as the run saw it: A loses B while the arbiter still sees B
        # (A holds trouble), then the arbiter loses B too (row 6: A carries on at once)
        with mirror.cut_between("A", "B"):
            time.sleep(0.75 * mirror.qos_ms / 1000)
            with mirror.cut_between("B", "arbiter"):
                wait_for(lambda: mirror.view("A") == AGENT_WITH_ARBITER, 10, "A carrying on")
                assert "backup lost while the arbiter still sees it" in mirror.log("A")
                alone = key()
                mirror.write(alone, "A")  # acknowledged by A without B
                mirror.stop("A")  # graceful, with no Active backup to hand over to
                wait_for(lambda: mirror.role("B") == "primary", 20, "B primary")
        assert "latest journal fetched through the agent" in mirror.log("B")
        assert alone.encode() in journal_bytes(mirror, "B")
    finally:
        mirror.close()
