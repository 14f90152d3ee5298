import asyncio
import os
import re
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.storage.journal import (
    FILE_HEADER_SIZE,
    CorruptRecord,
    Entry,
    Journal,
    JournalGap,
    JournalReader,
    decode_records,
    encode_record,
    log_name,
    purge,
    replay_into,
)
from engine.storage.store import Store


@pytest.fixture
def jdir(tmp_path):
    return str(tmp_path / "journal")


@pytest.fixture
def journal(jdir):
    j = Journal(jdir, "MIR", max_file_bytes=16 * 1024)
    yield j
    j.close()


def entries(n, start=0, db="DB1", size=100):
    return [Entry(i, db, "SET", "acct", (i, "name"), "v" * size) for i in range(start, start + n)]


def read_log(jdir, mirror="MIR"):
    with open(os.path.join(jdir, log_name(mirror))) as f:
        return f.read().split()


def test_concurrent_committers_share_one_fsync_per_batch(journal):
    async def committer(c):
        out = []
        for i in range(20):
            out += await journal.commit([Entry(c, "DB1", "SET", "acct", (c, i), "x" * 100)])
        return out

    async def main():
        return await asyncio.gather(*[committer(c) for c in range(16)])

    results = asyncio.run(main())
    commits = sum(len(r) for r in results)
    assert commits == 320
    assert 0 < journal.fsync_count < commits
    assert journal.durable_position == journal.end_position
    on_disk = list(JournalReader(journal.dir, "MIR").records_from())
    assert [r.position for r in on_disk] == sorted(r.position for rs in results for r in rs)
    for rs in results:
        assert [r.subs[1] for r in rs] == list(range(20))  # each committer's order kept


def test_files_are_named_logged_and_rotated_at_the_size_limit(journal, jdir):
    for k in range(10):
        journal.commit_sync(entries(20, start=k * 20))
    names = journal.files()
    assert len(names) >= 3  # 200 records of ~180 bytes in 16 KiB files
    for i, n in enumerate(names, start=1):
        assert re.fullmatch(rf"MIRROR-MIR-\d{{8}}\.{i:03d}", n)
        assert os.path.getsize(os.path.join(jdir, n)) <= 16 * 1024
    assert read_log(jdir) == names
    recs = list(JournalReader(jdir, "MIR").records_from())
    assert [r.subs[0] for r in recs] == list(range(200))
    assert [r.position for r in recs] == sorted(r.position for r in recs)


def test_new_file_starts_a_new_sequence_number(journal):
    journal.commit_sync(entries(3))
    first = journal.end_position
    pos = journal.new_file()
    assert pos == (first.file_seq + 1, FILE_HEADER_SIZE)
    [rec] = journal.commit_sync(entries(1))
    assert rec.position == pos


def test_on_append_sees_each_batch_before_its_fsync_and_reproduces_the_files(journal, jdir):
    seen = []
    journal.on_append = lambda data, pos: seen.append((pos, data, journal.fsync_count))

    async def main():
        for k in range(12):
            before, first = journal.fsync_count, len(seen)
            await asyncio.gather(
                *[journal.commit(entries(3, start=k * 9 + j * 3)) for j in range(3)]
            )
            assert journal.fsync_count > before
            # each batch was handed on before its fsync: every callback of the round saw a
            # count below the one after it, the first one the count from before it
            counts = [count for *_, count in seen[first:]]
            assert counts and counts[0] == before, (before, counts)
            assert max(counts) < journal.fsync_count, (counts, journal.fsync_count)

    asyncio.run(main())
    rebuilt = {}
    for pos, data, _ in seen:
        buf = rebuilt.setdefault(pos.file_seq, bytearray())
        assert pos.offset == len(buf)  # contiguous, in order
        buf += data
    reader = JournalReader(jdir, "MIR")
    for seq, name in reader.files():
        with open(os.path.join(jdir, name), "rb") as f:
            assert_records_then_zeros(f.read(), bytes(rebuilt[seq]))


def test_commit_sync_hands_each_batch_on_after_its_write_and_before_its_fsync(journal, jdir):
    journal.commit_sync(entries(1))  # the first file exists: each commit below is one batch
    seen = []

    def on_append(data, pos):
        with open(os.path.join(jdir, journal.current_file), "rb") as f:
            on_disk = f.read()[pos.offset : pos.offset + len(data)]
        seen.append((on_disk == data, journal.fsync_count))

    journal.on_append = on_append
    for k in range(5):
        before = journal.fsync_count
        journal.commit_sync(entries(3, start=1 + k * 3))
        assert seen[-1] == (True, before)
        assert journal.fsync_count > before
    assert len(seen) == 5


def _ship(src_dir, dst, chunk=3000):
    """Copy a journal to a receiving Journal with read_from/receive, like catch-up does."""
    reader = JournalReader(src_dir, "MIR")
    pos = dst.end_position or reader.start_position()
    got = []

    async def main():
        nonlocal pos
        while True:
            data, nxt = reader.read_from(pos, chunk)
            if not data and nxt == pos:
                return
            if data:
                got.extend(await dst.receive(pos.file_seq, pos.offset, data, durable=True))
            pos = nxt

    asyncio.run(main())
    return got


def assert_records_then_zeros(on_disk: bytes, records: bytes) -> None:
    """The writer's file holds exactly these bytes, then only the zeros it writes ahead of
    its end (engine/storage/journal.py: a growing file costs every fdatasync more)."""
    assert on_disk[: len(records)] == records
    assert on_disk.count(0, len(records)) == len(on_disk) - len(records)


def test_a_receiver_builds_byte_identical_files_from_catch_up_chunks(journal, jdir, tmp_path):
    for k in range(8):
        journal.commit_sync(entries(15, start=k * 15))
    backup = Journal(str(tmp_path / "backup"), "MIR")
    try:
        got = _ship(jdir, backup)
        assert [r.subs[0] for r in got] == list(range(120))
        assert backup.files() == journal.files()
        for n in journal.files():
            with open(os.path.join(jdir, n), "rb") as a, open(backup.dir + "/" + n, "rb") as b:
                assert_records_then_zeros(a.read(), b.read())
        assert backup.end_position == journal.end_position
        assert backup.durable_position == backup.end_position
        # more data later continues the same copy
        journal.commit_sync(entries(5, start=500))
        assert [r.subs[0] for r in _ship(jdir, backup)] == list(range(500, 505))
    finally:
        backup.close()


def test_a_receiver_refuses_corrupt_or_misplaced_data_and_keeps_its_copy(journal, tmp_path):
    chunks = []
    journal.on_append = lambda data, pos: chunks.append((pos, data))
    journal.commit_sync(entries(3))
    journal.commit_sync(entries(3, start=3))
    backup = Journal(str(tmp_path / "backup"), "MIR")

    async def main():
        (ph, head), (p0, d0), (p1, d1) = chunks
        assert ph.offset == 0 and len(head) == FILE_HEADER_SIZE
        with pytest.raises(JournalGap):
            await backup.receive(p0.file_seq, p0.offset, d0)  # the file's header is missing
        assert await backup.receive(ph.file_seq, 0, head) == []
        with pytest.raises(JournalGap):
            await backup.receive(p1.file_seq, p1.offset, d1)  # hole before it
        bad = bytearray(d0)
        bad[-3] ^= 0x10
        with pytest.raises(CorruptRecord):
            await backup.receive(p0.file_seq, p0.offset, bytes(bad))
        assert backup.end_position == (1, FILE_HEADER_SIZE)
        assert len(await backup.receive(p0.file_seq, p0.offset, d0)) == 3
        with pytest.raises(CorruptRecord, match="claims position"):
            await backup.receive(p1.file_seq, p1.offset + 1, d1)
        assert await backup.receive(p0.file_seq, p0.offset, d0) == []  # duplicate: no-op
        # a resend overlapping what we have: only the new records are written and returned
        got = await backup.receive(p0.file_seq, p0.offset, d0 + d1)
        assert [r.position for r in got] == [r.position for r in decode_records(d1)]
        return backup.end_position

    try:
        assert asyncio.run(main()) == journal.end_position
    finally:
        backup.close()


def test_reopening_cuts_a_torn_tail_and_keeps_every_whole_record(jdir):
    j = Journal(jdir, "MIR")
    recs = j.commit_sync(entries(10))
    name = j.current_file
    j.close()
    path = os.path.join(jdir, name)
    good_size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x55" * 37)  # half-written next record
    j = Journal(jdir, "MIR")
    try:
        assert j.recovered_cut_bytes == 37
        assert os.path.getsize(path) == good_size
        assert j.end_position == recs[-1].end
        assert list(JournalReader(jdir, "MIR").records_from()) == recs
        [more] = j.commit_sync(entries(1, start=10))
        assert more.position == recs[-1].end
    finally:
        j.close()


def test_a_file_whose_header_never_reached_disk_is_reset_on_open(jdir):
    j = Journal(jdir, "MIR")
    j.commit_sync(entries(2))
    j.new_file()
    name = j.current_file
    j.close()
    with open(os.path.join(jdir, name), "r+b") as f:
        f.truncate(7)
    j = Journal(jdir, "MIR")
    try:
        assert j.end_position == (2, FILE_HEADER_SIZE)
        [rec] = j.commit_sync(entries(1))
        assert rec.position == (2, FILE_HEADER_SIZE)
    finally:
        j.close()
    assert len(list(JournalReader(jdir, "MIR").records_from())) == 3


def test_purge_removes_old_files_and_updates_the_log(journal, jdir):
    for k in range(10):
        journal.commit_sync(entries(20, start=k * 20))
    names = journal.files()
    removed = purge(jdir, "MIR", keep_from_seq=3)
    assert removed == names[:2]
    assert read_log(jdir) == names[2:]
    assert sorted(os.listdir(jdir)) == sorted([*names[2:], log_name("MIR")])
    reader = JournalReader(jdir, "MIR")
    assert reader.start_position() == (3, 0)
    with pytest.raises(JournalGap):
        reader.read_from((1, 0))
    assert journal.purge(keep_from_seq=10**6) == names[2:-1]  # never the file being written
    assert read_log(jdir) == journal.files() == names[-1:]
    journal.new_file()
    assert read_log(jdir) == journal.files()  # purged files do not come back into the log
    assert len(journal.files()) == 2


def test_replay_brings_a_store_up_to_the_journal_once(journal, jdir, tmp_path):
    journal.commit_sync(entries(30, db="DB1"))
    journal.commit_sync(entries(5, db="DB2"))
    journal.commit_sync([Entry(99, "DB1", "KILL", "acct", (3,), None)])
    store = Store.open(str(tmp_path / "db1"))
    try:
        assert replay_into(store, jdir, "DB1", mirror="MIR") == 31
        assert store.get("acct", (3, "name")) is None
        assert store.get("acct", (4, "name")) == "v" * 100
        assert store.count() == 29
        assert replay_into(store, jdir, "DB1") == 0  # mirror found from the file names
    finally:
        store.close()


def test_invalid_mirror_names_are_refused(jdir):
    with pytest.raises(ValueError, match="mirror name"):
        Journal(jdir, "bad name")


@pytest.mark.parametrize("chunk", [64, 300, 1000, 4096])
def test_reading_in_small_chunks_returns_every_record_once(journal, jdir, chunk):
    for k in range(6):
        journal.commit_sync(entries(25, start=k * 25, size=k * 40))  # records of varied sizes
    reader = JournalReader(jdir, "MIR")
    batches = list(reader.batches_from(chunk=chunk))
    assert [r.subs[0] for b in batches for r in b] == list(range(150))
    middle = batches[1][0].position
    assert [r.position for r in reader.records_from(middle)][0] == middle
    only = list(reader.records_from(database="DB1"))
    assert len(only) == 150
    assert list(reader.records_from(database="OTHER")) == []


def test_a_receiver_that_becomes_primary_continues_in_a_new_file(journal, jdir, tmp_path):
    journal.commit_sync(entries(10))
    backup = Journal(str(tmp_path / "backup"), "MIR")
    try:
        _ship(jdir, backup)
        received_end = backup.end_position
        pos = backup.new_file()  # takeover: guide §3.2 switch to a new file
        assert pos == (received_end.file_seq + 1, FILE_HEADER_SIZE)
        assert backup.fsync_count >= 1
        [rec] = backup.commit_sync(entries(1, start=10))
        assert rec.position == pos
        got = list(JournalReader(backup.dir, "MIR").records_from())
        assert [r.subs[0] for r in got] == list(range(11))
    finally:
        backup.close()


@pytest.mark.parametrize(
    "bad, reason",
    [
        (Entry(1, "DB1", "SET", "g", (1,), None), "cannot be stored"),
        (Entry(1, "DB1", "SET", "1bad", (1,), "v"), "global name"),
        (Entry(1, "DB1", "MERGE", "g", (1,), "v"), "unknown journal operation"),
        (Entry(1, "", "SET", "g", (1,), "v"), "database name"),
        (Entry(-1, "DB1", "SET", "g", (1,), "v"), "transaction id"),
        (Entry(1, "DB1", "SET", "g", ("x" * 600,), "v"), "limit is 511"),
    ],
)
def test_a_bad_entry_fails_its_whole_commit_and_writes_nothing(journal, bad, reason):
    journal.commit_sync(entries(2))
    before = journal.end_position

    async def main():
        with pytest.raises(ValueError, match=reason):
            await journal.commit([*entries(3, start=10), bad])
        return await journal.commit(entries(1, start=20))

    [rec] = asyncio.run(main())
    assert rec.position == before  # nothing of the failed commit took a position
    subs = [r.subs[0] for r in JournalReader(journal.dir, "MIR").records_from()]
    assert subs == [0, 1, 20]


def test_a_batch_torn_across_a_file_switch_is_cut_from_both_files(jdir):
    j = Journal(jdir, "MIR", max_file_bytes=8 * 1024)
    kept = j.commit_sync(entries(30))  # ~5.5 KiB in file 1
    spanning = j.commit_sync(entries(30, start=30))  # rotates into file 2 mid-batch
    first, second = j.files()
    j.close()
    in_first = [r for r in spanning if r.position.file_seq == 1]
    assert in_first and len(in_first) < len(spanning)
    # the crash: file 1's part of that batch only half on disk, file 2's part complete
    path = os.path.join(jdir, first)
    with open(path, "r+b") as f:
        f.truncate(in_first[-1].position.offset + 10)
    j = Journal(jdir, "MIR", max_file_bytes=8 * 1024)
    try:
        assert j.files() == [first]
        assert not os.path.exists(os.path.join(jdir, second))
        assert read_log(jdir) == [first]
        assert j.recovered_cut_bytes > 10
        survivors = list(JournalReader(jdir, "MIR").records_from())
        assert survivors == kept + in_first[:-1]  # a clean prefix, no hole
        assert j.end_position == in_first[-1].position
    finally:
        j.close()


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.integers(1, 12), min_size=1, max_size=12),
    in_flight=st.integers(1, 12),
    torn_at=st.floats(0, 1),
    garbage=st.binary(max_size=64),
)
def test_recovery_keeps_every_acknowledged_record_and_only_a_clean_prefix_of_the_rest(
    batches, in_flight, torn_at, garbage
):
    with tempfile.TemporaryDirectory() as d:
        j = Journal(d, "MIR", max_file_bytes=6 * 1024)
        acked = []
        for k, n in enumerate(batches):
            acked += j.commit_sync(entries(n, start=k * 100, size=k * 13))
        end = j.end_position
        name = j.current_file
        j.close()
        # the crash: the next batch only partly reached the file, maybe followed by junk
        buf, off = b"", end.offset
        for i in range(in_flight):
            rec = encode_record((end.file_seq, off), 1.0, 7, "DB1", "SET", "late", (i,), "x" * 50)
            buf += rec
            off += len(rec)
        with open(os.path.join(d, name), "ab") as f:
            f.write(buf[: int(len(buf) * torn_at)] + garbage)
        j = Journal(d, "MIR", max_file_bytes=6 * 1024)
        try:
            got = list(JournalReader(d, "MIR").records_from())
            assert got[: len(acked)] == acked
            late = got[len(acked) :]
            assert all(r.gname == "late" for r in late)
            assert [r.subs[0] for r in late] == list(range(len(late)))  # a prefix, in order
            assert j.end_position == (late[-1].end if late else end)
        finally:
            j.close()


def test_the_writer_keeps_zeros_ahead_and_its_files_end_at_their_records_once_done(jdir):
    journal = Journal(jdir, "MIR", max_file_bytes=1 << 22)
    journal.commit_sync(entries(10))
    current = os.path.join(jdir, journal.current_file)
    assert os.path.getsize(current) > journal.end_position.offset  # zeros ahead
    first = journal.current_file
    journal.new_file()
    assert os.path.getsize(os.path.join(jdir, first)) < 4096  # cut to its records
    journal.commit_sync(entries(3, start=10))
    journal.close()
    assert os.path.getsize(current.replace(first, journal.current_file)) == (
        journal.end_position.offset
    )
    reopened = Journal(jdir, "MIR")
    try:  # zeros are no torn tail: nothing is reported cut
        assert reopened.recovered_cut_bytes == 0
        assert reopened.end_position == journal.end_position
    finally:
        reopened.close()


def test_zeros_left_ahead_by_a_crash_are_cut_at_open_and_not_counted_as_torn(jdir):
    journal = Journal(jdir, "MIR")
    journal.commit_sync(entries(10))
    end = journal.end_position
    name = os.path.join(jdir, journal.current_file)
    with open(name, "ab") as f:  # as a kill -9 leaves it: records, then zeros ahead
        f.write(bytes(5000))
    reopened = Journal(jdir, "MIR")  # (the first one never closed: a crash)
    try:
        assert reopened.recovered_cut_bytes == 0
        assert reopened.end_position == end
        assert os.path.getsize(name) == end.offset
    finally:
        reopened.close()
