"""The failover guide's unplanned-outage and disaster-recovery procedures (U2, U3, U5, D3, D5;
docs/takeover.md) not yet covered by a test of their own name, on real instance processes.
A is the original primary, B the original backup, C the DR async.

The mirrors, helpers and some scenarios come from the tests that already exist: the mirror
with one agent per failover member (tests/engine/test_agent_takeover.py), the mirror behind
our link proxies with an arbiter (tests/faults/test_table_3_1.py), and the mirror of three
instances made through their agents (tests/engine/test_dr_promotion.py).  Each test checks
that no write a client saw acknowledged is lost, and that the former primary comes back in
the role the procedure gives it.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest

from engine import rules
from engine.client.app import Client
from engine.storage.journal_files import list_files
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_agent_takeover import mirror_with_agents  # noqa: F401
from tests.engine.test_dr_promotion import MIRROR, site  # noqa: F401
from tests.engine.test_promote_demote import backup_active
from tests.engine.test_takeover import admin, read, remembered, write
from tests.engine.test_write_contracts import journal_bytes
from tests.faults import test_table_3_1 as table_3_1
from tests.faults.mirror import arbiter_fixture  # noqa: F401
from tests.faults.test_procedures import never_primary
from tests.faults.test_table_3_1 import AGENT_ALONE, ARBITER_CONTROLLED, Write, key, mirror  # noqa: F401

pytestmark = pytest.mark.timeout(150)


class Acknowledged:
    """A client writing one key after another, given every member's address, on a thread of
    its own: from before a fault until after the new primary took over.  `keys` are the
    writes it saw acknowledged, in order; a write whose answer it did not get is not one."""

    def __init__(self, cluster):
        self.keys: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cluster.addresses(),))
        self._thread.daemon = True

    def start(self) -> Acknowledged:
        self._thread.start()
        self.more(3)
        return self

    def _run(self, addresses) -> None:
        client = None
        while not self._stop.is_set():
            k = key()
            try:
                client = client or Client(addresses, timeout=5)
                client.set("USER", "Takeover", (k,), k)
                self.keys.append(k)
                time.sleep(0.02)  # a steady load, not a flood on 2 shared cores
            except Exception:  # a lost primary: look for one again a moment later
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.1)
        if client is not None:
            client.close()

    def more(self, n: int) -> None:
        """Wait until `n` more writes are acknowledged (by whichever primary there is)."""
        want = len(self.keys) + n
        wait_for(lambda: len(self.keys) >= want, 40, f"{n} more acknowledged writes")

    def stop(self) -> list[str]:
        """After a few more writes acknowledged by the primary there is now."""
        self.more(3)
        self.halt()
        return list(self.keys)

    def halt(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


@pytest.fixture
def acknowledged():
    """Factory: acknowledged(cluster) -> a running Acknowledged, halted at teardown whatever
    happened (never left writing to ports a later test's members may get)."""
    made: list[Acknowledged] = []

    def start(cluster) -> Acknowledged:
        made.append(Acknowledged(cluster))
        return made[-1].start()

    yield start
    for writes in made:
        writes.halt()


def none_lost(cluster, primary: str, keys: list[str]) -> None:
    with cluster.client(primary) as c:
        missing = [k for k in keys if c.get("USER", "Takeover", (k,)) != k]
    assert not missing, f"{len(missing)} of {len(keys)} acknowledged writes missing on {primary}"


def rejoins_as_backup(cluster, member: str = "A", primary: str = "B") -> None:
    """The former primary, restarted, is the Active backup, with the new primary's data."""
    cluster.start(member)
    cluster.wait_backup_active(backup=member, primary=primary, timeout=40)
    assert cluster.role(member) == "backup"
    cluster.wait_converged(member, primary=primary, timeout=40)


# -- U2: the primary fails and an automatic failover is possible ------------------------------


def test_procedure_u2_the_primarys_request_on_a_graceful_stop_hands_over_to_the_active_backup(
    make_cluster, acknowledged
):
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 1000})
    cluster.wait_backup_active()
    writes = acknowledged(cluster)
    cluster.stop("A")
    wait_for(lambda: cluster.role("B") == "primary", 30, "B primary")
    assert "primary A handed over on graceful shutdown" in cluster.log("B")
    none_lost(cluster, "B", writes.stop())
    rejoins_as_backup(cluster)


def test_procedure_u2_the_arbiters_report_lets_the_active_backup_take_over_from_a_failed_host(
    mirror,  # noqa: F811
    acknowledged,
):
    writes = acknowledged(mirror)
    with mirror.isolate("A"):  # A's host fails: silence on every link of it, then it is gone
        mirror.kill9("A")
        wait_for(lambda: mirror.role("B") == "primary", 30, "B primary")
        assert "the arbiter lost the primary too" in mirror.log("B")
        keys = writes.stop()
    none_lost(mirror, "B", keys)
    rejoins_as_backup(mirror)


def test_procedure_u2_the_primarys_agent_confirms_it_down_and_the_active_backup_takes_over(
    mirror_with_agents,  # noqa: F811
    acknowledged,
):
    cluster, _ = mirror_with_agents()
    writes = acknowledged(cluster)
    cluster.kill9("A")
    wait_for(lambda: cluster.role("B") == "primary", 30, "B primary")
    assert "agent confirmed it down; this member was its Active backup" in cluster.log("B")
    none_lost(cluster, "B", writes.stop())
    rejoins_as_backup(cluster)


def test_procedure_u2_a_backup_not_active_takes_over_with_the_latest_journal_from_the_agent(
    mirror_with_agents,  # noqa: F811
    acknowledged,
):
    cluster, _ = mirror_with_agents()
    writes = acknowledged(cluster)
    cluster.kill9("B")
    writes.more(3)  # A alone, once its trouble timeout is over
    keys = writes.stop()
    cluster.kill9("A")
    cluster.start("B")  # restarted: not Active, and without A's last writes
    wait_for(lambda: cluster.role("B") == "primary", 30, "B primary")
    assert "of its latest journal fetched through the agent" in cluster.log("B")
    none_lost(cluster, "B", keys)
    rejoins_as_backup(cluster)


# -- U3: the primary's host (its agent too) down, no automatic failover -------------------------


def primary_host_down(make) -> tuple:
    """B stopped for maintenance while A goes on alone; then A's host fails, its agent with
    it, and B starts again: not Active, without A's last write, and nothing to confirm A
    down (no arbiter, no agent).  No failover."""
    cluster, agents = make()
    before, only_on_a = key(), key()
    write(cluster, before)
    cluster.stop("B")
    write(cluster, only_on_a)
    agents["A"].stop()
    cluster.kill9("A")
    cluster.start("B")
    wait_for(lambda: "cannot reach the agent of primary A" in cluster.log("B"), 30, "B asking")
    assert cluster.role("B") == "backup"
    assert only_on_a.encode() not in journal_bytes(cluster, "B")
    return cluster, agents, before, only_on_a


def test_procedure_u3a_the_host_restarted_without_the_instance_its_agent_lets_b_take_over(
    mirror_with_agents,  # noqa: F811
):
    cluster, agents, before, only_on_a = primary_host_down(mirror_with_agents)
    agents["A"].restart()  # the host back, the instance not started
    wait_for(lambda: cluster.role("B") == "primary", 30, "B primary")
    assert "of its latest journal fetched through the agent" in cluster.log("B")
    none_lost(cluster, "B", [before, only_on_a])
    rejoins_as_backup(cluster)


def test_procedure_u3b_the_host_restarted_with_the_instance_the_members_negotiate_a_primary(
    mirror_with_agents,  # noqa: F811
):
    cluster, agents, before, only_on_a = primary_host_down(mirror_with_agents)
    # the instance first: started after it, the agent would confirm A down to B (U3a)
    cluster.start("A")
    wait_for(lambda: cluster.role("A") == "primary", 30, "A primary again")
    agents["A"].restart()
    assert remembered(cluster, "A")["term"] == 2 and remembered(cluster, "A")["primary"] == "A"
    cluster.wait_backup_active(timeout=40)
    none_lost(cluster, "A", [before, only_on_a])
    cluster.wait_converged("B", primary="A", timeout=40)
    assert "becomes primary" not in cluster.log("B")


def test_procedure_u3c_the_host_lost_for_good_the_operator_forces_b_to_become_primary(
    mirror_with_agents,  # noqa: F811
):
    cluster, _, before, only_on_a = primary_host_down(mirror_with_agents)
    stake = admin(cluster, "B", "force_primary")
    assert stake["confirmed"] is False and stake["was_active_backup"] is False
    assert stake["last_primary"] == "A" and "lost" in stake["warning"]
    assert admin(cluster, "B", "force_primary", {"confirm": True})["confirmed"] is True
    wait_for(lambda: cluster.role("B") == "primary", 30, "B primary")
    assert "forced by an operator" in cluster.log("B")
    assert read(cluster, "B", before) == before
    assert read(cluster, "B", only_on_a) is None  # lost with A's host, as the operator was told
    write(cluster, key())


# -- U5: the primary isolated from the backup and the arbiter ----------------------------------

# B takes over on the arbiter's report, A stays In Trouble and stands down on reconnect,
# then rejoins as backup: Table 3-1 row 7, the same steps
test_procedure_u5_the_isolated_primary_is_in_trouble_b_takes_over_and_a_stands_down = (
    table_3_1.test_row_7_primary_isolated_backup_takes_over_and_the_old_primary_stands_down
)


def test_procedure_u5_all_three_lost_contact_restored_connections_let_a_resume_as_primary(
    mirror,  # noqa: F811
):
    with mirror.cut():  # every link at once: B has no arbiter to confirm anything
        held = Write(mirror)
        wait_for(lambda: mirror.status("A")["status"] == rules.IN_TROUBLE, 20, "A In Trouble")
        wait_for(lambda: mirror.view("B") == AGENT_ALONE, 20, "B Agent Controlled")
        time.sleep(3 * mirror.qos_ms / 1000)  # past any trouble timeout: still in trouble
        assert mirror.status("A")["status"] == rules.IN_TROUBLE and not held.answered.is_set()
        assert mirror.role("B") == "backup"
    # connections restored: B reaches A again and A resumes, with no takeover
    assert held.answered.wait(30) and held.error is None
    mirror.wait_backup_active(timeout=40)
    assert mirror.role("A") == "primary" and remembered(mirror, "A")["term"] == 1
    assert "becomes primary" not in mirror.log("B")
    assert held.key.encode() in journal_bytes(mirror, "B")
    for member in "AB":
        wait_for(lambda x=member: mirror.view(x) == ARBITER_CONTROLLED, 30, f"{member} Arbiter")


def test_procedure_u5_with_b_down_and_never_primary_the_operator_forces_a_to_resume(
    mirror,  # noqa: F811
):
    with mirror.cut():  # all three lose contact, so B cannot take over...
        held = Write(mirror)
        wait_for(lambda: mirror.status("A")["status"] == rules.IN_TROUBLE, 20, "A In Trouble")
        wait_for(lambda: mirror.view("B") == AGENT_ALONE, 20, "B Agent Controlled")
        mirror.kill9("B")  # ...and then B's host fails: it never became primary
        assert "becomes primary" not in mirror.log("B")
        # the operator, sure of that, forces A to resume as primary, still cut off
        assert admin(mirror, "A", "force_primary", {"confirm": True})["confirmed"] is True
        wait_for(lambda: mirror.status("A")["status"] == rules.PRIMARY, 30, "A Primary")
        assert held.answered.wait(30) and held.error is None
        after = key()
        mirror.write(after, "A")
    assert held.key.encode() in journal_bytes(mirror, "A")
    assert after.encode() in journal_bytes(mirror, "A")


# -- D3 and D5: disaster recovery through the DR async ------------------------------------------


def copy_newest_journal_files(source, target) -> list[str]:
    """Copy `source`'s mirror journal files, from `target`'s latest file onward, into
    `target`'s journal directory (guide §6.3; engine/storage/journal_files.py names them
    `MIRROR-<mirror>-YYYYMMDD.NNN`); each replaced whole, never seen half written."""
    src, dst = source.data_dir / "journal", target.data_dir / "journal"
    mine = list_files(dst, MIRROR)
    first = mine[-1][0] if mine else 0
    names = [name for seq, name in list_files(src, MIRROR) if seq >= first]
    for name in names:
        shutil.copyfile(src / name, dst / f".{name}.copy")
        os.replace(dst / f".{name}.copy", dst / name)
    return names


def joins_as_dr(site, host, *keys: str) -> None:  # noqa: F811 (a Site, not the fixture)
    wait_for(lambda: site.role(host.name)[0] == "Disaster Recovery", 40, f"{host.name} DR")
    host.wait_state("Connected", timeout=40)
    for k in keys:
        site.wait_read(host.name, k, timeout=40)


def test_procedure_d3_both_failover_hosts_down_c_promoted_with_the_primarys_journal_files_copied(
    site,  # noqa: F811
):
    a, b, c = (site.hosts[n] for n in "ABC")
    before, later, only_on_a = (key() for _ in range(3))
    site.write("A", before)
    site.wait_read("C", before)
    c.admin("stop_mirroring")  # C asynchronous and behind: A's last writes are not on it
    site.write("A", later)
    b.stop()
    site.write("A", only_on_a)  # A alone (its backup left gracefully: no trouble)
    a.stop()  # both failover hosts down; A's journal files can still be read
    c.admin("start_mirroring")
    assert site.read("C", later) is None
    copied = copy_newest_journal_files(a, c)
    assert copied and all(name.startswith(f"MIRROR-{MIRROR}-") for name in copied)
    with site.agent("C") as api:
        done = api.promote_to_primary("C", confirm=True)
    assert done["partner"] is None and sorted(done["demoted"]) == ["A", "B"]
    c.wait_state("Primary", timeout=40)
    for k in (before, later, only_on_a):
        site.wait_read("C", k)
    after = key()
    site.write("C", after)
    # ValidatedMember cleared on both before they start; A first, its journal being C's
    for host in (a, b):
        with site.agent(host.name) as api:
            assert api.clear_validated_member(host.name)["validated"] is False
    a.start()
    joins_as_dr(site, a, only_on_a, after)
    b.start()
    joins_as_dr(site, b, only_on_a, after)
    assert site.role("C") == ("Failover", "Primary")


def test_procedure_d5_a_planned_failover_to_c_with_a_as_partner_and_back_to_a(
    site,  # noqa: F811
):
    a, b, c = (site.hosts[n] for n in "ABC")
    before = key()
    site.write("A", before)
    b.stop()
    site.wait_read("C", before)  # C caught up
    a.stop()  # no Active backup: no handover
    assert "handing over" not in a.log()
    with site.agent("C") as api:
        done = api.promote_to_primary("C", partner="A", confirm=True)
    assert done["partner"] == "A" and done["demoted"] == ["B"]
    c.wait_state("Primary", timeout=40)
    # A's agent confirmed A down and, holding its data directory, told it who took over
    told = json.loads((a.data_dir / "failover.json").read_text())
    assert (told["primary"], told["term"]) == ("C", done["term"])
    site.wait_read("C", before)
    on_c = key()
    site.write("C", on_c)
    c.stop()
    # A restarted knows C became primary at a later term and holds writes A lacks: it looks
    # for C and never makes itself primary (docs/takeover.md, "Asking the partner's agent")
    a.start()
    never_primary(a, 5)
    c.start()  # C, the last primary, primary again once A agrees; A joins it as backup
    c.wait_state("Primary", timeout=40)
    a.wait_state("Backup", timeout=40)
    wait_for(lambda: backup_active(c, "A"), 40, "A Active on C")
    c.stop()  # and back: C hands over to A, its Active backup
    a.wait_state("Primary", timeout=40)
    for k in (before, on_c):
        site.wait_read("A", k)
    assert site.role("A") == ("Failover", "Primary")
