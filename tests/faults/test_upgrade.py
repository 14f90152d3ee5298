"""Procedure P6 of the guide (§6.1.4, the minimum-downtime upgrade, docs/takeover.md): each
member is stopped and started again in turn, the asyncs and the backup first, then the primary
hands over to its upgraded backup and is started again itself, under a steady load.  Real
member processes.  What differs between the members is only that they were restarted: our
members speak one protocol version and refuse another (engine/wire/protocol.py), so a mirror
of mixed versions is not modelled."""

from __future__ import annotations

import pytest

from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.faults.test_procedures_unplanned import acknowledged, none_lost  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def test_procedure_p6_a_minimum_downtime_upgrade_restarts_each_member_and_loses_nothing(
    make_cluster,
    acknowledged,  # noqa: F811
):
    cluster = make_cluster(("failover", "failover", "dr"), mirror={"qos_timeout_ms": 1000})
    cluster.wait_backup_active()
    writes = acknowledged(cluster)
    # the DR async, then the backup: the primary goes on
    for member in ("C", "B"):
        cluster.stop(member)
        writes.more(3)
        cluster.start(member)
    cluster.wait_backup_active(timeout=40)
    assert cluster.role("A") == "primary"
    # the primary hands over to its upgraded backup, and is upgraded in turn
    cluster.stop("A")
    wait_for(lambda: cluster.role("B") == "primary", 30, "B primary")
    writes.more(3)
    cluster.start("A")
    cluster.wait_backup_active(backup="A", primary="B", timeout=40)
    keys = writes.stop()
    none_lost(cluster, "B", keys)
    cluster.wait_converged("A", primary="B", timeout=40)
    cluster.wait_converged("C", primary="B", timeout=40)
