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
    cluster = make_cluster(("failover", "failover"), start=False, mirror={"qos_timeout_ms": 2000})
    journal = cluster.cfg.member("A").data_dir / "journal"
    journal.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(journal)], check=True)
    try:
        cluster.start()
        cluster.wait_backup_active()
        yield cluster
    finally:
        cluster.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(journal)], check=True)


def test_scenario_4_a_primary_whose_journal_disk_fails_hands_over_to_its_active_backup(
    small_journal_disk,
):
    cluster = small_journal_disk
    acked, failure = [], None
    with Client([cluster.address("A")], follow_primary=False, timeout=10) as c:
        for _ in range(100):  # 6 MB: the 2 MiB disk fills long before
            key = f"k-{uuid.uuid4().hex}"
            try:
                c.set("USER", "Takeover", (key,), VALUE)  # as read() reads
            except EngineError as exc:
                failure = exc
                break
            acked.append(key)
    assert failure is not None and "whether the mirror has this write is unknown" in str(failure)
    assert acked, "some writes were acknowledged before the disk filled"
    wait_for(lambda: cluster.role("B") == "primary", 20, "B primary")
    assert "primary A cannot go on: journal write failed" in cluster.log("A")
    assert cluster.procs["A"].wait(20) == 0  # it stopped itself, and stays down
    cluster.procs.pop("A")
    missing = [k for k in acked if read(cluster, "B", k) != VALUE]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost: {missing[:3]}"
