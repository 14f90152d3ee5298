"""Primary outage scenarios 5 and 6 of guide §3.3.3.1 (docs/takeover.md "Tests"): the cases
that turn on the arbiter having been lost before the primary was.  With the arbiter in contact
the same outages are Table 3–1 row 7 and procedure U2 (tests/faults/test_table_3_1.py,
tests/faults/test_procedures_unplanned.py).  Real member processes, a real arbiter, links cut
in our proxy (tests/faults/mirror.py); QoS is 1 s."""

from __future__ import annotations

import time

import pytest

from engine import rules
from tests.engine.cluster_fixtures import wait_for
from tests.engine.test_takeover import admin
from tests.engine.test_write_contracts import journal_bytes
from tests.faults.mirror import arbiter_fixture  # noqa: F401
from tests.faults.test_procedures_unplanned import acknowledged, none_lost  # noqa: F401
from tests.faults.test_table_3_1 import AGENT_ALONE, Write, key, mirror  # noqa: F401

pytestmark = pytest.mark.timeout(150)


def arbiter_lost_first(mirror) -> None:  # noqa: F811 (a LinkedMirror, not the fixture)
    """The arbiter goes down: both members switch to Agent Controlled (row 5), and the
    primary goes on."""
    mirror.arbiter.stop()
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == AGENT_ALONE, 10, f"{member} alone")


def stays_backup(mirror, member: str, seconds: float) -> None:  # noqa: F811
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert mirror.role(member) == "backup", f"{member} took over"
        time.sleep(0.2)
    assert "becomes primary" not in mirror.log(member)


def test_scenario_5_with_the_arbiter_lost_first_the_primarys_host_fails_and_nobody_takes_over(
    mirror,  # noqa: F811
    acknowledged,  # noqa: F811
):
    arbiter_lost_first(mirror)
    writes = acknowledged(mirror)
    with mirror.isolate("A"):  # A's host fails: silence on every link of it, then it is gone
        mirror.kill9("A")
        writes.halt()
        # B, Active when it lost A, cannot tell a failed host from a cut link: no arbiter to
        # ask, no agent of A's to confirm it down (guide §3.3.3.1, scenario 5)
        stays_backup(mirror, "B", 4 * mirror.qos_ms / 1000)
        # the operator, who knows A's host is gone, forces B (procedure U4a)
        stake = admin(mirror, "B", "force_primary")
        assert stake["was_active_backup"] is True and stake["last_primary"] == "A"
        assert admin(mirror, "B", "force_primary", {"confirm": True})["confirmed"] is True
        wait_for(lambda: mirror.role("B") == "primary", 30, "B primary")
    # B had every write A acknowledged: each waited for its acknowledgement
    none_lost(mirror, "B", writes.keys)
    mirror.start("A")  # A's host back: it rejoins as backup
    mirror.wait_backup_active(backup="A", primary="B", timeout=40)


def test_scenario_6_with_the_arbiter_lost_first_an_isolated_primary_keeps_running_alone(
    mirror,  # noqa: F811
):
    arbiter_lost_first(mirror)
    with mirror.cut_between("A", "B"):  # the network isolates A: no one else to reach
        # Agent Controlled: in trouble for at most 2 x QoS, then on alone (guide §3.3.5.1)
        written = Write(mirror)
        assert written.answered.wait(15) and written.error is None
        assert mirror.status("A")["status"] == rules.PRIMARY
        # and the backup, with nothing to confirm A down, never takes over
        stays_backup(mirror, "B", 3 * mirror.qos_ms / 1000)
        assert written.key.encode() not in journal_bytes(mirror, "B")
    # the network back: B catches up with what A wrote alone and is Active again
    mirror.wait_backup_active(timeout=20)
    wait_for(lambda: written.key.encode() in journal_bytes(mirror, "B"), 10, "B caught up")
    assert mirror.role("A") == "primary"
