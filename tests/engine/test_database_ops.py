"""Database operations on real member processes: create, add, activate, catch up, mount,
dismount, remove, FailoverDB flag, and the database statuses of guide §5.1.1.3."""

import re
import shutil
from pathlib import Path

import lmdb
import pytest

from engine.client.app import EngineError
from engine.storage.store import Store
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def db_status(cluster, member: str, db: str) -> str | None:
    rows = {r["name"]: r for r in cluster.status(member)["databases"]}
    return rows[db]["status"] if db in rows else None


def wait_db(cluster, member: str, db: str, status: str, timeout: float = 20.0) -> None:
    wait_for(
        lambda: db_status(cluster, member, db) == status,
        timeout,
        f"{db} on {member} to be {status!r}",
    )


def admin(cluster, member: str, action: str, arg=None):
    with cluster.client(member) as c:
        return c.admin(action, arg)


def refusal(cluster, member: str, action: str, arg=None) -> str:
    with pytest.raises(EngineError) as info:
        admin(cluster, member, action, arg)
    assert info.value.code == "refused", info.value
    return info.value.details["reason"]


def digest(cluster, member: str, db: str) -> str:
    return admin(cluster, member, "digest", db)


def wait_same(cluster, member: str, db: str, primary: str = "A") -> None:
    want = digest(cluster, primary, db)
    wait_for(lambda: digest(cluster, member, db) == want, 20, f"{db} on {member} == {primary}")


def write(cluster, db: str, tag: str, n: int = 50) -> None:
    with cluster.client() as c:
        c.pipeline([("set", db, "Data", (tag, i), f"{tag}{i}" * 4) for i in range(n)])
        c.kill(db, "Data", (tag, 3))


def test_database_created_on_the_primary_is_created_on_backup_and_dr_and_converges(
    make_cluster,
):
    cluster = make_cluster(("failover", "failover", "dr", "ro_reporting"))
    out = admin(cluster, "A", "create_database", "NEWDB")
    assert out == {"database": "NEWDB", "status": "Normal", "already": False}
    assert admin(cluster, "A", "create_database", "newdb")["already"] is True  # a retry
    write(cluster, "NEWDB", "x")
    for member in "BC":
        wait_db(cluster, member, "NEWDB", "Dejournaling")
        wait_same(cluster, member, "NEWDB")
        assert cluster.status(member)["missing_mirrored_databases"] == []
    # a reporting async holds any subset: it creates its copy when asked, from its journal
    assert db_status(cluster, "D", "NEWDB") is None
    assert "missing_mirrored_databases" not in cluster.status("D")
    # D knows the database once it has received the journal up to its creation
    end = cluster.status("A")["journal_end"]

    def received_up_to_end():  # journal_end is None until D has received its first record
        return (cluster.status("D")["journal_end"] or [-1, -1]) >= end

    wait_for(received_up_to_end, 20, "D has received NEWDB")
    admin(cluster, "D", "create_database", "NEWDB")
    wait_db(cluster, "D", "NEWDB", "Dejournaling")
    write(cluster, "NEWDB", "y")
    wait_same(cluster, "D", "NEWDB")


def test_created_database_survives_a_restart_of_primary_and_backup(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    admin(cluster, "A", "create_database", "KEEP")
    write(cluster, "KEEP", "a")
    wait_same(cluster, "B", "KEEP")
    want = digest(cluster, "A", "KEEP")
    cluster.stop("B")
    cluster.stop("A")
    cluster.start("A", "B")
    # both start as backup; A, the last primary, becomes primary once B agrees (U6)
    wait_for(lambda: cluster.role("A") == "primary", 20, "A primary again")
    assert db_status(cluster, "A", "KEEP") == "Normal"
    assert digest(cluster, "A", "KEEP") == want
    wait_db(cluster, "B", "KEEP", "Dejournaling")
    write(cluster, "KEEP", "b")
    wait_same(cluster, "B", "KEEP")


def test_operations_refuse_with_a_reason_when_preconditions_fail(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr", "ro_reporting"))
    assert "invalid database name" in refusal(cluster, "A", "create_database", "9bad")
    assert "system databases" in refusal(cluster, "A", "create_database", "IRISSYS")
    assert "not available on the primary" in refusal(cluster, "A", "activate", "USER")
    assert "not available on the primary" in refusal(cluster, "A", "stop_mirroring")
    assert "never allowed on a DR" in refusal(cluster, "C", "clear_failover_db", "USER")
    assert "read-only reporting" in refusal(cluster, "B", "clear_failover_db", "USER")
    assert "not a mirrored database" in refusal(cluster, "C", "catchup", "NOPE")
    assert "primary has no mirrored database" in refusal(cluster, "B", "create_database", "NOPE")
    assert "no local database" in refusal(cluster, "A", "add_database", "NOPE")
    assert "not available on the backup" in refusal(cluster, "B", "dejournal_stop")
    assert "unknown options" in refusal(cluster, "A", "mount", {"name": "USER", "bogus": 1})
    # the member keeps serving after every refusal
    write(cluster, "USER", "after")
    cluster.wait_converged("C")


def _copy_store(src: Path, dst: Path) -> None:
    """A consistent copy of a live database (what a backup + restore gives)."""
    dst.mkdir(parents=True)
    env = lmdb.open(str(src), readonly=True, max_dbs=2, lock=True)
    try:
        env.copy(str(dst), compact=True)
    finally:
        env.close()


def test_existing_database_added_then_restored_activated_and_caught_up(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    a_dir = Path(cluster.cfg.member("A").data_dir) / "db" / "LEGACY"
    legacy = Store.open(str(a_dir))  # a local database with data of its own
    for i in range(100):
        legacy.set("Old", (i,), f"old{i}")
    legacy.close()
    out = admin(cluster, "A", "add_database", "LEGACY")
    assert out["status"] == "Normal"
    assert admin(cluster, "A", "add_database", "LEGACY")["already"] is True
    write(cluster, "LEGACY", "w1")
    for member in "BC":
        wait_for(
            lambda m=member: cluster.status(m)["missing_mirrored_databases"] == ["LEGACY"],
            what=f"LEGACY missing on {member}",
        )
    # a copy made before the database joined the mirror cannot be activated
    admin(cluster, "C", "create_database", {"name": "LEGACY", "mirrored": False})
    assert admin(cluster, "C", "add_database", "LEGACY")["status"] == "Needs Activation"
    assert "older than" in refusal(cluster, "C", "activate", "LEGACY")
    # B gets a restored copy of the primary's database, then activate + catch up
    _copy_store(a_dir, Path(cluster.cfg.member("B").data_dir) / "db" / "LEGACY")
    write(cluster, "LEGACY", "w2")  # after the copy: only in the journal
    assert admin(cluster, "B", "add_database", "LEGACY")["status"] == "Needs Activation"
    assert admin(cluster, "B", "activate", "LEGACY")["status"] == "Needs Catchup"
    assert admin(cluster, "B", "activate", "LEGACY")["already"] is True
    admin(cluster, "B", "catchup", {"names": ["LEGACY"], "wait": True})
    # on C, a fresh restored copy replaces the too-old one; catchup activates it itself
    admin(cluster, "C", "remove_database", "LEGACY")
    c_dir = Path(cluster.cfg.member("C").data_dir) / "db" / "LEGACY"
    shutil.rmtree(c_dir)
    _copy_store(a_dir, c_dir)
    admin(cluster, "C", "add_database", "LEGACY")
    assert admin(cluster, "C", "catchup", "LEGACY")["started"] == ["LEGACY"]
    wait_db(cluster, "C", "LEGACY", "Dejournaling")
    assert db_status(cluster, "B", "LEGACY") == "Dejournaling"
    assert cluster.status("B")["missing_mirrored_databases"] == []
    write(cluster, "LEGACY", "w3")
    wait_same(cluster, "B", "LEGACY")
    wait_same(cluster, "C", "LEGACY")
    with cluster.client() as c:
        assert c.get("LEGACY", "Old", (5,)) == "old5"


def test_catch_up_of_several_databases_converges_and_shows_catchup_running(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    for db in ("USER", "APP"):
        assert admin(cluster, "B", "dismount", db)["status"] == "Database Dismounted"
    assert admin(cluster, "B", "dismount", "USER")["already"] is True
    write(cluster, "USER", "u", 2000)
    write(cluster, "APP", "p", 2000)
    assert admin(cluster, "B", "mount", "USER")["status"] == "Needs Catchup"
    assert admin(cluster, "B", "mount", "APP")["status"] == "Needs Catchup"
    with cluster.client("B") as c:
        # pipelined: the status is served before the catch-up task gets to run
        started, st = c.pipeline([("admin", "catchup", "USER,APP"), ("status",)])
    assert sorted(started["started"]) == ["APP", "USER"]
    assert {r["status"] for r in st["databases"]} == {"Catchup Running"}
    assert all(r["records_applied"] >= 0 for r in st["databases"])  # progress while it runs
    for db in ("USER", "APP"):
        wait_db(cluster, "B", db, "Dejournaling")
    assert admin(cluster, "B", "catchup", "USER,APP")["already"] == ["USER", "APP"]
    write(cluster, "APP", "q")
    cluster.wait_converged("B")


def catchup_events(cluster, member: str, since: int) -> list[tuple[str, str]]:
    """("started" | "done", database) for each catch-up line of the member's log after the
    first `since` characters, in the order they were logged."""
    lines = re.finditer(r"catch-up of (\w+) (started|done)", cluster.log(member)[since:])
    return [(m[2], m[1]) for m in lines]


def overlapped(events: list[tuple[str, str]]) -> bool:
    """Whether some catch-up started while another one was still running."""
    running: set[str] = set()
    for what, db in events:
        if what == "started" and running:
            return True
        (running.add if what == "started" else running.discard)(db)
    return False


@pytest.mark.parametrize(
    "setting, parallel_on",
    [("failover+dr", {"B"}), ("all", {"B", "C"}), ("failover", set())],
    ids=["failover+dr", "all", "failover"],
)
def test_catch_ups_overlap_only_where_parallel_dejournaling_covers_the_member(
    make_cluster, setting, parallel_on
):
    # B a DR async, C a read-only reporting async (guide §4.16: parallel for DR by default)
    cluster = make_cluster(
        ("failover", "dr", "ro_reporting"), mirror={"parallel_dejournaling": setting}
    )
    for member in "BC":
        for db in ("USER", "APP"):
            admin(cluster, member, "dismount", db)
    # large enough that a catch-up (a few hundred ms) outlasts by far the few ms the
    # other one takes to start on a thread of its own, even on a loaded machine
    for db in ("USER", "APP"):
        write(cluster, db, db.lower(), 30000)
    since = {member: len(cluster.log(member)) for member in "BC"}
    for member in "BC":
        for db in ("USER", "APP"):
            admin(cluster, member, "mount", db)
        admin(cluster, member, "catchup", ["USER", "APP"])
    for member in "BC":
        for db in ("USER", "APP"):
            wait_db(cluster, member, db, "Dejournaling", timeout=60)
        events = catchup_events(cluster, member, since[member])
        assert sorted(events) == [
            ("done", "APP"),
            ("done", "USER"),
            ("started", "APP"),
            ("started", "USER"),
        ]
        assert overlapped(events) == (member in parallel_on), (member, events)
        cluster.wait_converged(member)


def test_mount_with_catch_up_brings_a_stale_copy_back(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    admin(cluster, "B", "dismount", "USER")
    write(cluster, "USER", "while-dismounted")
    admin(cluster, "B", "mount", {"name": "USER", "catchup": True})
    wait_db(cluster, "B", "USER", "Dejournaling")
    cluster.wait_converged("B")


def test_dismounted_database_on_the_primary_refuses_writes_and_replays_on_mount(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    write(cluster, "APP", "before")
    admin(cluster, "A", "dismount", "APP")
    assert db_status(cluster, "A", "APP") == "Database Dismounted"
    with cluster.client() as c, pytest.raises(EngineError) as info:
        c.set("APP", "X", (1,), 1)
    assert info.value.code == "no_database"
    with cluster.client() as c, pytest.raises(EngineError) as info:
        c.admin("purge_journal")
    assert "APP dismounted" in str(info.value)
    assert admin(cluster, "A", "mount", "APP")["status"] == "Normal"
    write(cluster, "APP", "after")
    cluster.wait_converged("B")


def test_removed_on_primary_orphans_copies_and_recreation_makes_them_obsolete(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    write(cluster, "APP", "a")
    cluster.wait_converged("C")
    assert admin(cluster, "A", "remove_database", "APP")["status"] == "not mirrored"
    assert admin(cluster, "A", "remove_database", "APP")["already"] is True
    assert db_status(cluster, "A", "APP") is None
    wait_db(cluster, "B", "APP", "Orphaned")
    wait_db(cluster, "C", "APP", "Orphaned")
    # removing on the DR clears the attribute there only; the data stays as a local database
    admin(cluster, "C", "remove_database", "APP")
    assert db_status(cluster, "C", "APP") is None
    assert "add it with add_database" in refusal(cluster, "A", "create_database", "APP")
    # the primary recreates APP from its local data: B's old copy is obsolete
    admin(cluster, "A", "add_database", "APP")
    wait_db(cluster, "B", "APP", "Obsolete")
    assert "obsolete" in refusal(cluster, "B", "catchup", "APP")
    wait_for(
        lambda: cluster.status("C")["missing_mirrored_databases"] == ["APP"],
        what="APP missing on C",
    )


def test_cleared_failover_flag_makes_a_reporting_copy_writable_and_stays_cleared(make_cluster):
    cluster = make_cluster(("failover", "ro_reporting"))
    with cluster.client("B") as c:
        with pytest.raises(EngineError) as info:
            c.set("USER", "Local", (1,), "no")
        assert info.value.code == "not_primary"
        out = c.admin("clear_failover_db", "USER")
        assert out["failover_db"] is False and out["already"] is False
        assert c.admin("clear_failover_db", "USER")["already"] is True
        c.set("USER", "Local", (1,), "yes")
        assert c.get("USER", "Local", (1,)) == "yes"
        c.tstart()
        c.set("USER", "Local", (2,), "in a transaction")
        c.tcommit()
        assert c.get("USER", "Local", (2,)) == "in a transaction"
        with pytest.raises(EngineError):
            c.set("APP", "Local", (1,), "still read-only")
    rows = {r["name"]: r for r in cluster.status("B")["databases"]}
    assert rows["USER"]["failover_db"] is False and "failover_db" not in rows["APP"]
    cluster.stop("B")
    cluster.start("B")
    rows = {r["name"]: r for r in cluster.status("B")["databases"]}
    assert rows["USER"]["failover_db"] is False


def failover_flags(cluster, member: str) -> dict[str, bool]:
    return {r["name"]: r.get("failover_db", True) for r in cluster.status(member)["databases"]}


def test_failover_flags_of_several_or_all_databases_are_cleared_at_once(make_cluster):
    cluster = make_cluster(("failover", "dr", "ro_reporting"), databases=("USER", "APP", "SALES"))
    everything = {"all": True}
    assert "never allowed on a DR" in refusal(cluster, "B", "clear_failover_db", everything)
    assert "read-only reporting" in refusal(cluster, "A", "clear_failover_db", {"names": ["USER"]})
    unknown = {"names": ["USER", "NOPE"]}
    assert "not a mirrored database" in refusal(cluster, "C", "clear_failover_db", unknown)
    assert "either 'names' or 'all'" in refusal(cluster, "C", "clear_failover_db", {"all": False})
    assert failover_flags(cluster, "C") == {"USER": True, "APP": True, "SALES": True}

    out = admin(cluster, "C", "clear_failover_db", {"names": ["user", "APP", "USER"]})
    assert [(r["database"], r["already"], r["failover_db"]) for r in out["databases"]] == [
        ("USER", False, False),
        ("APP", False, False),
    ]
    assert failover_flags(cluster, "C") == {"USER": False, "APP": False, "SALES": True}
    with cluster.client("C") as c:
        c.set("APP", "Local", (1,), "writable now")
        with pytest.raises(EngineError) as info:
            c.set("SALES", "Local", (1,), "still read-only")
        assert info.value.code == "not_primary"

    out = admin(cluster, "C", "clear_failover_db", everything)
    assert {r["database"]: r["already"] for r in out["databases"]} == {
        "USER": True,
        "APP": True,
        "SALES": False,
    }
    assert admin(cluster, "C", "clear_failover_db", everything)["databases"][2]["already"] is True
    cluster.stop("C")
    cluster.start("C")
    assert failover_flags(cluster, "C") == {"USER": False, "APP": False, "SALES": False}
    with cluster.client("C") as c:
        c.set("SALES", "Local", (1,), "after a restart too")
        assert c.get("SALES", "Local", (1,)) == "after a restart too"


def test_member_that_was_away_learns_the_removal_and_shows_the_copy_orphaned(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    admin(cluster, "B", "stop_mirroring")
    admin(cluster, "A", "remove_database", "APP")
    admin(cluster, "A", "create_database", "FRESH")
    write(cluster, "FRESH", "f")
    assert db_status(cluster, "B", "APP") == "Dejournaling"
    admin(cluster, "B", "start_mirroring")
    wait_db(cluster, "B", "APP", "Orphaned")
    wait_db(cluster, "B", "FRESH", "Dejournaling")
    wait_same(cluster, "B", "FRESH")
    assert cluster.status("B")["dejournaling"] == "Warning! Some databases need attention."
