"""Takeover: a backup becomes primary while it runs, and roles after a restart are decided by
the members, not by the configuration file (guide §3.3.2, §6.1; engine/member/takeover.py,
engine/failover/state.py, docs/failover.md).  Real member processes."""

from __future__ import annotations

import json
import uuid

import pytest

from engine.client.agent import AgentError
from engine.client.app import Client, EngineError, OutcomeUnknown
from tests.engine.agent_fixtures import instance_entries, start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.test_write_contracts import journal_bytes

pytestmark = pytest.mark.timeout(120)


def remembered(cluster, member: str) -> dict:
    """What failover.json says: the term and the primary this member last knew."""
    path = cluster.cfg.member(member).data_dir / "failover.json"
    return json.loads(path.read_text())


def write(cluster, key: str) -> None:
    with Client(cluster.addresses(), timeout=10) as c:
        c.set("USER", "Takeover", (key,), key)


def read(cluster, member: str, key: str):
    with cluster.client(member) as c:
        return c.get("USER", "Takeover", (key,))


def test_scenario_1_graceful_shutdown_of_the_primary_hands_over_to_the_active_backup(
    make_cluster,
):
    # guide §3.3.3.1 scenario 1 (and procedure P4, §6.1): the primary tells its Active backup
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_backup_active()
    before = f"before-{uuid.uuid4().hex}"
    write(cluster, before)
    assert remembered(cluster, "A") == {"term": 1, "primary": "A", "no_failover": False}

    cluster.stop("A")  # SIGTERM: a graceful shutdown

    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    assert remembered(cluster, "B")["term"] == 2 and remembered(cluster, "B")["primary"] == "B"
    assert "handing over to backup B" in cluster.log("A")
    assert "primary A handed over on graceful shutdown" in cluster.log("B")
    # B says whom it replaced (the Mirror Monitor's takeover alert names it)
    assert cluster.status("B")["took_over_from"] == "A"
    # nothing acknowledged by A is missing on B, and B takes writes
    assert read(cluster, "B", before) == before
    after = f"after-{uuid.uuid4().hex}"
    write(cluster, after)
    assert after.encode() in journal_bytes(cluster, "B")
    # the DR async C finds the new primary by itself
    wait_for(lambda: cluster.status("C").get("primary") == "B", 20, "C following B")
    cluster.wait_converged("C", primary="B")


def test_procedure_p4_the_former_primary_rejoins_as_backup_and_roles_swap_back(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.stop("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    written = f"while-a-down-{uuid.uuid4().hex}"
    write(cluster, written)

    cluster.start("A")  # its configuration still lists it first; its memory says B
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)
    assert cluster.role("A") == "backup"
    assert remembered(cluster, "A") == {"term": 2, "primary": "B", "no_failover": False}
    cluster.wait_converged("A", primary="B")
    assert written.encode() in journal_bytes(cluster, "A")

    cluster.stop("B")  # and back: A primary again, at a later term
    wait_for(lambda: cluster.role("A") == "primary", 15, "A primary again")
    assert remembered(cluster, "A")["term"] == 3
    write(cluster, f"back-{uuid.uuid4().hex}")


def test_a_primary_without_an_active_backup_does_not_hand_over(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.stop("B")
    cluster.stop("A")
    assert "handing over" not in cluster.log("A")
    cluster.start("A", "B")
    # restarted together, they agree that A was the last primary (scenario U6, §6.2)
    wait_for(lambda: cluster.role("A") == "primary", 20, "A primary again")
    cluster.wait_backup_active(timeout=20)
    assert remembered(cluster, "A")["term"] == 2
    assert remembered(cluster, "B") == {"term": 2, "primary": "A", "no_failover": False}


def test_procedure_p2_a_restarted_primary_whose_partner_is_unreachable_waits(make_cluster):
    # guide §6.1.1: A cannot tell whether B became primary while it was down, so it does not
    # become primary by itself
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.kill9("B")
    cluster.kill9("A")
    cluster.start("A")
    status = cluster.wait_status("A", "status", "Waiting", timeout=15)
    assert "cannot reach its partner B" in status["waiting_reason"]
    assert cluster.role("A") == "backup"
    refused = pytest.raises(EngineError, match="primary")
    with refused, Client([cluster.address("A")], timeout=3, retries=1) as c:
        c.set("USER", "Takeover", ("no",), "no")
    # once B answers (and knows no later primary) A becomes primary again
    cluster.start("B")
    wait_for(lambda: cluster.role("A") == "primary", 20, "A primary")
    cluster.wait_backup_active(timeout=20)


def test_procedure_u6_the_known_last_primary_restarted_alone_waits_then_is_forced_losing_nothing(
    make_cluster,
):
    # guide §6.2.5: both failover members failed; only A, known to have been the last
    # primary, can be restarted: it does not become primary by itself, the operator forces it
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    last = f"last-{uuid.uuid4().hex}"
    write(cluster, last)
    cluster.kill9("B")
    cluster.kill9("A")
    cluster.start("A")
    cluster.wait_status("A", "status", "Waiting", timeout=15)
    stake = admin(cluster, "A", "force_primary")
    assert stake["last_primary"] == "A" and stake["confirmed"] is False
    admin(cluster, "A", "force_primary", {"confirm": True})
    wait_for(lambda: cluster.role("A") == "primary", 15, "A primary")
    assert read(cluster, "A", last) == last  # nothing lost: it was the last primary
    cluster.start("B")
    cluster.wait_backup_active(timeout=20)


def test_procedure_u6_with_the_last_primary_unknown_the_one_forced_may_lack_what_the_other_had(
    make_cluster,
):
    # guide §6.2.5: B alone can be restarted and nobody knows whether it was Active when A
    # failed; forcing it is a risk the operator takes, and what A had alone stays with A
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.kill9("B")
    only_on_a = f"only-a-{uuid.uuid4().hex}"
    write(cluster, only_on_a)  # after A's trouble timeout: A alone has it
    cluster.kill9("A")
    cluster.start("B")
    wait_for(lambda: cluster.role("B") == "backup", 15, "B answering, as backup")
    stake = admin(cluster, "B", "force_primary")
    assert stake["was_active_backup"] is False and "lost" in stake["warning"]
    admin(cluster, "B", "force_primary", {"confirm": True})
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    assert read(cluster, "B", only_on_a) is None
    assert only_on_a.encode() in journal_bytes(cluster, "A")  # kept on A's disk


def test_the_member_that_remembers_the_later_term_becomes_primary(make_cluster):
    # A handed over to B (term 2) and never heard of it; B then stopped too.  Restarted, A
    # remembers itself (term 1) and B remembers itself (term 2): B wins, A follows
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.stop("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    cluster.stop("B")  # no Active backup now: no handover
    assert remembered(cluster, "A")["term"] == 1 and remembered(cluster, "B")["term"] == 2
    cluster.start("A")
    cluster.wait_status("A", "status", "Waiting", timeout=15)
    cluster.start("B")
    wait_for(lambda: cluster.role("B") == "primary", 20, "B primary again")
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)
    assert cluster.role("A") == "backup"
    assert remembered(cluster, "A") == {"term": 3, "primary": "B", "no_failover": False}


def admin(cluster, member: str, action: str, arg=None):
    with cluster.client(member) as c:
        return c.admin(action, arg)


def test_procedure_u4a_forcing_the_backup_shows_what_is_at_stake_then_makes_it_primary(
    make_cluster,
):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    kept = f"kept-{uuid.uuid4().hex}"
    write(cluster, kept)
    cluster.kill9("A")
    wait_for(lambda: cluster.status("B")["journal_transfer"].startswith("Disconnected"), 10)
    assert cluster.role("B") == "backup"  # without an arbiter or A's agent: no takeover
    first = admin(cluster, "B", "force_primary")
    assert first["confirmed"] is False and first["was_active_backup"] is True
    assert first["journal_end"] == cluster.status("B")["journal_end"]
    assert first["last_primary"] == "A" and "lost" in first["warning"]
    assert cluster.role("B") == "backup"  # nothing done without the confirmation
    second = admin(cluster, "B", "force_primary", {"confirm": True})
    assert second["confirmed"] is True
    wait_for(lambda: cluster.role("B") == "primary", 10, "B primary")
    assert "forced by an operator" in cluster.log("B")
    assert read(cluster, "B", kept) == kept
    # A, restarted, finds B primary at a later term and rejoins as backup (U4a)
    cluster.start("A")
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)


def test_forcing_a_member_that_follows_a_primary_is_refused(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_backup_active()
    with pytest.raises(EngineError, match="follows primary A"):
        admin(cluster, "B", "force_primary", {"confirm": True})
    with pytest.raises(EngineError, match="not a failover member"):
        admin(cluster, "C", "force_primary", {"confirm": True})
    with pytest.raises(EngineError, match="the primary already"):
        admin(cluster, "A", "force_primary", {"confirm": True})


def test_procedure_u4b_a_former_primary_discards_the_journal_the_new_primary_never_had(
    make_cluster,
):
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 1000})
    cluster.wait_backup_active()
    cluster.kill9("B")
    extra = f"extra-{uuid.uuid4().hex}"
    write(cluster, extra)  # after the trouble timeout: on A only
    cluster.kill9("A")
    cluster.start("B")
    admin(cluster, "B", "force_primary", {"confirm": True})
    wait_for(lambda: cluster.role("B") == "primary", 10, "B primary")
    cluster.start("A")
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)
    assert extra.encode() not in journal_bytes(cluster, "A")
    assert "cutting it, rebuilding databases" in cluster.log("A")
    assert cluster.wait_converged("A", primary="B")


def two_histories(cluster) -> tuple[str, str]:
    """Both members forced primary in turn while the other was down: two histories after the
    same point.  A is left down, B primary; the keys written on A alone and on B."""
    cluster.wait_backup_active()
    cluster.kill9("B")
    cluster.kill9("A")
    cluster.start("A")
    admin(cluster, "A", "force_primary", {"confirm": True})
    wait_for(lambda: cluster.role("A") == "primary", 10, "A primary")
    on_a, on_b = f"on-a-{uuid.uuid4().hex}", f"on-b-{uuid.uuid4().hex}"
    write(cluster, on_a)
    cluster.kill9("A")
    cluster.start("B")
    admin(cluster, "B", "force_primary", {"confirm": True})
    wait_for(lambda: cluster.role("B") == "primary", 10, "B primary")
    write(cluster, on_b)
    return on_a, on_b


def test_a_former_primary_whose_journal_differs_is_told_to_rebuild(make_cluster):
    # guide §4.9: "data is inconsistent with the mirror", rebuild
    cluster = make_cluster(("failover", "failover"))
    two_histories(cluster)
    before = journal_bytes(cluster, "A")
    cluster.start("A")
    status = cluster.wait_status("A", "status", "Waiting", timeout=15)
    assert "inconsistent with the mirror" in status["waiting_reason"]
    assert "rebuild" in status["waiting_reason"]
    assert journal_bytes(cluster, "A") == before  # nothing discarded, nothing taken
    assert cluster.role("B") == "primary"


def test_a_member_told_to_rebuild_takes_its_data_again_from_the_mirror(make_cluster):
    # guide §5.7: the member's data is set aside and taken again from a member that is right
    cluster = make_cluster(("failover", "failover"))
    on_a, on_b = two_histories(cluster)
    cluster.start("A")
    cluster.wait_status("A", "status", "Waiting", timeout=15)
    before = journal_bytes(cluster, "A")

    stake = admin(cluster, "A", "rebuild_member")
    assert stake["confirmed"] is False
    assert "inconsistent with the mirror" in stake["refused_because"]
    assert stake["databases"] == sorted(cluster.cfg.member("A").databases)
    assert journal_bytes(cluster, "A") == before  # shown, not done
    with pytest.raises(EngineError, match="rebuild the other members"):
        admin(cluster, "B", "rebuild_member", {"confirm": True})

    assert admin(cluster, "A", "rebuild_member", {"confirm": True})["restarting"] is True

    cluster.wait_backup_active(backup="A", primary="B", timeout=60)
    assert cluster.wait_converged("A", primary="B")
    assert on_b.encode() in journal_bytes(cluster, "A")
    assert on_a.encode() not in journal_bytes(cluster, "A")
    # what A alone had is set aside, not deleted
    data_dir = cluster.cfg.member("A").data_dir
    (aside,) = data_dir.glob("rebuilt-*")
    kept = b"".join(f.read_bytes() for f in (aside / "journal").iterdir())
    assert on_a.encode() in kept
    assert not (data_dir / "rebuild.json").exists()
    after = f"after-{uuid.uuid4().hex}"
    write(cluster, after)  # the mirror goes on with A as its Active backup
    wait_for(lambda: after.encode() in journal_bytes(cluster, "A"), 10, "A receiving")


def test_a_rebuilt_member_takes_the_databases_the_primary_has_now(make_cluster):
    # while A was refused, the primary removed USER and made APP anew from its local data
    # (twice):
    # the rebuild takes the new APP and says why USER cannot be taken (docs/takeover.md)
    cluster = make_cluster(("failover", "failover"))
    two_histories(cluster)
    cluster.start("A")
    cluster.wait_status("A", "status", "Waiting", timeout=15)
    admin(cluster, "B", "remove_database", "USER")
    for _ in range(2):  # made anew twice: A's journal replays an incarnation between
        admin(cluster, "B", "remove_database", "APP")
        admin(cluster, "B", "add_database", "APP")

    admin(cluster, "A", "rebuild_member", {"confirm": True})

    cluster.wait_backup_active(backup="A", primary="B", timeout=60)
    want = cluster.digests("B", ["APP"])
    wait_for(lambda: cluster.digests("A", ["APP"]) == want, 30, "A's APP to be B's")

    def databases() -> dict:
        return {d["name"]: d for d in cluster.status("A")["databases"]}

    assert databases()["APP"]["status"] == "Dejournaling"
    # USER stays to be removed here by the operator, saying why from the next attempt on that
    # knows the primary's list (attempts back off to 15 s)
    wait_for(
        lambda: "the primary has no mirrored database USER" in databases()["USER"]["error"],
        30,
        "USER's reason",
    )
    assert databases()["USER"]["status"] == "Needs Download"


def test_no_failover_keeps_the_primary_from_handing_over_until_cleared(make_cluster):
    # procedure P5 (guide §6.1.3): a brief stop of the primary without failover
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    assert admin(cluster, "A", "set_no_failover")["no_failover"] is True
    wait_for(lambda: remembered(cluster, "A")["no_failover"], 5, "the flag kept")
    cluster.stop("A")
    assert "handing over" not in cluster.log("A")
    assert cluster.role("B") == "backup"
    cluster.start("A")  # the primary's start clears it (with B there, A is primary again)
    wait_for(lambda: cluster.role("A") == "primary", 20, "A primary")
    assert remembered(cluster, "A")["no_failover"] is False
    cluster.wait_backup_active(timeout=20)
    admin(cluster, "B", "set_no_failover")
    admin(cluster, "B", "clear_no_failover")
    assert remembered(cluster, "B")["no_failover"] is False
    cluster.stop("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")


def test_the_agent_stops_a_primary_gracefully_and_drives_no_failover_and_force_primary(
    make_cluster, start_agent
):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    agent = start_agent(instances=instance_entries(cluster))
    with agent.client(credential=agent.credential) as api:
        assert api.set_no_failover("B")["no_failover"] is True
        assert remembered(cluster, "B")["no_failover"] is True
        assert api.clear_no_failover("B")["no_failover"] is False
        with pytest.raises(AgentError) as refused:
            api.force_primary("B", confirm=True)
        assert refused.value.status == 409 and "follows primary A" in str(refused.value)
        stopped = api.stop_instance("A")  # a graceful stop: A hands over to B
        assert stopped["stopped"] is True and stopped["operation"] == "stop"
        cluster.procs.pop("A").wait(5)
        wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
        assert api.stop_instance("A")["stopped"] is False  # not running: nothing to do
        # B down too, then back alone: it waits; the operator looks, then forces it
        stopped = api.stop_instance("B")
        cluster.procs.pop("B").wait(5)
        cluster.start("B")
        cluster.wait_status("B", "status", "Waiting", timeout=15)
        stake = api.force_primary("B")
        assert stake["confirmed"] is False and stake["last_primary"] == "B"
        assert api.force_primary("B", confirm=True)["confirmed"] is True
        wait_for(lambda: cluster.role("B") == "primary", 15, "B primary again")


def test_a_write_whose_answer_is_lost_is_reported_unknown_and_never_sent_again(make_cluster):
    # issue 13 item 6: no silent retry of a write as if it were new
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 1000})
    cluster.wait_backup_active()
    value = f"once-{uuid.uuid4().hex}"
    cluster.pause("B")  # A waits for B's acknowledgement, then for its trouble to end
    try:
        with Client(cluster.addresses(), timeout=0.3) as c:
            with pytest.raises(OutcomeUnknown, match="may or may not have been committed"):
                c.set("USER", "Takeover", ("once",), value)
            assert c.get("USER", "Takeover", ("nothing",)) is None  # reads still work
    finally:
        cluster.resume("B")
    wait_for(lambda: value.encode() in journal_bytes(cluster, "A"), 10, "the write committed")
    assert journal_bytes(cluster, "A").count(value.encode()) == 1


def test_stopping_the_whole_mirror_at_once_stops_every_member_promptly(make_cluster):
    # the primary offers a handover to a backup that is stopping too: neither waits long
    cluster = make_cluster(("failover", "failover", "dr"))
    cluster.wait_backup_active()
    procs = dict(cluster.procs)
    for proc in procs.values():
        proc.terminate()
    for name, proc in procs.items():
        assert proc.wait(8) == 0, name  # a graceful, complete stop of each
        cluster.procs.pop(name)


def test_a_former_primary_that_lost_its_failover_state_does_not_start_as_a_second_primary(
    make_cluster,
):
    # the mirror file names A first; B took over; A's failover.json is then lost
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.stop("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    (cluster.cfg.member("A").data_dir / "failover.json").unlink()
    cluster.start("A")  # it holds journal: it asks before acting, and finds B primary
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)
    assert cluster.role("A") == "backup"


def test_members_with_journal_and_no_failover_state_start_the_mirror_from_its_first(
    make_cluster,
):
    # as members from before failover.json existed: neither knows a primary
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.stop("B")
    cluster.stop("A")
    for member in "AB":
        (cluster.cfg.member(member).data_dir / "failover.json").unlink()
    cluster.start("A", "B")
    wait_for(lambda: cluster.role("A") == "primary", 20, "A primary, B agreeing")
    cluster.wait_backup_active(timeout=20)


def test_a_rebuild_confirmed_just_before_a_crash_is_carried_out_at_the_next_start(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    kept = f"kept-{uuid.uuid4().hex}"
    write(cluster, kept)
    admin(cluster, "B", "dismount", {"name": "APP"})  # taken again all the same, mounted
    cluster.kill9("B")
    data_dir = cluster.cfg.member("B").data_dir
    (data_dir / "rebuild.json").write_text('{"asked_at": 0}')  # what the confirmation leaves

    cluster.start("B")

    cluster.wait_backup_active(timeout=60)
    assert cluster.wait_converged("B")

    def statuses():
        return {d["name"]: d["status"] for d in cluster.status("B")["databases"]}

    wait_for(lambda: set(statuses().values()) == {"Dejournaling"}, 20, "B's copies dejournaling")
    (aside,) = data_dir.glob("rebuilt-*")
    assert kept.encode() in b"".join(f.read_bytes() for f in (aside / "journal").iterdir())
    assert not (data_dir / "rebuild.json").exists()
