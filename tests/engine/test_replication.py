"""Replication between real member processes: sync backup, asyncs, catch-up, dejournaling."""

import pytest

from engine.client.app import EngineError
from engine.storage.journal_codec import file_content
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.timeout(120)

ALL_TYPES = ("failover", "failover", "dr", "ro_reporting", "rw_reporting")


def write_mix(client, tag: str, n: int = 200) -> None:
    """Sets, kills and transactions over both databases."""
    for i in range(n):
        client.set("USER", "Mix", (tag, i), f"{tag}-{i}" * 3)
    client.pipeline([("set", "APP", "Big", (tag, i), i * 1.5) for i in range(n)])
    client.kill("USER", "Mix", (tag, 7))
    client.tstart()
    client.set("APP", "Txn", (tag,), b"\x01\x02")
    client.kill("APP", "Big", (tag, 3))
    client.tcommit()


def test_every_async_type_and_the_backup_converge_to_the_primary(make_cluster):
    cluster = make_cluster(ALL_TYPES, mirror={"parallel_dejournaling": "all"})
    with cluster.client() as c:
        write_mix(c, "a")
    for name in "BCDE":
        assert cluster.wait_converged(name) == cluster.digests("A")
    with cluster.client("D") as c:
        assert c.get("USER", "Mix", ("a", 5)) == "a-5a-5a-5"
        assert c.get("USER", "Mix", ("a", 7)) is None


def test_acknowledged_write_is_already_in_the_active_backups_journal(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    with cluster.client() as c:
        for i in range(20):
            c.set("USER", "Sync", (i,), "x" * 100)
            end = c.status()["journal_end"]
            assert cluster.status("B")["journal_end"] >= end


def test_backup_that_stops_answering_loses_active_then_catches_up(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"), mirror={"qos_timeout_ms": 400})
    cluster.wait_backup_active()
    cluster.pause("B")
    try:
        with cluster.client() as c:
            # the primary revokes Active after the QoS timeout and carries on
            for i in range(50):
                c.set("USER", "Carry", (i,), i)
            rows = {r["member"]: r for r in c.status()["members"]}
            assert rows["B"]["journal_transfer"] != "Active"
            assert "revoked" in cluster.log("A")
    finally:
        cluster.resume("B")
    cluster.wait_backup_active(timeout=20)
    cluster.wait_converged("B")
    cluster.wait_converged("C")


def test_backup_killed_and_restarted_catches_up_and_becomes_active_again(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    with cluster.client() as c:
        write_mix(c, "before", 50)
        cluster.kill9("B")
        write_mix(c, "while-down", 300)
        assert cluster.status("A")["members"][0]["status"] == "Down"
    cluster.start("B")
    cluster.wait_backup_active(timeout=20)
    cluster.wait_converged("B")
    with cluster.client() as c:
        write_mix(c, "after", 20)
    cluster.wait_converged("B")


@pytest.mark.parametrize(
    "mirror, codecs, backup_codec, async_codec",
    [
        ({}, None, None, "zstd"),
        ("tls", None, "lz4", "zstd"),
        (
            {"failover_compression": "Uncompressed", "async_compression": "Uncompressed"},
            None,
            None,
            None,
        ),
        (
            {
                "failover_compression": "Compressed",
                "async_compression": "Compressed",
                "async_compression_type": "zstd",
            },
            None,
            "zlib",
            "zstd",
        ),
        (
            {
                "failover_compression": "Compressed",
                "failover_compression_type": "lz4",
                "async_compression": "Compressed",
                "async_compression_type": "lz4",
            },
            None,
            "lz4",
            "lz4",
        ),
        ("tls", ["zlib"], "zlib", "zlib"),
    ],
    ids=[
        "system-selected",
        "system-selected-tls",
        "uncompressed",
        "zlib-zstd",
        "lz4",
        "zlib-fallback",
    ],
)
def test_compression_mode_picks_the_codec_and_data_still_converges(
    make_cluster, mirror, codecs, backup_codec, async_codec
):
    extra = {"B": {"codecs": codecs}, "C": {"codecs": codecs}} if codecs else None
    tls = mirror == "tls"  # a mirror that requires TLS (real mutual TLS on the data channel)
    cluster = make_cluster(
        ("failover", "failover", "dr"), mirror=None if tls else mirror, member_extra=extra, tls=tls
    )
    cluster.wait_backup_active()
    with cluster.client() as c:
        write_mix(c, "z", 100)
        rows = {r["member"]: r for r in c.status()["members"]}
    assert rows["B"]["codec"] == backup_codec
    assert rows["C"]["codec"] == async_codec
    assert cluster.status("C")["codec"] == async_codec
    cluster.wait_converged("B")
    cluster.wait_converged("C")


def test_stopped_dejournaling_keeps_receiving_and_applies_on_start(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    with cluster.client("B") as dr:
        dr.admin("dejournal_stop")
        with cluster.client() as c:
            c.set("USER", "Held", (1,), "later")
        cluster.wait_status("B", "journal_transfer", "Caught up")
        st = cluster.status("B")
        assert st["dejournaling"] == "Warning! Dejournaling is stopped."
        assert dr.get("USER", "Held", (1,)) is None
        dr.admin("dejournal_start")
        wait_for(lambda: dr.get("USER", "Held", (1,)) == "later", what="held record applied")
    cluster.wait_status("B", "dejournaling", "Caught up")


def test_paused_database_waits_while_the_other_database_keeps_up(make_cluster):
    cluster = make_cluster(("failover", "ro_reporting"))
    with cluster.client("B") as rep:
        rep.admin("pause_database", "APP")
        with cluster.client() as c:
            c.set("APP", "P", (1,), "paused")
            c.set("USER", "U", (1,), "flows")
        wait_for(lambda: rep.get("USER", "U", (1,)) == "flows", what="USER applied")
        assert rep.get("APP", "P", (1,)) is None
        assert cluster.status("B")["dejournaling"] == "Warning! Some databases need attention."
        rep.admin("resume_database", "APP")
        wait_for(lambda: rep.get("APP", "P", (1,)) == "paused", what="APP applied after resume")


FILTER = """
def skip_scratch(record):
    return not record.gname.startswith("Scratch")
"""


def test_dejournal_filter_on_a_reporting_async_skips_records(make_cluster, tmp_path, monkeypatch):
    (tmp_path / "myfilters.py").write_text(FILTER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    cluster = make_cluster(
        ("failover", "rw_reporting"),
        member_extra={"B": {"dejournal_filter": "myfilters:skip_scratch"}},
    )
    with cluster.client() as c:
        c.set("USER", "Scratch", (1,), "skip me")
        c.set("USER", "Keep", (1,), "keep me")
    with cluster.client("B") as rep:
        wait_for(lambda: rep.get("USER", "Keep", (1,)) == "keep me", what="kept record")
        assert rep.get("USER", "Scratch", (1,)) is None


def test_streaming_and_catch_up_cross_journal_file_switches(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"), mirror={"journal_file_bytes": 6000})
    cluster.wait_backup_active()
    with cluster.client() as c:
        write_mix(c, "live", 100)  # many files, streamed live
        cluster.kill9("B")
        write_mix(c, "missed", 100)  # B must catch up across several files
        files_before = c.status()["journal_end"][0]
    assert files_before > 5
    cluster.start("B")
    cluster.wait_backup_active(timeout=20)
    cluster.wait_converged("B")
    cluster.wait_converged("C")
    # positions are the same everywhere because every member's journal files are byte-identical
    a_dir = cluster.cfg.member("A").data_dir / "journal"
    for member in "BC":
        b_dir = cluster.cfg.member(member).data_dir / "journal"
        names = sorted(p.name for p in b_dir.glob("MIRROR-*"))
        assert names == sorted(p.name for p in a_dir.glob("MIRROR-*"))
        for name in names:
            same = file_content((b_dir / name).read_bytes())
            assert same == file_content((a_dir / name).read_bytes()), (member, name)


def test_backup_restarted_under_steady_load_becomes_active(make_cluster):
    import threading

    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    cluster.kill9("B")
    stop = threading.Event()
    written, errors = [0], []

    def load():
        try:
            with cluster.client() as c:
                while not stop.is_set():
                    c.set("USER", "Steady", (written[0],), "s" * 100)
                    written[0] += 1
        except Exception as exc:  # a load that died is reported below, not lost
            errors.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        wait_for(lambda: written[0] or errors, what="the load to write")
        cluster.start("B")
        cluster.wait_backup_active(timeout=20)
        # the load went on once B was Active (its writes then wait for B's acks)
        active_at = written[0]
        wait_for(lambda: written[0] > active_at + 10 or errors, what="writes while B is Active")
    finally:
        stop.set()
        t.join(10)
    assert errors == [] and not t.is_alive()
    assert written[0] > 10
    cluster.wait_converged("B")


def test_backup_drops_a_silent_primary_after_qos_and_reconnects_when_it_answers(make_cluster):
    cluster = make_cluster(("failover", "failover"), mirror={"qos_timeout_ms": 400})
    cluster.wait_backup_active()
    cluster.pause("A")
    try:
        wait_for(
            lambda: cluster.status("B")["journal_transfer"].startswith("Disconnected on"),
            what="backup gives up on the silent primary",
        )
        assert "no message from the primary" in cluster.log("B")
    finally:
        cluster.resume("A")
    cluster.wait_backup_active(timeout=20)


def test_journal_purge_keeps_what_members_and_replay_need(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"), mirror={"journal_file_bytes": 6000})
    cluster.wait_backup_active()
    with cluster.client() as c:
        write_mix(c, "p", 100)
        cluster.wait_converged("C")
        cluster.kill9("C")
        with pytest.raises(EngineError, match="C not connected"):
            c.admin("purge_journal")
        cluster.start("C")
        cluster.wait_status("C", "status", "Connected")
        out = c.admin("purge_journal")
        assert out["removed"] and out["kept_from_seq"] > 1
    a_dir = cluster.cfg.member("A").data_dir / "journal"
    assert not any((a_dir / name).exists() for name in out["removed"])
    # the primary still restarts (replay starts from the stores' applied positions) ...
    before = cluster.digests("A")
    cluster.kill9("A")
    cluster.start("A")
    assert cluster.digests("A") == before
    # ... and members keep following it
    with cluster.client() as c:
        write_mix(c, "after-purge", 20)
    cluster.wait_converged("B")
    cluster.wait_converged("C")


def test_member_holding_journal_the_primary_lost_cuts_it_and_rebuilds(make_cluster):
    from engine.storage.journal import Entry, Journal

    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()
    with cluster.client() as c:
        write_mix(c, "common", 50)
    cluster.wait_converged("B")
    cluster.stop("B")
    # Records only the backup has, as when a batch reached it just before the primary
    # died without writing it: appended to B's own journal, applied to B's stores at start.
    b_journal = Journal(cluster.cfg.member("B").data_dir / "journal", "TEST")
    b_journal.commit_sync(
        [Entry(1, "USER", "SET", "Ghost", (i,), "never acked") for i in range(10)]
    )
    b_journal.close()
    cluster.start("B")
    cluster.wait_backup_active(timeout=20)
    cluster.wait_converged("B")
    assert "cutting it, rebuilding databases" in cluster.log("B")
    with cluster.client() as c:
        write_mix(c, "later", 20)
    cluster.wait_converged("B")
