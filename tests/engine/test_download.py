"""Database download from another member (guide §4.8.3): source order, fallback, a copy
consistent with the primary under concurrent writes, progress while it runs, Needs Download
and automatic retries when no source can, and on a TLS mirror only to members."""

import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest

from engine.cluster.launcher import wait_ready
from engine.storage.store import Store
from engine.wire import tls
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_database_ops import (
    admin,
    db_status,
    digest,
    refusal,
    wait_db,
    wait_same,
    write,
)
from tests.engine.test_membership_join import create_tls_mirror, join

pytestmark = pytest.mark.timeout(120)


def _legacy_on_primary(cluster, rows: int = 3000) -> None:
    """An existing database with data of its own, added to the mirror on the primary."""
    store = Store.open(str(Path(cluster.cfg.member("A").data_dir) / "db" / "LEGACY"))
    with store.transaction():
        for i in range(rows):
            store.set("Old", (i, "x"), f"old{i}")
        store.set("Root", (), "root value")
    store.close()
    admin(cluster, "A", "add_database", "LEGACY")
    for member in ("B", "C"):
        wait_for(
            lambda m=member: cluster.status(m)["missing_mirrored_databases"] == ["LEGACY"],
            what=f"LEGACY missing on {member}",
        )


def test_download_under_concurrent_writes_ends_identical_to_the_primary(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    _legacy_on_primary(cluster)
    stop = threading.Event()

    def writer():
        with cluster.client() as c:
            i = 0
            while not stop.is_set():
                c.set("LEGACY", "Old", (i % 4000, "x"), f"new{i}")
                c.kill("LEGACY", "Old", ((i * 7) % 4000,))
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        # the backup's sources: the primary (it is the backup itself), then the asyncs
        assert admin(cluster, "B", "create_database", "LEGACY")["status"] == "Downloading"
        wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
        out = admin(cluster, "C", "create_database", "LEGACY")
        assert out["status"] == "Downloading"
        wait_db(cluster, "C", "LEGACY", "Dejournaling", timeout=60)
    finally:
        stop.set()
        t.join(30)
    wait_same(cluster, "B", "LEGACY")
    wait_same(cluster, "C", "LEGACY")
    assert "downloaded LEGACY from A" in cluster.log("B")
    assert "downloaded LEGACY from B" in cluster.log("C")  # the backup is the first source
    assert admin(cluster, "C", "download_database", "LEGACY")["already"] is True
    assert cluster.status("C")["missing_mirrored_databases"] == []


def _row(cluster, member: str, db: str) -> dict:
    return {r["name"]: r for r in cluster.status(member)["databases"]}[db]


def _error(cluster, member: str, db: str) -> str:
    return _row(cluster, member, db).get("error", "")


def _c_downloading_with_no_source(make_cluster):
    """LEGACY added on the primary, then C asks for it while A and B are down."""
    cluster = make_cluster(("failover", "failover", "dr"))
    _legacy_on_primary(cluster)
    cluster.stop("B")
    cluster.stop("A")
    admin(cluster, "C", "download_database", "LEGACY")
    return cluster


def test_download_falls_back_to_the_next_source_and_retries_by_itself_until_one_can(
    make_cluster,
):
    cluster = _c_downloading_with_no_source(make_cluster)
    wait_db(cluster, "C", "LEGACY", "Needs Download")
    assert "no source could supply it" in _error(cluster, "C", "LEGACY")
    assert "needs a download" in refusal(cluster, "C", "catchup", "LEGACY")
    # it tries again by itself, waiting longer each time, the reason shown meanwhile
    wait_for(lambda: "next attempt in 2 s" in _error(cluster, "C", "LEGACY"), what="a retry")
    assert db_status(cluster, "C", "LEGACY") in ("Needs Download", "Downloading")
    cluster.start("A")  # and no download_database: the next retry finds A
    wait_db(cluster, "C", "LEGACY", "Dejournaling")
    assert "error" not in _row(cluster, "C", "LEGACY")
    assert "download of LEGACY from B failed" in cluster.log("C")
    assert cluster.log("C").count("downloaded LEGACY from A") == 1
    wait_same(cluster, "C", "LEGACY")
    with cluster.client("C") as c:
        assert c.get("LEGACY", "Root") == "root value"


def test_a_download_cut_short_by_a_restart_goes_on_when_the_member_starts_again(make_cluster):
    cluster = _c_downloading_with_no_source(make_cluster)
    wait_db(cluster, "C", "LEGACY", "Needs Download")
    cluster.stop("C")
    cluster.start("A")
    cluster.start("C")  # nobody asks again: C resumes the download itself
    wait_db(cluster, "C", "LEGACY", "Dejournaling")
    assert "resuming the download of LEGACY" in cluster.log("C")
    wait_same(cluster, "C", "LEGACY")


def test_a_manual_download_tries_at_once_while_the_retry_waits_and_never_runs_twice(
    make_cluster,
):
    cluster = _c_downloading_with_no_source(make_cluster)
    wait_for(lambda: "next attempt in 4 s" in _error(cluster, "C", "LEGACY"), what="retries")
    cluster.start("A")
    assert admin(cluster, "C", "download_database", "LEGACY")["status"] == "Downloading"
    # started at once, not when the retry's wait is over
    assert db_status(cluster, "C", "LEGACY") != "Needs Download"
    assert admin(cluster, "C", "download_database", "LEGACY")["already"] is True
    wait_db(cluster, "C", "LEGACY", "Dejournaling")
    log = cluster.log("C")
    # the retrying download went on at once, rather than a second one starting beside it
    assert "download of LEGACY succeeded on attempt" in log
    assert log.count("downloaded LEGACY from A") == 1
    wait_same(cluster, "C", "LEGACY")


def test_download_is_refused_on_the_primary_and_for_unknown_databases(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    assert "not available on the primary" in refusal(cluster, "A", "download_database", "USER")
    assert "no mirrored database" in refusal(cluster, "B", "download_database", "NOPE")
    assert "not a mirrored database" in refusal(cluster, "B", "export_snapshot", "NOPE")
    admin(cluster, "B", "dismount", "APP")
    assert "not a valid download source" in refusal(cluster, "B", "export_snapshot", "APP")
    assert db_status(cluster, "B", "USER") == "Dejournaling"


def _start_with_capped_sources(cluster, capped: str, mb_s: str) -> None:
    """Start every member; the `capped` one sends snapshots at most mb_s MB/s (the source's
    cap, ENGINE_SNAPSHOT_MAX_MB_S, is read from each process's own environment).  The copies
    the scenario does not need slow (from A, or from a restarted member) run at full speed."""
    for member in cluster.cfg.members:
        with pytest.MonkeyPatch.context() as env:
            env.delenv("ENGINE_SNAPSHOT_MAX_MB_S", raising=False)
            if member.name == capped:
                env.setenv("ENGINE_SNAPSHOT_MAX_MB_S", mb_s)
            cluster.start(member.name, wait=False)
    wait_ready(cluster.cfg, cluster.procs)


def test_source_dying_mid_download_falls_back_to_the_primary(make_cluster):
    # B sends at most 5 MB/s, so C's copy from B below takes seconds: B dies in the middle
    cluster = make_cluster(("failover", "failover", "dr"), start=False)
    _start_with_capped_sources(cluster, "B", "5")
    _legacy_on_primary(cluster, rows=200_000)
    admin(cluster, "B", "download_database", "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    assert admin(cluster, "C", "download_database", "LEGACY")["status"] == "Downloading"
    wait_for(
        lambda: (
            (d := _row(cluster, "C", "LEGACY").get("download"))
            and d["source"] == "B"
            and d["received_bytes"] > 0
        ),
        what="C receiving LEGACY from B",
    )
    cluster.kill9("B")
    wait_db(cluster, "C", "LEGACY", "Dejournaling", timeout=60)
    log = cluster.log("C")
    assert "download of LEGACY from B failed" in log and "downloaded LEGACY from A" in log
    assert "received LEGACY from B" not in log
    wait_same(cluster, "C", "LEGACY")


def test_a_download_shows_the_bytes_received_of_the_size_its_source_offered(
    make_cluster, monkeypatch
):
    monkeypatch.setenv("ENGINE_SNAPSHOT_MAX_MB_S", "1")  # 3.5 MB below: a copy of seconds
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=100_000)
    offered = admin(cluster, "A", "export_snapshot", "LEGACY")["size"]  # nothing writes it
    assert admin(cluster, "B", "download_database", "LEGACY")["status"] == "Downloading"
    first = wait_for(
        lambda: _row(cluster, "B", "LEGACY").get("download", {}).get("received_bytes"),
        what="bytes received",
    )
    later = wait_for(
        lambda: (
            (d := _row(cluster, "B", "LEGACY").get("download"))
            and d["received_bytes"] > first
            and d
        ),
        what="more bytes received",
    )
    assert later["total_bytes"] == offered > later["received_bytes"]
    assert later["source"] == "A"
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    assert "download" not in _row(cluster, "B", "LEGACY")
    wait_same(cluster, "B", "LEGACY")


def _legacy_on_primary_only(cluster, rows: int) -> None:
    store = Store.open(str(Path(cluster.cfg.member("A").data_dir) / "db" / "LEGACY"))
    with store.transaction():
        for i in range(rows):
            store.set("Old", (i, "x"), f"old{i}")
    store.close()
    admin(cluster, "A", "add_database", "LEGACY")
    wait_for(
        lambda: cluster.status("B")["missing_mirrored_databases"] == ["LEGACY"],
        what="LEGACY missing on B",
    )


def test_a_primary_adopting_a_copy_shows_progress_and_tries_again_when_its_source_dies(
    make_cluster,
):
    cluster = make_cluster(("failover", "failover"), start=False)
    _start_with_capped_sources(cluster, "B", "1")  # B dies in the middle of A's copy
    _legacy_on_primary_only(cluster, rows=100_000)
    admin(cluster, "B", "download_database", "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    kept = digest(cluster, "B", "LEGACY")
    admin(cluster, "A", "remove_database", "LEGACY")
    shutil.rmtree(Path(cluster.cfg.member("A").data_dir) / "db" / "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Orphaned")
    assert admin(cluster, "A", "create_database", "LEGACY")["source"] == "B"
    progress = wait_for(
        lambda: _row(cluster, "A", "LEGACY").get("download"), what="A's download progress"
    )
    assert progress["source"] == "B" and progress["total_bytes"] > 0
    cluster.kill9("B")
    wait_for(
        lambda: "no valid copy could be downloaded" in _error(cluster, "A", "LEGACY"),
        what="A's failed adoption",
    )
    assert db_status(cluster, "A", "LEGACY") in ("Needs Download", "Downloading")
    cluster.start("B")  # no create_database again: A asks the members anew by itself
    wait_db(cluster, "A", "LEGACY", "Normal", timeout=60)
    assert digest(cluster, "A", "LEGACY") == kept
    assert "error" not in _row(cluster, "A", "LEGACY")


def _snapshot_with(certs: Path, stem: str, offer: dict) -> bytes:
    """What the snapshot port sends to a TLS client presenting certificate `stem`."""
    ctx = tls.client_context(certs / f"{stem}.pem", certs / f"{stem}-key.pem", certs / "ca.pem")
    received = b""
    address = ("127.0.0.1", offer["port"])
    with (
        socket.create_connection(address, timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(offer["token"].encode())
        try:
            while part := conn.recv(65536):
                received += part
        except (ssl.SSLError, ConnectionResetError):
            pass  # the source closed on us
    return received


def test_on_a_tls_mirror_a_snapshot_goes_only_to_an_authorized_members_certificate(
    hosts,  # noqa: F811
):
    (a,) = create_tls_mirror(hosts, "A")
    b = hosts.add("B", tls_files=True)  # after A listens on its private port: B's differ
    join(b, a, "failover")
    wait_for(lambda: a.status()["pending_members"], what="B pending")
    a.admin("authorize_member", {"member": "B"})
    b.wait_state("Backup")
    a.admin("create_database", {"name": "LEGACY", "mirrored": False})
    a.admin("add_database", "LEGACY")
    with a.client() as c:
        c.set("LEGACY", "K", (1,), "v")
    wait_for(lambda: b.status()["missing_mirrored_databases"] == ["LEGACY"], what="B lacks it")
    # signed by the mirror's CA, but not a member's: another name, and B's name in another DN
    hosts.cert("X")
    hosts.cert("B", org="Elsewhere", name="B-elsewhere")
    for stem in ("X", "B-elsewhere"):
        offer = a.admin("export_snapshot", "LEGACY")
        assert _snapshot_with(hosts.certs, stem, offer) == b""
    log = a.log()
    assert "certificate 'CN=X,O=Mirror Portal' is not an authorized member's" in log
    assert "certificate 'CN=B,O=Elsewhere' is not an authorized member's" in log
    # B's own certificate still gets it
    assert b.admin("create_database", "LEGACY")["status"] == "Downloading"
    wait_for(
        lambda: (
            {r["name"]: r["status"] for r in b.status()["databases"]}["LEGACY"] == "Dejournaling"
        ),
        what="B's copy dejournaling",
    )
    assert "downloaded LEGACY from A" in b.log()
    wait_for(lambda: b.admin("digest", "LEGACY") == a.admin("digest", "LEGACY"), 20, "B same")


def _primary_loses(cluster, db: str) -> None:
    """The primary removes db from the mirror and its files are deleted: the others'
    copies are Orphaned, still activated and whole."""
    admin(cluster, "A", "remove_database", db)
    shutil.rmtree(Path(cluster.cfg.member("A").data_dir) / "db" / db)
    wait_db(cluster, "B", db, "Orphaned")
    wait_db(cluster, "C", db, "Orphaned")


def test_a_primary_that_lost_a_database_adopts_the_backups_valid_copy(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))
    write(cluster, "APP", "kept")
    cluster.wait_converged("B")
    cluster.wait_converged("C")
    kept = digest(cluster, "A", "APP")
    _primary_loses(cluster, "APP")
    out = admin(cluster, "A", "create_database", "APP")
    assert (out["status"], out["source"]) == ("Downloading", "B")
    wait_db(cluster, "A", "APP", "Normal")
    assert digest(cluster, "A", "APP") == kept
    assert "downloaded APP from B" in cluster.log("A")
    # the same incarnation: the others dejournal it again, nothing is obsolete
    wait_db(cluster, "B", "APP", "Dejournaling")
    wait_db(cluster, "C", "APP", "Dejournaling")
    write(cluster, "APP", "after")
    wait_same(cluster, "B", "APP")
    wait_same(cluster, "C", "APP")
    assert admin(cluster, "A", "create_database", "APP")["already"] is True


def test_a_primary_with_no_valid_copy_anywhere_creates_it_empty_and_the_rest_turn_obsolete(
    make_cluster,
):
    cluster = make_cluster(("failover", "failover", "dr"))
    write(cluster, "APP", "old")
    cluster.wait_converged("B")
    cluster.wait_converged("C")
    old = digest(cluster, "A", "APP")
    _primary_loses(cluster, "APP")
    for member in ("B", "C"):  # a dismounted copy is not a valid source
        admin(cluster, member, "dismount", "APP")
    out = admin(cluster, "A", "create_database", "APP")
    assert (out["status"], out["already"]) == ("Normal", False)
    with cluster.client() as c:
        assert c.get("APP", "Data", ("old", 1)) is None
    for member in ("B", "C"):
        admin(cluster, member, "mount", "APP")
        wait_db(cluster, member, "APP", "Obsolete")
        assert digest(cluster, member, "APP") == old  # its data is kept, nothing applied
    write(cluster, "APP", "new")
    with cluster.client() as c:
        assert c.get("APP", "Data", ("new", 1)) == "new1" * 4
    write(cluster, "USER", "later")
    wait_same(cluster, "C", "USER")  # C has dejournaled past the writes to the new APP
    assert digest(cluster, "C", "APP") == old
