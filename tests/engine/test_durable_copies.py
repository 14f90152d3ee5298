"""A copy of a database with no journal behind it (downloaded, adopted, added) is durable
before the member counts it, and a start finds either a durable copy or one that still Needs
Download (engine/storage/durable.py).

An OS crash cannot be made here: the fsyncs are counted (engine.storage.durable.fsync_count,
and the count each member logs per copy), their order against the catalog record is checked
from the log and with strace on the real process, and the catalog states a crash can leave
are made on disk and started from, after kill -9 at the moments that matter.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from engine.storage import durable
from engine.storage.databases import Catalog, DbEntry
from engine.storage.store import Store
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_database_ops import admin, digest, wait_db, wait_same
from tests.engine.test_download import _legacy_on_primary_only, _row

pytestmark = pytest.mark.timeout(180)


# -- the helpers, in this process ---------------------------------------------------------


@pytest.fixture
def fsynced(monkeypatch):
    """Paths given to os.fsync, in order (the real fsync still runs)."""
    paths: list[str] = []
    real = os.fsync

    def spy(fd):
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return paths


def test_sync_copy_fsyncs_every_file_but_the_lock_then_the_directories_naming_it(tmp_path, fsynced):
    copy = tmp_path / "data" / "db" / "X"
    store = Store.open(str(copy))
    store.set("G", (1,), "v")
    store.close()
    (copy / "extra.bin").write_bytes(b"x")
    before = durable.fsync_count
    assert durable.sync_copy(copy) == 5
    assert durable.fsync_count - before == 5
    assert fsynced == [
        str(copy / "data.mdb"),
        str(copy / "extra.bin"),
        str(copy),
        str(copy.parent),
        str(copy.parent.parent),
    ]  # lock.mdb: LMDB's reader table, made anew by every process that opens the store


def test_sync_store_syncs_lmdb_then_the_copy(tmp_path, fsynced):
    store = Store.open(str(tmp_path / "db" / "Y"))
    store.set("G", (1,), "v")
    before = durable.fsync_count
    assert durable.sync_store(store) == 5  # LMDB's sync, data.mdb, Y, db, tmp_path
    assert durable.fsync_count - before == 5
    assert fsynced[-4:] == [
        str(tmp_path / "db" / "Y" / "data.mdb"),
        str(tmp_path / "db" / "Y"),
        str(tmp_path / "db"),
        str(tmp_path),
    ]
    store.close()


def test_the_catalog_rename_is_made_durable_with_its_directory(tmp_path, fsynced):
    catalog = Catalog(tmp_path)
    catalog.entries["X"] = DbEntry("X", "inc", needs_download=True)
    catalog.save()
    # the new file's data, then the directory holding the rename: the marker is on disk
    assert fsynced == [str(tmp_path / "databases.tmp"), str(tmp_path)]


# -- real members -------------------------------------------------------------------------


def _catalog(cluster, member: str) -> dict:
    path = Path(cluster.cfg.member(member).data_dir) / "databases.json"
    return {e["name"]: e for e in json.loads(path.read_text())["databases"]}


def _copy_dir(cluster, member: str, db: str = "LEGACY") -> Path:
    return Path(cluster.cfg.member(member).data_dir) / "db" / db


def _at(log: str, text: str) -> int:
    i = log.find(text)
    assert i >= 0, f"{text!r} not in the log:\n{log[-3000:]}"
    return i


def test_a_download_is_fsynced_before_the_catalog_counts_it(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=20_000)
    # the primary took the added copy as it was: durable before it was mounted
    assert re.search(r"database LEGACY durable before it is mounted: 5 fsyncs", cluster.log("A"))
    admin(cluster, "B", "download_database", "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    log = cluster.log("B")
    # data.mdb, db/LEGACY, db, the data directory; then the catalog records it
    durable_at = _at(log, "copy of LEGACY durable: 4 fsyncs")
    assert _at(log, "received LEGACY from A") < durable_at < _at(log, "catch-up of LEGACY started")
    assert _catalog(cluster, "B")["LEGACY"]["needs_download"] is False
    wait_same(cluster, "B", "LEGACY")


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-o", "/dev/null", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="strace is not available here")
def test_strace_shows_the_copy_fsynced_before_the_catalog_rename_that_records_it(
    make_cluster, tmp_path
):
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=20_000)
    out = tmp_path / "strace.out"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-y", "-o", str(out), "-p", str(cluster.procs["B"].pid),
         "-e", "trace=fsync,fdatasync,rename,renameat,renameat2"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # attached to every thread
        admin(cluster, "B", "download_database", "LEGACY")
        wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    finally:
        tracer.terminate()
        tracer.wait(10)
    calls = out.read_text().splitlines()  # `fsync(fd<path> <unfinished ...>` names it too
    copy = _copy_dir(cluster, "B")

    def first(pred, start=0, what=""):
        for i in range(start, len(calls)):
            if pred(calls[i]):
                return i
        raise AssertionError(f"no {what} in the trace:\n" + "\n".join(calls[-40:]))

    data = first(lambda c: "fsync(" in c and f"<{copy}/data.mdb>" in c, what="data.mdb fsync")
    first(lambda c: "fsync(" in c and f"<{copy}>" in c, data, "copy directory fsync")
    first(lambda c: "fsync(" in c and f"<{copy.parent}>" in c, data, "db directory fsync")
    top = first(lambda c: "fsync(" in c and f"<{copy.parent.parent}>" in c, data, "data dir fsync")
    # the first catalog written after the copy is durable is the one that records it
    record = first(lambda c: "rename" in c and "databases.json" in c, top, "catalog rename")
    first(lambda c: "fsync(" in c and f"<{copy.parent.parent}>" in c, record, "rename made durable")
    assert _catalog(cluster, "B")["LEGACY"]["needs_download"] is False


def test_kill9_during_a_download_leaves_needs_download_and_the_start_downloads_anew(
    make_cluster, monkeypatch
):
    monkeypatch.setenv("ENGINE_SNAPSHOT_MAX_MB_S", "1")  # ~3.5 MB: seconds to copy
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=100_000)
    admin(cluster, "B", "download_database", "LEGACY")
    wait_for(
        lambda: _row(cluster, "B", "LEGACY").get("download", {}).get("received_bytes"),
        what="B receiving LEGACY",
    )
    cluster.kill9("B")
    torn = _copy_dir(cluster, "B") / "data.mdb"
    assert torn.exists() and torn.stat().st_size > 0  # a part of the copy, on disk
    assert _catalog(cluster, "B")["LEGACY"]["needs_download"] is True
    assert "copy of LEGACY durable" not in cluster.log("B")
    cluster.start("B")
    # never opened as a store: downloaded again from its first byte
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=90)
    log = cluster.log("B")
    assert "resuming the download of LEGACY" in log
    assert log.count("copy of LEGACY durable: 4 fsyncs") == 1
    wait_same(cluster, "B", "LEGACY")


def test_a_start_after_a_crash_before_the_record_downloads_the_torn_copy_again(make_cluster):
    """What an OS crash leaves when it strikes after the bytes arrived but before the
    catalog's rename reached the disk: the catalog still says Needs Download, and the copy's
    file is torn.  The start must not trust it."""
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=20_000)
    admin(cluster, "B", "download_database", "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    cluster.stop("B")
    catalog = Path(cluster.cfg.member("B").data_dir) / "databases.json"
    raw = json.loads(catalog.read_text())
    for e in raw["databases"]:
        if e["name"] == "LEGACY":
            e.update(needs_download=True, activated=False, caught_up=False)
    catalog.write_text(json.dumps(raw))
    data = _copy_dir(cluster, "B") / "data.mdb"
    used = data.stat().st_blocks * 512
    with open(data, "r+b") as f:  # half its pages never reached the disk
        f.seek(used // 2)
        f.write(b"\0" * (used // 2))
    cluster.start("B")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    log = cluster.log("B")
    assert "resuming the download of LEGACY" in log
    assert log.count("copy of LEGACY durable: 4 fsyncs") == 2
    wait_same(cluster, "B", "LEGACY")


def test_kill9_after_the_record_keeps_the_copy_without_downloading_it_again(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=20_000)
    admin(cluster, "B", "download_database", "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    cluster.kill9("B")
    cluster.start("B")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    log = cluster.log("B")
    assert log.count("received LEGACY from") == 1
    assert "resuming the download of LEGACY" not in log
    wait_same(cluster, "B", "LEGACY")


def test_a_primary_adopting_a_copy_makes_it_durable_before_recording_it(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    _legacy_on_primary_only(cluster, rows=20_000)
    admin(cluster, "B", "download_database", "LEGACY")
    wait_db(cluster, "B", "LEGACY", "Dejournaling", timeout=60)
    kept = digest(cluster, "B", "LEGACY")
    admin(cluster, "A", "remove_database", "LEGACY")
    shutil.rmtree(_copy_dir(cluster, "A"))
    wait_db(cluster, "B", "LEGACY", "Orphaned")
    assert admin(cluster, "A", "create_database", "LEGACY")["source"] == "B"
    wait_db(cluster, "A", "LEGACY", "Normal", timeout=60)
    log = cluster.log("A")
    # the file with the directories, then LMDB's sync of the position it was given, then
    # the record
    assert _at(log, "copy of LEGACY durable: 4 fsyncs") < _at(
        log, "adopted copy of LEGACY durable: 5 fsyncs"
    )
    assert _catalog(cluster, "A")["LEGACY"]["needs_download"] is False
    assert digest(cluster, "A", "LEGACY") == kept


# -- the primary's purge: a checkpoint first ----------------------------------------------


def _store_maps(pid: int, data_dir: Path) -> dict[str, int]:
    """database -> start address of its data.mdb mapping in process pid."""
    out = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if fields[-1].startswith(str(data_dir / "db")) and fields[-1].endswith("/data.mdb"):
            out.setdefault(Path(fields[-1]).parent.name, int(fields[0].split("-")[0], 16))
    return out


@pytest.mark.skipif(not _strace_works(), reason="strace is not available here")
def test_the_primary_syncs_every_store_before_it_removes_a_journal_file(make_cluster, tmp_path):
    from tests.engine.test_replication import write_mix

    cluster = make_cluster(("failover", "failover"), mirror={"journal_file_bytes": 6000})
    cluster.wait_backup_active()
    with cluster.client() as c:
        write_mix(c, "p", 100)
    cluster.wait_converged("B")
    pid = cluster.procs["A"].pid
    maps = _store_maps(pid, Path(cluster.cfg.member("A").data_dir))
    assert set(maps) == {"USER", "APP"}
    out = tmp_path / "strace.out"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", str(out), "-p", str(pid),
         "-e", "trace=msync,fsync,fdatasync,unlink,unlinkat"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        purged = admin(cluster, "A", "purge_journal", None)
        assert purged["removed"] and purged["kept_from_seq"] > 1
    finally:
        tracer.terminate()
        tracer.wait(10)
    calls = out.read_text().splitlines()
    unlinks = [i for i, c in enumerate(calls) if "unlink" in c and "/MIRROR-TEST-" in c]
    assert unlinks, "\n".join(calls[-40:])
    for db, addr in maps.items():
        synced = [i for i, c in enumerate(calls) if f"msync({addr:#x}," in c and "MS_SYNC" in c]
        assert synced and synced[0] < unlinks[0], (db, "\n".join(calls[-40:]))
    # and the primary comes back from what is left, as it was
    before = cluster.digests("A")
    cluster.kill9("A")
    cluster.start("A")
    assert cluster.digests("A") == before
