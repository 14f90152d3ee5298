"""Scenario 4 of guide §3.3.3.1: the primary's storage fails.  A real failure, not a simulated
one: the primary's journal directory is a tmpfs of 2 MiB, filled by the workload until the
kernel answers ENOSPC.  The primary freezes its journal (guide §3.2), cannot act as primary any
more, and asks its Active backup to take over, as a hung primary does (docs/takeover.md "A
primary that cannot write its journal")."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

import pytest

from engine.client.app import Client, EngineError
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.test_takeover import read

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]
VALUE = "x" * 60_000


@pytest.fixture
def small_journal_disk(make_cluster):
    """make(types): a mirror whose primary A has a 2 MiB tmpfs for its journal."""
    mounted = []

    def make(types):
        cluster = make_cluster(types, start=False, mirror={"qos_timeout_ms": 2000})
        journal = cluster.cfg.member("A").data_dir / "journal"
        journal.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(journal)], check=True)
        mounted.append((cluster, journal))
        cluster.start()
        if len(types) > 1:
            cluster.wait_backup_active()
        return cluster

    yield make
    for cluster, journal in mounted:
        cluster.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(journal)], check=True)


def fill_the_disk(cluster) -> tuple[list[str], EngineError | None]:
    """Write 60 KB values to A until a write fails: (the keys acknowledged, that failure)."""
    acked = []
    with Client([cluster.address("A")], follow_primary=False, timeout=10) as c:
        for _ in range(100):  # 6 MB: the 2 MiB disk fills long before
            key = f"k-{uuid.uuid4().hex}"
            try:
                c.set("USER", "Takeover", (key,), VALUE)  # as read() reads
            except EngineError as exc:
                return acked, exc
            acked.append(key)
    return acked, None


def test_scenario_4_a_primary_whose_journal_disk_fails_hands_over_to_its_active_backup(
    small_journal_disk,
):
    cluster = small_journal_disk(("failover", "failover"))
    acked, failure = fill_the_disk(cluster)
    assert failure is not None and "whether the mirror has this write is unknown" in str(failure)
    assert acked, "some writes were acknowledged before the disk filled"
    wait_for(lambda: cluster.role("B") == "primary", 20, "B primary")
    assert "primary A cannot go on: journal write failed" in cluster.log("A")
    assert cluster.procs["A"].wait(20) == 0  # it stopped itself, and stays down
    cluster.procs.pop("A")
    missing = [k for k in acked if read(cluster, "B", k) != VALUE]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost: {missing[:3]}"


def test_without_an_active_backup_a_primary_whose_journal_fails_is_crashed_and_refuses_writes(
    small_journal_disk,
):
    # guide §3.2: the journal freezes rather than journal around a hole; with nobody to hand
    # over to, the member stays, Crashed (§5.1.1.1), and refuses every write
    cluster = small_journal_disk(("failover",))
    _, failure = fill_the_disk(cluster)
    assert failure is not None and "journal write failed" in str(failure)
    client = Client([cluster.address("A")], follow_primary=False, timeout=10)
    with client as c, pytest.raises(EngineError, match="journal frozen"):
        c.set("USER", "After", (1,), "refused, not lost quietly")
    assert cluster.status("A")["status"] == "Crashed"
    assert "no Active backup took over" in cluster.log("A")
