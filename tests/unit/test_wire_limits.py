"""The listener limits (engine/wire/limits.py) on a fake clock: ranges, caps, timers, the
rate-limited log."""

import logging

import pytest

from engine.wire.limits import (
    SETTINGS,
    ConnectionLimits,
    LimitError,
    LimitSettings,
    RateLimitedLog,
    TokenBucket,
    check_limit,
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Conn:
    def __init__(self):
        self.busy = False
        self.closed_with = None

    def in_flight(self) -> bool:
        return self.busy

    def limit_close(self, reason: str) -> None:
        self.closed_with = reason


def make(clock, **settings) -> ConnectionLimits:
    return ConnectionLimits(LimitSettings.from_mapping(settings), clock=clock)


def test_every_limit_has_a_default_inside_its_range():
    for key, limit in SETTINGS.items():
        assert limit.low <= limit.default <= limit.high, key
        assert check_limit(key, limit.default) == limit.default
    assert LimitSettings() == LimitSettings.from_mapping({})
    assert LimitSettings().changed() == {}


@pytest.mark.parametrize(
    "key, value",
    [
        ("max_connections", 0),
        ("max_connections", 10**9),
        ("max_connections", 1.5),
        ("max_connections", True),
        ("idle_timeout_s", 0),
        ("idle_timeout_s", 10**30),
        ("idle_timeout_s", "soon"),
        ("frame_timeout_s", -1),
        ("max_buffered_per_connection", 64 * 1024 * 1024),
        ("max_buffered_total", "12 parsecs"),
        ("no_such_limit", 1),
    ],
)
def test_values_out_of_range_are_refused_naming_the_limit(key, value):
    with pytest.raises(LimitError, match=key):
        LimitSettings.from_mapping({key: value}, "")


def test_text_values_take_units_and_total_must_hold_one_connection():
    s = LimitSettings.from_mapping(
        {"max_buffered_total": "8MiB", "max_buffered_per_connection": "64k", "idle_timeout_s": "2s"}
    )
    assert s.max_buffered_total == 8 << 20 and s.max_buffered_per_connection == 64 << 10
    assert s.idle_timeout_s == 2.0
    assert s.changed() == {
        "max_buffered_total": 8 << 20,
        "max_buffered_per_connection": 64 << 10,
        "idle_timeout_s": 2.0,
    }
    with pytest.raises(LimitError, match="at least"):
        LimitSettings.from_mapping(
            {"max_buffered_total": 4096, "max_buffered_per_connection": 8192}
        )


def test_token_bucket_spends_its_burst_then_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert bucket.take() and not bucket.take()
    clock.now += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_rate_limited_log_counts_what_it_leaves_out_and_tells_it_later(caplog):
    clock = Clock()
    out = RateLimitedLog(logging.getLogger("t.limits"), rate=1.0, burst=2, clock=clock)
    with caplog.at_level(logging.INFO, "t.limits"):
        logged = [out.emit("idle", logging.INFO, f"line {i}", "idle closes") for i in range(5)]
        assert logged == [True, True, False, False, False]
        clock.now += 1.0
        out.emit("idle", logging.INFO, "line 5", "idle closes")
        out.emit("idle", logging.INFO, "line 6", "idle closes")  # left out again
        out.flush()  # no token yet
        clock.now += 1.0
        out.flush()
        out.flush(force=True)  # nothing left
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "line 0",
        "line 1",
        "line 5 (+3 more not logged)",
        "idle closes (+1 more not logged)",
    ]


def test_max_connections_refuses_the_next_one_and_a_release_makes_room():
    clock = Clock()
    limits = make(clock, max_connections=2)
    a, b, c = Conn(), Conn(), Conn()
    assert limits.admit(a, "p:1") is None and limits.admit(b, "p:2") is None
    refusal = limits.admit(c, "p:3")
    assert "too many connections" in refusal and "max_connections=2" in refusal
    limits.release(a)
    assert limits.admit(c, "p:3") is None
    assert limits.counts["max_connections"] == 1
    assert limits.stats()["connections"] == 2 and limits.stats()["refused"] == 1


def test_per_connection_cap_bites_on_the_declared_size_and_on_bytes_held():
    clock = Clock()
    limits = make(clock, max_buffered_per_connection=1024, max_buffered_total=5000)
    a, b = Conn(), Conn()
    limits.admit(a, "a")
    limits.admit(b, "b")
    assert limits.received(a, 12, 500, 0) is None  # header of a 500-byte frame
    reason = limits.received(b, 12, 2000, 0)  # header of a frame too large: before its body
    assert "2000 bytes" in reason and "max_buffered_per_connection=1024" in reason
    assert b not in limits.conns and limits.buffered_total == 12
    assert "1025 bytes" in limits.received(a, 1025, None, 0)
    assert limits.buffered_total == 0


def test_total_cap_holds_across_connections_and_finished_frames_free_it():
    clock = Clock()
    limits = make(clock, max_buffered_per_connection=1024, max_buffered_total=2048)
    conns = [Conn() for _ in range(4)]
    for c in conns:
        limits.admit(c, "p")
    assert limits.received(conns[0], 1000, 1024, 0) is None
    assert limits.received(conns[1], 600, 1024, 0) is None
    # conns[2] holds the most when its bytes cross the cap: it is the one closed
    assert limits.received(conns[2], 400, 1024, 0) is None
    clock.now += 1
    reason = limits.received(conns[2], 1010, 1024, 0)
    assert "1010 bytes" in reason and "max_buffered_total=2048" in reason
    assert conns[2].closed_with is None  # the caller closes it, with the reason returned
    assert limits.buffered_total == 1600
    assert limits.received(conns[0], 0, None, 1) is None  # its frame finished
    assert limits.received(conns[3], 1000, 1024, 0) is None
    assert limits.buffered_total == 1600 and limits.counts["max_buffered_total"] == 1
    assert not any(c.closed_with for c in conns)


def test_total_cap_evicts_the_largest_holder_not_the_connection_that_crossed_it(caplog):
    clock = Clock()
    limits = make(clock, max_buffered_per_connection=1024, max_buffered_total=2048)
    big1, big2, small, good = Conn(), Conn(), Conn(), Conn()
    for name, c in (("big1", big1), ("big2", big2), ("small", small), ("good", good)):
        limits.admit(c, name)
    limits.received(big1, 900, 1024, 0)
    clock.now += 1
    limits.received(big2, 900, 1024, 0)  # as large, but its frame began later
    limits.received(small, 200, 1024, 0)
    with caplog.at_level(logging.WARNING, "engine.wire.limits"):
        # good's 100 bytes take the total to 2100: the oldest of the largest goes instead
        assert limits.received(good, 100, 300, 0) is None
    assert "evicted: 900 bytes" in big1.closed_with and "crossed by good" in big1.closed_with
    assert "max_buffered_total=2048" in big1.closed_with
    assert big2.closed_with is None and small.closed_with is None
    assert big1 not in limits.conns and limits.buffered_total == 1200
    assert limits.counts["max_buffered_total"] == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("superserver listener: closed big1: evicted: 900 bytes")
    assert limits.received(good, 0, None, 1) is None  # its frame completes
    assert good in limits.conns and limits.buffered_total == 1100


def test_a_small_frame_completes_while_big_half_sent_ones_hold_the_cap():
    clock = Clock()
    limits = make(clock, max_buffered_per_connection=1024, max_buffered_total=4096)
    hostile = [Conn() for _ in range(10)]
    good = Conn()
    limits.admit(good, "good")
    for i, c in enumerate(hostile):
        limits.admit(c, f"hostile{i}")

    def fill() -> None:
        """Every hostile connection not open comes back with 1020 bytes of a 1024-byte
        frame; those that do not fit are closed as they cross (none holds more)."""
        for c in hostile:
            if c not in limits.conns:
                c.closed_with = None
                limits.admit(c, "again")
            elif limits.conns[c].buffered:
                continue
            clock.now += 0.01
            reason = limits.received(c, 1020, 1024, 0)
            if reason is not None:
                assert "the most of any connection" in reason
                limits.release(c)

    fill()
    assert limits.buffered_total == 4 * 1020  # 16 bytes left
    evicted = 0
    for _ in range(20):  # a good client's frames, each arriving in two reads
        assert limits.received(good, 60, 150, 0) is None  # crosses the cap
        gone = [c for c in hostile if c.closed_with]
        assert len(gone) == 1 and "evicted: 1020 bytes" in gone[0].closed_with
        evicted += 1
        assert limits.received(good, 0, None, 1) is None  # and completes
        assert good in limits.conns and good.closed_with is None
        fill()  # the hostile ones fill the cap again
        assert limits.buffered_total == 4 * 1020
    assert limits.counts["max_buffered_total"] == evicted + 6 * 21  # + those that crossed


def test_timers_handshake_idle_and_slow_frame():
    clock = Clock()
    limits = make(clock, handshake_timeout_s=1, idle_timeout_s=5, frame_timeout_s=2)
    silent, idle, slow, busy, link = (Conn() for _ in range(5))
    for c in (silent, idle, slow, busy, link):
        limits.admit(c, "p")
    for c in (idle, slow, busy, link):
        limits.received(c, 0, None, 1)  # a first whole request each
    limits.exempt(link)
    limits.received(slow, 30, 100, 0)  # a frame begins and never ends
    busy.busy = True  # waits for its reply
    clock.now += 1.5
    assert [(c is silent, "handshake_timeout_s" in r) for c, r in limits.expired()] == [
        (True, True)
    ]
    clock.now += 1.0
    ((conn, reason),) = limits.expired()
    assert conn is slow and "frame_timeout_s=2" in reason
    clock.now += 3.0
    ((conn, reason),) = limits.expired()
    assert conn is idle and "idle for 5.5 s" in reason
    assert limits.expired() == []  # busy waits for us; the data channel has no timers
    assert set(limits.conns) == {busy, link}
    busy.busy = False
    clock.now += 5.1
    assert [c for c, _ in limits.expired()] == [busy]


def test_fit_descriptors_keeps_max_connections_within_the_descriptor_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = ConnectionLimits(LimitSettings(max_connections=100_000))
    try:
        fitted = limits.fit_descriptors(reserve=256)
        now_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert fitted <= max(1, now_soft - 256) or now_soft == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
