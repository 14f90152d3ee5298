"""Operator procedures of guide chapter 6 that change member types (P3, P5, D4, D6, D7, D8;
docs/takeover.md, "Promotion and demotion"), each named after its procedure ID, on a mirror
configured through the instances' admin actions, with real instance processes.  A is the
original primary, B the original backup, C the DR async.  Keys are written through the
engine's client before and after each step and looked for on the members that must hold them.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from engine import rules
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_promote_demote import backup_active, mirror  # noqa: F401
from tests.faults.mirror import arbiter_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(300)

DB, GLOBAL = "USER", "Procedure"
FAILOVER, DR = rules.MEMBER_TYPE_LABELS[rules.FAILOVER], rules.MEMBER_TYPE_LABELS[rules.DR]
PRIMARY, BACKUP = (FAILOVER, rules.PRIMARY), (FAILOVER, rules.BACKUP)
ASYNC = (DR, rules.CONNECTED)  # a DR async following the primary


@pytest.fixture
def members(mirror):  # noqa: F811
    """A primary, B its Active backup, C a DR async, with a mirrored database USER."""
    a, b, c = mirror
    a.admin("create_database", DB)
    for host in (b, c):  # once the primary's database list has reached the member
        wait_for(lambda h=host: h.admin("create_database", DB), 20, f"{DB} on {host.name}")
    wait_for(lambda: backup_active(a, "B"), 30, "B Active on A")
    return a, b, c


def write(primary) -> str:
    """A new key written on `primary` (a member that is not primary refuses it)."""
    key = f"k-{uuid.uuid4().hex}"
    with primary.client() as client:
        client.set(DB, GLOBAL, (key,), key)
    return key


def holds(host, *keys: str) -> None:
    """`host` has every key: read through the client on a primary or an async; a backup serves
    no reads (guide §3.1.1), so there the keys are looked for in its journal files."""

    def has_all() -> bool:
        if host.status()["status"] == rules.BACKUP:
            files = sorted((host.data_dir / "journal").glob("MIRROR-*"))
            journal = b"".join(p.read_bytes() for p in files)
            return all(k.encode() in journal for k in keys)
        with host.client() as client:
            return all(client.get(DB, GLOBAL, (k,)) == k for k in keys)

    wait_for(has_all, 30, f"{host.name} holding {len(keys)} keys")


def wait_roles(expected: dict, timeout: float = 30) -> None:
    """Every host given has the (type, status) given."""

    def seen() -> dict:
        return {h.name: (h.status()["type"], h.status()["status"]) for h in expected}

    want = {h.name: role for h, role in expected.items()}
    try:
        wait_for(lambda: seen() == want, timeout, f"roles {want}")
    except AssertionError:
        raise AssertionError(f"roles {want} not reached: {seen()}") from None


def wait_active(primary, backup) -> None:
    wait_for(lambda: backup_active(primary, backup.name), 30, f"{backup.name} Active")


def caught_up(primary, member: str) -> bool:
    rows = {r["member"]: r for r in primary.status().get("members", [])}
    return rows.get(member, {}).get("journal_transfer") in (rules.CAUGHT_UP, rules.ACTIVE)


def promote(primary, dr, demoted: list[str]) -> None:
    """On the primary, once the DR async is caught up (guide §5.5)."""
    wait_for(lambda: caught_up(primary, dr.name), 30, f"{dr.name} caught up")
    answer = primary.admin("promote_member", {"member": dr.name})
    assert answer == {"member": dr.name, "type": rules.FAILOVER, "demoted": demoted}


def stop(host) -> None:
    """A graceful shutdown (SIGTERM), completed as one."""
    host.stop()
    assert host.proc.returncode == 0, f"{host.name} did not stop gracefully"


def kill9(host) -> None:
    os.killpg(host.proc.pid, signal.SIGKILL)
    host.proc.wait()


def never_primary(host, seconds: float = 5) -> None:
    """Long enough for a handover (milliseconds) or an agent's confirmation (once a second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert host.status()["status"] not in (rules.PRIMARY, rules.TRANSITION)
        time.sleep(0.25)


def test_procedure_p3_the_backup_demoted_for_host_maintenance_returns_as_dr_then_backup(members):
    a, b, c = members
    before = write(a)
    assert a.admin("demote_member", {"member": "B"}) == {"member": "B", "type": rules.DR}
    wait_roles({a: PRIMARY, b: ASYNC, c: ASYNC})
    stop(b)  # B's host goes down for maintenance
    during = write(a)  # the primary is in no trouble
    stop(a)  # restarted meanwhile, A, the only failover member, becomes primary by itself
    a.start()
    wait_roles({a: PRIMARY})
    restarted = write(a)
    b.start()  # B comes back as the DR async it now is
    wait_roles({b: ASYNC})
    holds(b, before, during, restarted)
    promote(a, b, demoted=[])
    wait_roles({a: PRIMARY, b: BACKUP, c: ASYNC})
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, during, restarted, after)


def arbiter_controlled(a, b, arbiter) -> None:
    """With an arbiter, a backup takes over from a primary gone without a handover (Table 3-1
    row 7): then only no failover keeps B from becoming primary when A stops."""
    a.admin("set_arbiter", {"arbiter": arbiter.address})
    for host in (a, b):
        wait_for(
            lambda h=host: h.status()["failover_mode"] == rules.ARBITER_CONTROLLED,
            20,
            f"{host.name} Arbiter Controlled",
        )


def test_procedure_p5_with_no_failover_set_the_primary_stops_briefly_without_a_takeover(
    members, arbiter
):
    a, b, c = members
    arbiter_controlled(a, b, arbiter)
    before = write(a)
    assert a.admin("set_no_failover") == {"member": "A", "no_failover": True}
    stop(a)
    assert "handing over" not in a.log()
    never_primary(b)
    a.start()  # the last primary, primary again once B agrees; its start clears no failover
    wait_roles({a: PRIMARY, b: BACKUP, c: ASYNC})
    assert (a.status()["term"], a.status()["no_failover"]) == (2, False)
    with a.client() as client:
        assert client.info()["failover_state"] == {"term": 2, "primary": "A"}
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, after)


def test_procedure_p5_no_failover_holds_the_backup_as_soon_as_it_is_set(members, arbiter):
    a, b, _ = members
    a.admin("edit_mirror", {"qos_timeout_ms": 60_000})  # heartbeats 15 s apart: no lucky one
    arbiter_controlled(a, b, arbiter)
    a.admin("set_no_failover")
    stop(a)
    never_primary(b)


def test_procedure_p5_the_backup_held_by_no_failover_says_it_waits(members, arbiter):
    a, b, _ = members
    arbiter_controlled(a, b, arbiter)
    a.admin("set_no_failover")
    stop(a)
    never_primary(b)
    status = b.status()
    assert status["status"] == rules.WAITING
    assert "no failover" in status["waiting_reason"] and status["no_failover"] is True


def test_procedure_p5_with_the_backup_demoted_first_the_primary_stops_without_a_takeover(
    members,
):
    a, b, c = members
    before = write(a)
    a.admin("demote_member", {"member": "B"})
    wait_roles({a: PRIMARY, b: ASYNC, c: ASYNC})
    stop(a)
    assert "handing over" not in a.log()
    wait_for(lambda: b.status()["journal_transfer"].startswith("Disconnected"), 20, "B cut off")
    never_primary(b)
    a.start()  # the only failover member: primary by itself; both asyncs follow it again
    wait_roles({a: PRIMARY, b: ASYNC, c: ASYNC})
    promote(a, b, demoted=[])  # and B back as backup
    wait_roles({b: BACKUP})
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, after)


def test_procedure_d4_a_planned_failover_to_the_promoted_dr_async_and_back(members):
    a, b, c = members
    before = write(a)
    promote(a, c, demoted=["B"])
    wait_roles({a: PRIMARY, b: ASYNC, c: BACKUP})
    wait_active(a, c)
    stop(a)  # C takes over
    wait_roles({c: PRIMARY, b: ASYNC})
    on_c = write(c)
    holds(b, before, on_c)
    a.start()  # the former primary joins as backup (guide §6.3.2 step 3)
    wait_roles({a: BACKUP})
    wait_active(c, a)
    holds(a, before, on_c)
    # the original roles back: fail over to A, promote B, C restarted as the DR async it is now
    stop(c)
    wait_roles({a: PRIMARY})
    promote(a, b, demoted=["C"])
    c.start()
    wait_roles({a: PRIMARY, b: BACKUP, c: ASYNC})
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, on_c, after)


def test_procedure_d6_the_promoted_dr_async_replaces_the_backup_during_its_maintenance(members):
    a, b, c = members
    before = write(a)
    promote(a, c, demoted=["B"])
    wait_roles({a: PRIMARY, b: ASYNC, c: BACKUP})
    wait_active(a, c)
    stop(b)
    during = write(a)
    b.start()  # B rejoins as DR
    wait_roles({b: ASYNC})
    holds(b, before, during)
    promote(a, b, demoted=["C"])
    wait_roles({a: PRIMARY, b: BACKUP, c: ASYNC})
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, during, after)


def test_procedure_d7_the_promoted_dr_async_replaces_the_primary_during_its_maintenance(members):
    a, b, c = members
    before = write(a)
    stop(a)  # B, Active, takes over
    wait_roles({b: PRIMARY})
    promote(b, c, demoted=["A"])
    wait_roles({b: PRIMARY, c: BACKUP})
    wait_active(b, c)
    during = write(b)
    a.start()  # A, demoted while it was down, rejoins as DR
    wait_roles({a: ASYNC})
    holds(a, before, during)
    promote(b, a, demoted=["C"])
    wait_roles({a: BACKUP, b: PRIMARY, c: ASYNC})
    wait_active(b, a)
    stop(b)  # back to A
    wait_roles({a: PRIMARY})
    b.start()  # B rejoins as backup: the original roles
    wait_roles({a: PRIMARY, b: BACKUP, c: ASYNC})
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, during, after)


def test_procedure_d8_the_promoted_dr_async_replaces_a_failed_backup_until_it_returns(members):
    a, b, c = members
    before = write(a)
    kill9(b)
    promote(a, c, demoted=["B"])
    wait_roles({a: PRIMARY, c: BACKUP})
    wait_active(a, c)
    during = write(a)
    b.start()  # B, demoted while down, gets the new configuration from the primary: DR
    wait_roles({b: ASYNC})
    holds(b, before, during)
    promote(a, b, demoted=["C"])
    wait_roles({a: PRIMARY, b: BACKUP, c: ASYNC})
    wait_active(a, b)
    after = write(a)
    for host in (b, c):
        holds(host, before, during, after)
