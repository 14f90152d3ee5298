"""Promoting a DR async to failover member and demoting the backup to DR (guide §5.5, §5.6;
engine/member/failover_ops.py, docs/takeover.md), on a mirror configured through the
instances' admin actions, with real instance processes."""

from __future__ import annotations

import pytest

from engine.client.app import Refused
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(150)


def join(host, primary, mtype: str) -> None:
    host.admin(
        "mirror_join",
        {"mirror": "PROMO", "address": primary.superserver, "type": mtype, "private": host.private},
    )
    host.after_restart()


def backup_active(primary, backup: str) -> bool:
    rows = {r["member"]: r for r in primary.status().get("members", [])}
    return rows.get(backup, {}).get("journal_transfer") == "Active"


@pytest.fixture
def mirror(hosts):  # noqa: F811
    a, b, c = hosts.add("A"), hosts.add("B"), hosts.add("C")
    a.admin("mirror_create", {"mirror": "PROMO", "private": a.private})
    a.after_restart()
    join(b, a, "failover")
    join(c, a, "dr")
    b.wait_state("Backup")
    c.wait_state("Connected")
    return a, b, c


def test_a_dr_async_promoted_becomes_the_backup_and_the_backup_there_was_becomes_dr(mirror):
    a, b, c = mirror
    answer = a.admin("promote_member", {"member": "C"})
    assert answer == {"member": "C", "type": "failover", "demoted": ["B"]}
    c.wait_state("Backup", timeout=30)
    b.wait_state("Connected", timeout=30)
    assert c.status()["type"] == "Failover" and b.status()["type"] == "Disaster Recovery"
    wait_for(lambda: backup_active(a, "C"), 20, "C Active on A")
    # the promoted member is a real backup: A's graceful stop hands over to it
    a.stop()
    c.wait_state("Primary", timeout=20)
    b.wait_state("Connected", timeout=30)  # the DR async follows the new primary


def test_the_backup_demoted_to_dr_leaves_a_primary_that_restarts_alone(mirror, start_agent):
    a, b, _ = mirror
    wait_for(lambda: backup_active(a, "B"), 20, "B Active on A")
    entry = {"name": "A", "superserver": a.superserver, "data_dir": str(a.data_dir)}
    agent = start_agent(instances=[entry])
    with agent.client(credential=agent.credential) as api:  # as the portal asks it
        answer = api.demote_member("A", "B")
    assert (answer["member"], answer["type"], answer["operation"]) == ("B", "dr", "demote-member")
    b.wait_state("Connected", timeout=30)
    assert b.status()["type"] == "Disaster Recovery"
    # procedure P3 (guide §6.1.1): with its backup demoted, A restarts as primary by itself
    b.stop()
    a.stop()
    a.start()
    a.wait_state("Primary", timeout=20)


def test_the_backup_asked_on_itself_to_demote_becomes_dr_through_its_primary(
    mirror,
    start_agent,  # noqa: F811
):
    # guide §5.6, "Demote to DR Member" on the backup: the primary records it for the mirror
    a, b, c = mirror
    wait_for(lambda: backup_active(a, "B"), 20, "B Active on A")
    entry = {"name": "B", "superserver": b.superserver, "data_dir": str(b.data_dir)}
    agent = start_agent(instances=[entry])
    with agent.client(credential=agent.credential) as api:
        answer = api.demote_to_dr("B")
    assert (answer["member"], answer["asked_of"], answer["type"]) == ("B", "A", "dr")
    b.wait_state("Connected", timeout=30)
    assert b.status()["type"] == "Disaster Recovery"
    rows = {r["member"]: r for r in a.status()["members"]}
    assert rows["B"]["type"] == "Disaster Recovery"  # as the primary now has it
    with pytest.raises(Refused, match="is the primary"):
        a.admin("demote_to_dr")
    with pytest.raises(Refused, match="not a failover member"):
        c.admin("demote_to_dr")


def test_promotion_and_demotion_are_refused_where_they_do_not_apply(mirror):
    a, b, c = mirror
    with pytest.raises(Refused, match="only a DR async is promoted"):
        a.admin("promote_member", {"member": "B"})
    with pytest.raises(Refused, match="not a failover member"):
        a.admin("demote_member", {"member": "C"})
    with pytest.raises(Refused, match="is done on the primary"):
        b.admin("promote_member", {"member": "C"})
    with pytest.raises(Refused, match="not another member"):
        a.admin("demote_member", {"member": "A"})
    assert a.status()["status"] == "Primary" and b.status()["status"] == "Backup"


def test_exception_3_with_no_primary_a_failover_member_edits_addresses_then_sends_them(
    mirror,
    hosts,  # noqa: F811
):
    # guide §5.2 exception 3: no primary runs, and C's address must change before B can take
    # over; B keeps the edit and, once primary, sends it to every member
    a, b, c = mirror
    with pytest.raises(Refused, match="edited on the primary"):
        b.admin("update_member_address", {"member": "C", "private": "127.0.0.1:1"})
    a.admin("set_no_failover")
    a.stop()  # without a handover: B stays a backup with no primary
    wait_for(lambda: b.status()["journal_transfer"].startswith("Disconnected"), 15, "B cut off")
    (port,) = hosts.ports(1)
    new_private = f"127.0.0.1:{port}"
    answer = b.admin("update_member_address", {"member": "C", "private": new_private})
    assert answer == {"member": "C", "private": new_private}
    b.admin("force_primary", {"confirm": True})
    b.wait_state("Primary", timeout=20)

    def c_knows() -> bool:
        members = {m["name"]: m["private"] for m in c.admin("mirror_info")["members"]}
        return members["C"] == new_private

    wait_for(c_knows, 20, "C to receive its new address from B")
