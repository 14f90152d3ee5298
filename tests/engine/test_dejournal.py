import random
import textwrap

import pytest

from engine.storage.dejournal import Dejournaler, load_filter
from engine.storage.journal_codec import JournalPosition, decode_records, encode_record
from engine.storage.store import Store

DBS = ["DB1", "DB2", "DB3", "DB4"]


@pytest.fixture
def stores(tmp_path):
    opened = {db: Store.open(str(tmp_path / db)) for db in DBS}
    yield opened
    for s in opened.values():
        s.close()


@pytest.fixture
def make_dj(stores):
    made = []

    def make(**kw):
        dj = Dejournaler(stores, **kw)
        made.append(dj)
        return dj

    yield make
    for dj in made:
        dj.close()


def journal_of(specs, file_seq=1):
    """Records at consecutive positions from (db, op, gname, subs, value) tuples."""
    chunks, off = [], 20
    for i, (db, op, g, subs, v) in enumerate(specs):
        b = encode_record((file_seq, off), 1000.0 + i, i, db, op, g, subs, v)
        chunks.append(b)
        off += len(b)
    return decode_records(b"".join(chunks))


def order_sensitive_load(n, seed=1):
    """Interleaved updates where applying any global's updates out of order changes the
    result: counters overwritten in sequence, whole-global kills, re-sets after kills."""
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        db = rng.choice(DBS)
        g = rng.choice(["cnt", "log", "idx"])
        r = rng.random()
        if r < 0.05:
            specs.append((db, "KILL", g, (), None))
        elif r < 0.15:
            specs.append((db, "KILL", g, (rng.randrange(4),), None))
        else:
            specs.append((db, "SET", g, (rng.randrange(4), rng.choice(["a", 1])), i))
    return specs


def model_of(specs):
    state = {}
    for db, op, g, subs, v in specs:
        if op == "SET":
            state[(db, g, subs)] = v
        else:
            state = {
                k: x
                for k, x in state.items()
                if not (k[:2] == (db, g) and k[2][: len(subs)] == subs)
            }
    return state


def contents(stores):
    return {(db, g, subs): v for db, s in stores.items() for g, subs, v in s.dump()}


def test_parallel_dejournaling_keeps_each_globals_updates_in_order(make_dj, stores):
    specs = order_sensitive_load(4000)
    recs = journal_of(specs)
    dj = make_dj(parallel=True, workers=4)
    for b in range(0, len(recs), 333):
        dj.apply(recs[b : b + 333])
    expect = model_of(specs)
    assert contents(stores) == expect
    # and a reordered application really would differ: the test can fail
    assert model_of(list(reversed(specs))) != expect
    for db in DBS:
        last = max(r.position for r in recs if r.database == db)
        assert stores[db].applied_position == last
        assert dj.last_applied[db][0] == last


def test_parallel_and_serial_dejournaling_converge_to_the_same_digests(tmp_path, make_dj, stores):
    recs = journal_of(order_sensitive_load(2000, seed=5))
    make_dj(parallel=True, workers=16).apply(recs)
    serial = {db: Store.open(str(tmp_path / ("serial" + db))) for db in DBS}
    try:
        dj = Dejournaler(serial, parallel=False)
        dj.apply(recs)
        dj.close()
        assert {db: s.digest() for db, s in stores.items()} == {
            db: s.digest() for db, s in serial.items()
        }
    finally:
        for s in serial.values():
            s.close()


def test_applying_the_same_records_twice_changes_nothing(make_dj, stores):
    recs = journal_of(order_sensitive_load(500))
    dj = make_dj(parallel=True)
    first = dj.apply(recs)
    digests = {db: s.digest() for db, s in stores.items()}
    assert first == len(recs)
    assert dj.apply(recs) == 0
    assert {db: s.digest() for db, s in stores.items()} == digests


def test_a_paused_database_is_held_back_and_catches_up_in_order_on_resume(make_dj, stores):
    specs = order_sensitive_load(1200)
    recs = journal_of(specs)
    dj = make_dj(parallel=True)
    dj.pause_database("DB2")
    dj.apply(recs[:600])
    assert stores["DB2"].count() == 0
    assert stores["DB1"].count() > 0
    assert dj.held_records("DB2") == sum(1 for r in recs[:600] if r.database == "DB2")
    dj.apply(recs[600:])
    dj.resume_database("DB2")
    assert dj.wait_idle(timeout=30)
    assert dj.held_records() == 0
    assert contents(stores) == model_of(specs)


def test_stopped_dejournaling_applies_nothing_until_started(make_dj, stores):
    specs = order_sensitive_load(300)
    recs = journal_of(specs)
    dj = make_dj()
    dj.stop()
    assert dj.apply(recs) == 0
    assert all(s.count() == 0 for s in stores.values())
    assert dj.held_records() == len(recs)
    dj.start(wait=True)
    assert contents(stores) == model_of(specs)
    dj.stop()
    dj.start()  # nothing held: nothing to do
    assert dj.wait_idle(timeout=30)


def test_a_filter_named_module_function_skips_records_but_advances_the_position(
    tmp_path, monkeypatch, make_dj, stores
):
    (tmp_path / "zfilters.py").write_text(
        textwrap.dedent(
            """
            def skip_scratch(record):
                return not record.gname.startswith("scratch")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recs = journal_of(
        [
            ("DB1", "SET", "acct", (1,), "kept"),
            ("DB1", "SET", "scratch", (1,), "skipped"),
            ("DB1", "SET", "scratchpad", (2,), "skipped"),
        ]
    )
    dj = make_dj(record_filter="zfilters:skip_scratch")
    assert dj.apply(recs) == 1
    assert stores["DB1"].dump() == [("acct", (1,), "kept")]
    assert stores["DB1"].applied_position == recs[-1].position
    assert dj.filtered == 2


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("no_colon", "module:function"),
        ("a:b:c", "module:function"),
        ("no_such_module_xyz:f", "cannot load"),
        ("os.path:no_such_function", "cannot load"),
        ("os:sep", "not callable"),
    ],
)
def test_bad_filter_names_are_refused_with_a_reason(spec, reason):
    with pytest.raises(ValueError, match=reason):
        load_filter(spec)


def test_records_for_a_database_not_here_are_counted_not_fatal(make_dj, stores):
    recs = journal_of([("NOPE", "SET", "g", (1,), 1), ("DB1", "SET", "g", (1,), 2)])
    dj = make_dj()
    assert dj.apply(recs) == 1
    assert dj.unknown == 1
    assert stores["DB1"].get("g", (1,)) == 2


def test_last_applied_reports_position_and_timestamp_per_database(make_dj):
    recs = journal_of([("DB3", "SET", "g", (1,), 1), ("DB4", "SET", "g", (1,), 2)])
    dj = make_dj()
    dj.apply(recs)
    assert dj.last_applied["DB3"] == (recs[0].position, recs[0].timestamp)
    assert dj.last_applied["DB4"] == (recs[1].position, recs[1].timestamp)
    assert isinstance(dj.last_applied["DB4"][0], JournalPosition)


def test_worker_counts_outside_1_to_16_are_refused(stores):
    with pytest.raises(ValueError, match="1-16"):
        Dejournaler(stores, workers=17)


def test_a_failing_filter_stops_the_batch_and_loses_no_held_record(make_dj, stores):
    specs = order_sensitive_load(400)
    recs = journal_of(specs)

    def broken(record):
        raise RuntimeError("filter bug")

    dj = make_dj()
    dj.pause_database("DB1")
    dj.apply(recs)
    held = dj.held_records("DB1")
    assert held > 0
    dj.record_filter = broken
    with pytest.raises(RuntimeError, match="filter bug"):
        dj.resume_database("DB1", wait=True)
    assert dj.held_records("DB1") == held
    dj.record_filter = None
    dj.drain()
    assert dj.held_records() == 0
    assert contents(stores) == model_of(specs)


def test_a_backup_fed_the_primarys_journal_bytes_converges_to_the_same_digests(tmp_path):
    """Storage pieces end to end: primary journal -> (zstd) -> backup journal -> dejournal."""
    import asyncio

    from engine.replication.compression import compress, decompress
    from engine.storage.journal import Entry, Journal

    def open_stores(name):
        return {db: Store.open(str(tmp_path / name / db)) for db in DBS}

    primary_stores, backup_stores = open_stores("p"), open_stores("b")
    primary = Journal(str(tmp_path / "p" / "journal"), "MIR", max_file_bytes=64 * 1024)
    backup = Journal(str(tmp_path / "b" / "journal"), "MIR")
    dj = Dejournaler(backup_stores, parallel=True, workers=4)
    shipped = []
    primary.on_append = lambda data, pos: shipped.append((pos, compress("zstd", data)))
    specs = order_sensitive_load(3000, seed=9)

    async def main():
        async def client(part):
            for k in range(part, len(specs), 8):
                db, op, g, subs, v = specs[k]
                recs = await primary.commit([Entry(k, db, op, g, subs, v)])
                primary_stores[db].apply(recs)

        await asyncio.gather(*[client(p) for p in range(8)])
        for pos, packed in shipped:
            recs = await backup.receive(pos.file_seq, pos.offset, decompress("zstd", packed))
            dj.apply(recs)

    try:
        asyncio.run(main())
        assert len(primary.files()) > 1
        assert backup.end_position == primary.end_position
        for db in DBS:
            assert backup_stores[db].digest() == primary_stores[db].digest()
            assert backup_stores[db].applied_position == primary_stores[db].applied_position
        assert sum(s.count() for s in backup_stores.values()) > 0
    finally:
        dj.close()
        primary.close()
        backup.close()
        for s in [*primary_stores.values(), *backup_stores.values()]:
            s.close()


def test_a_database_added_at_run_time_is_dejournaled_and_a_removed_one_is_not(tmp_path):
    first = Store.open(str(tmp_path / "first"))
    later = Store.open(str(tmp_path / "later"))
    recs = journal_of(
        [
            ("LATER", "SET", "g", (1,), "x"),
            ("FIRST", "SET", "g", (1,), "y"),
            ("LATER", "SET", "g", (2,), "held"),
            ("LATER", "SET", "g", (3,), "ignored"),
        ]
    )
    dj = Dejournaler({"FIRST": first})
    try:
        dj.add_database("LATER", later)
        dj.apply(recs[:2])
        assert later.get("g", (1,)) == "x" and first.get("g", (1,)) == "y"

        dj.pause_database("LATER")
        dj.apply(recs[2:3])
        assert dj.held_records("LATER") == 1
        dj.remove_database("LATER")
        assert dj.held_records("LATER") == 0 and "LATER" not in dj.stores
        dj.apply(recs[3:])
        assert later.get("g", (2,)) is None and later.get("g", (3,)) is None
    finally:
        dj.close()
        first.close()
        later.close()
