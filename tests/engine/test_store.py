from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.storage.journal_codec import JournalPosition
from engine.storage.store import Store, StoreError
from tests.engine.conftest import make_records


def test_values_of_every_type_round_trip_and_survive_reopen(tmp_path):
    path = str(tmp_path / "db")
    s = Store.open(path)
    items = {(1,): "text", (2,): b"\x00\xffbin", (3,): -(2**70), (4,): 2.5, ("s", 0): ""}
    for subs, v in items.items():
        s.set("acct", subs, v)
    s.set("acct", (), 42)
    s.close()
    s = Store.open(path)
    try:
        for subs, v in items.items():
            got = s.get("acct", subs)
            assert got == v and type(got) is type(v)
        assert s.get("acct", ()) == 42
        assert s.get("acct", (99,)) is None
        assert s.get("other", ()) is None
    finally:
        s.close()


def test_kill_removes_a_node_and_its_whole_subtree_only(store):
    for subs in [(1,), (1, "a"), (1, "a", 2), (1, "b"), (2,), (10,)]:
        store.set("g", subs, "v")
    store.set("h", (1,), "other global")
    assert store.kill("g", (1,)) == 4
    assert [s for s, _ in store.query("g")] == [(2,), (10,)]
    store.kill("g")
    assert list(store.query("g")) == []
    assert store.get("h", (1,)) == "other global"


def test_order_walks_siblings_in_collation_order_both_ways(store):
    for sub in ["b", 10, "a", 2, -1.5, 2.5]:
        store.set("g", (7, sub), 1)
        store.set("g", (7, sub, "child"), 1)
    store.set("g", (7,), "parent value")
    store.set("g", (8, 1), 1)
    walk, sub = [], None
    while (sub := store.order("g", (7, sub))) is not None:
        walk.append(sub)
    assert walk == [-1.5, 2, 2.5, 10, "a", "b"]
    back, sub = [], None
    while (sub := store.order("g", (7, sub), -1)) is not None:
        back.append(sub)
    assert back == walk[::-1]
    assert store.order("g", (7, 3)) == 10  # from a subscript that does not exist
    assert store.order("g", (None,)) == 7
    assert store.order("g", (7,)) == 8
    assert store.order("g", (8,)) is None
    assert store.order("g", (7,), -1) is None


def test_query_scans_a_range_under_a_prefix(store):
    for i in range(10):
        store.set("g", (1, i), i)
        store.set("g", (1, i, "x"), f"x{i}")
    store.set("g", (2, 0), "outside")
    rows = list(store.query("g", (1,), start=3, stop=5))
    assert rows == [((1, 3), 3), ((1, 3, "x"), "x3"), ((1, 4), 4), ((1, 4, "x"), "x4")]
    rev = list(store.query("g", (1,), start=3, stop=5, reverse=True))
    assert rev == rows[::-1]
    assert list(store.query("g", (1,), limit=3)) == [((1, 0), 0), ((1, 0, "x"), "x0"), ((1, 1), 1)]
    assert len(list(store.query("g", (1,)))) == 20
    assert list(store.query("g", (1,), start=(1, 9, "x"), reverse=True, limit=1)) == [
        ((1, 9, "x"), "x9")
    ]


def test_a_transaction_commits_on_exit_and_rolls_back_on_error(store):
    with store.transaction():
        store.set("g", (1,), "a")
        assert store.get("g", (1,)) == "a"  # sees its own writes
    with pytest.raises(RuntimeError), store.transaction():
        store.set("g", (2,), "b")
        store.kill("g", (1,))
        raise RuntimeError("boom")
    assert store.get("g", (1,)) == "a"
    assert store.get("g", (2,)) is None
    store.begin()
    store.set("g", (3,), "c")
    store.rollback()
    assert store.get("g", (3,)) is None
    with pytest.raises(StoreError):
        store.commit()


def test_applying_the_same_journal_twice_changes_nothing(tmp_path):
    recs = make_records(
        [
            ("SET", "acct", (1,), "one"),
            ("SET", "acct", (2,), "two"),
            ("KILL", "acct", (1,), None),
            ("SET", "acct", (1, "x"), 5),
        ]
    )
    path = str(tmp_path / "db")
    s = Store.open(path)
    assert s.apply(recs) == 4
    assert s.applied_position == recs[-1].position
    d = s.digest()
    s.set("acct", (2,), "changed locally")  # a replay must not reset this
    s.close()
    s = Store.open(path)
    try:
        assert s.applied_position == recs[-1].position
        assert s.apply(recs) == 0
        assert s.get("acct", (2,)) == "changed locally"
        s.set("acct", (2,), "two")
        assert s.digest() == d
        assert s.dump() == [("acct", (1, "x"), 5), ("acct", (2,), "two")]
    finally:
        s.close()


def test_apply_can_advance_past_records_it_was_not_given(store):
    recs = make_records([("SET", "g", (1,), "a"), ("SET", "g", (2,), "b")])
    later = JournalPosition(5, 100)
    assert store.apply(recs[:1], upto=later) == 1
    assert store.applied_position == later
    assert store.apply(recs) == 0


def test_digest_depends_on_content_not_on_history(tmp_path):
    a = Store.open(str(tmp_path / "a"))
    b = Store.open(str(tmp_path / "b"))
    try:
        for i in range(50):
            a.set("g", (i,), i)
        for i in reversed(range(60)):
            b.set("g", (i,), i)
        b.kill("g", (55,))
        assert a.digest() != b.digest()
        for i in range(50, 60):
            b.kill("g", (i,))
        assert a.digest() == b.digest()
    finally:
        a.close()
        b.close()


def test_oversized_keys_and_bad_values_are_refused_and_nothing_is_written(store):
    with pytest.raises(ValueError, match="limit is 511"):
        store.set("g", ("x" * 600,), 1)
    with pytest.raises(ValueError, match="cannot be stored"):
        store.set("g", (1,), None)
    assert store.count() == 0


def test_globals_lists_every_global_with_data(store):
    for g in ["b", "a", "c"]:
        store.set(g, (1,), 1)
        store.set(g, (2,), 1)
    assert store.globals() == ["a", "b", "c"]


subs_st = st.tuples(st.integers(-3, 3)).map(tuple) | st.tuples(
    st.sampled_from([1, 2.5, "a", "b"]), st.sampled_from([0, "z"])
)
ops_st = st.lists(st.tuples(st.sampled_from(["set", "kill"]), subs_st, st.integers()), max_size=40)


def _sort_key(subs):
    return [(1, Fraction(0), s) if isinstance(s, str) else (0, Fraction(s), "") for s in subs]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops_st)
def test_store_matches_a_dictionary_model_under_random_sets_and_kills(store, ops):
    store.kill("m")
    model = {}
    for op, subs, v in ops:
        if op == "set":
            store.set("m", subs, v)
            model[subs] = v
        else:
            store.kill("m", subs)
            model = {k: x for k, x in model.items() if k[: len(subs)] != subs}
    expect = sorted(model.items(), key=lambda kv: _sort_key(kv[0]))
    assert list(store.query("m")) == expect
    tops = sorted({k[0] for k in model}, key=lambda s: _sort_key((s,)))
    walk, sub = [], None
    while (sub := store.order("m", (sub,))) is not None:
        walk.append(sub)
    assert walk == tops


def test_a_full_store_refuses_writes_with_a_clear_error_and_keeps_its_data(tmp_path):
    s = Store.open(str(tmp_path / "small"), map_size=1 << 20)
    try:
        written = 0
        with pytest.raises(StoreError, match="is full"):
            for i in range(100_000):
                s.set("g", (i,), "x" * 100)
                written += 1
        assert s.count() == written
        assert s.get("g", (0,)) == "x" * 100
        assert 0 < s.size_bytes() <= 1 << 20
    finally:
        s.close()


def test_a_store_cannot_be_opened_twice_in_one_process(tmp_path):
    s = Store.open(tmp_path / "db")  # a Path works too
    try:
        with pytest.raises(StoreError, match="already open"):
            Store.open(str(tmp_path / "db"))
    finally:
        s.close()
    Store.open(str(tmp_path / "db")).close()  # closed: it can be opened again


def test_long_scans_page_through_every_row_once_in_both_directions(store):
    with store.transaction():
        for i in range(2500):
            store.set("big", (i,), i)
            if i % 7 == 0:
                store.set("big", (i, "x"), "child")
    rows = list(store.query("big"))
    assert len(rows) == 2500 + 358
    assert [s for s, _ in rows] == sorted((s for s, _ in rows), key=_sort_key)
    assert list(store.query("big", reverse=True)) == rows[::-1]
    assert list(store.query("big", limit=1001)) == rows[:1001]
    assert list(store.query("big", reverse=True, limit=2000)) == rows[::-1][:2000]
    assert list(store.query("big", limit=0)) == []
