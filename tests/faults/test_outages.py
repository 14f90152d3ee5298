"""The guide's outage combinations (§3.3.3; docs/mirroring-model.md §9.7) and the planned and
unplanned procedures of its chapter 6 not covered elsewhere, each named after its scenario or
procedure ID (docs/takeover.md, "Tests", lists where the others are).  Real member processes,
a real arbiter and one real agent per failover member, links through our proxy."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from engine import rules
from tests.engine.cluster_fixtures import wait_for
from tests.engine.test_write_contracts import journal_bytes
from tests.faults.mirror import LinkedMirror, arbiter_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def mirror(tmp_path, arbiter):
    types = ("failover", "failover", "dr")
    m = LinkedMirror(tmp_path / "mirror", arbiter, types=types, agents=True)
    try:
        m.start()
        m.wait_backup_active()
        yield m
    finally:
        m.close()


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


def test_procedure_p1_backup_maintenance_leaves_the_primary_unaffected(mirror):
    mirror.stop("B")  # a graceful stop of the backup
    mirror.write(key())  # the primary goes on (no trouble: B told it by leaving)
    assert mirror.role("A") == "primary"
    mirror.start("B")  # B rejoins as backup
    mirror.wait_backup_active(timeout=20)
    assert "becomes primary" not in mirror.log("B")


def test_procedure_u1_a_failed_backup_costs_the_primary_a_brief_pause_then_rejoins(mirror):
    mirror.kill9("B")
    started = time.monotonic()
    mirror.write(key(), "A")
    print(f"\nfirst write after the backup failed: {time.monotonic() - started:.2f} s")
    assert mirror.status("A")["status"] == rules.PRIMARY
    mirror.start("B")
    mirror.wait_backup_active(timeout=20)


def test_outage_arbiter_only_has_no_direct_effect(mirror):
    # guide §3.3.3.2
    mirror.arbiter.stop()
    mirror.write(key())
    assert mirror.role("A") == "primary" and mirror.role("B") == "backup"
    mirror.arbiter.start()


def test_outage_primary_and_arbiter_the_backup_takes_over_through_the_primarys_agent(mirror):
    # guide §3.3.3.4: the arbiter goes first, then the primary; its host (agent) is up
    before = key()
    mirror.write(before)
    mirror.arbiter.stop()
    wait_for(lambda: mirror.view("B")[0] == rules.AGENT_CONTROLLED, 10, "B Agent Controlled")
    mirror.kill9("A")
    wait_for(lambda: mirror.role("B") == "primary", 20, "B primary")
    assert "agent confirmed it down" in mirror.log("B")
    assert before.encode() in journal_bytes(mirror, "B")
    mirror.write(key(), "B")


def test_outage_primary_and_arbiter_without_the_primarys_agent_is_a_total_outage(mirror):
    # guide §3.3.3.4, the primary's whole host gone: nothing can confirm it down
    mirror.arbiter.stop()
    wait_for(lambda: mirror.view("B")[0] == rules.AGENT_CONTROLLED, 10, "B Agent Controlled")
    mirror.agents["A"].stop()
    mirror.kill9("A")
    time.sleep(3 * mirror.qos_ms / 1000)
    assert mirror.role("B") == "backup"  # an operator may still force it (U4a)


def test_outage_backup_and_arbiter_at_once_leaves_the_primary_in_trouble_until_b_returns(
    mirror,
):
    # guide §3.3.3.5: both silent at once (hung) while Arbiter Controlled: nobody can tell A
    # that B did not take over.  (One after the other, the arbiter reports B gone first and
    # A carries on: row 6 of Table 3-1.)
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x)[0] == rules.ARBITER_CONTROLLED, 15, member)
    arbiter = mirror.arbiter.proc
    mirror.pause("B")
    os.kill(arbiter.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: mirror.status("A")["status"] == rules.IN_TROUBLE, 10, "A In Trouble")
        time.sleep(3 * mirror.qos_ms / 1000)  # past any trouble timeout: still in trouble
        assert mirror.status("A")["status"] == rules.IN_TROUBLE
        mirror.resume("B")  # the backup returns and contacts the primary, which resumes
        mirror.wait_backup_active(timeout=30)
        assert mirror.status("A")["status"] == rules.PRIMARY
        assert mirror.role("B") == "backup"
    finally:
        os.kill(arbiter.pid, signal.SIGCONT)


def test_outage_primary_and_backup_is_total_then_both_restarted_negotiate_u6(mirror):
    # guide §3.3.3.6, then U6: both failover members restarted, no data lost
    last = key()
    mirror.write(last)
    mirror.kill9("A")
    mirror.kill9("B")
    assert mirror.role("C") == "async"
    mirror.start("A", "B")

    # A, the last primary, becomes primary again once B agrees; or B, if it finds A's host
    # up before A's instance, takes A's journal through A's agent and becomes primary itself
    def one_of_each():
        roles = {m: mirror.role(m) for m in "AB"}
        return roles if sorted(map(str, roles.values())) == ["backup", "primary"] else None

    roles = wait_for(one_of_each, 20, "one primary and one backup")
    primary = "A" if roles["A"] == "primary" else "B"
    backup = "B" if primary == "A" else "A"
    mirror.wait_backup_active(backup=backup, primary=primary, timeout=20)
    for member in "AB":  # nothing lost (U6)
        assert last.encode() in journal_bytes(mirror, member)
