"""Property-based fuzzing of the engine's three wire protocols (issue 12), on real processes.

One plain mirror (no TLS) per module: A the primary, B its backup (both running, B Active),
and C, a DR async named in the configuration but never started, so a hostile client can say
hello as a member the primary knows.  Hypothesis then sends:

1. the superserver (A's application port): arbitrary bytes, well-formed frames of every
   message type with arbitrary MessagePack bodies, truncated frames, lying length fields and
   interleavings of them on one connection;
2. the data channel (A's mirror private address): hellos with arbitrary fields (mirror,
   member, codecs, positions, join blobs), then acks with arbitrary positions, heartbeats,
   leaves and random frames;
3. the snapshot port (`export_snapshot`'s one-time port): arbitrary bytes in place of the
   token, a token with junk behind it, the right token and a reader that hangs up.

After every example: A's process is alive, every byte it answered decodes as whole frames of
the types that listener may send (never an `internal` error, every error a map with a code
and a message), and a good client still gets PING and a SET/GET round trip.  At the end:
refusals are in A's log, the intruder never showed as Active, and B is Active again.  A
separate test stalls B (SIGSTOP) while an intruder acknowledges everything it is sent: a
write still waits for B until A revokes B's Active status.

The mirror has a mirror secret (engine/wire/mirror_secret.py): a hello from whoever does not
know it gets DC_CHALLENGE and no further, whatever name it claims.  So that the fuzzing
reaches what comes after the handshake too, about half the plausible hellos are sent by an
insider that answers the challenge with the secret before its acks and frames.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.client.app import Client
from engine.replication.sender import CATCHUP_STALL_S
from engine.replication.snapshot_source import TRAILER, TRAILER_MAGIC
from engine.wire import mirror_secret
from engine.wire.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    BadFrame,
    FrameDecoder,
    FrameError,
    MsgType,
    encode_frame,
    encode_raw_frame,
    pack,
    unpack,
)
from tests.engine.cluster_fixtures import Cluster, wait_for, write_config
from tests.engine.hello import Hello

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
GOOD = "ZZWireFuzzGood"  # the good client's global: never in the fuzz vocabulary
# Two bugs this fuzzing found answered `internal` with a traceback (an ADMIN action that is a
# list or a map; an ADMIN token with a non-ASCII character); both are fixed, so no internal error
# and no traceback is tolerated any more (the regression tests below pin them).
REPLIES = {MsgType.OK, MsgType.ERROR}
# what a primary may send on a connection that became a data channel
DC_REPLIES = REPLIES | {MsgType.DC_WELCOME, MsgType.DC_JOURNAL, MsgType.DC_HEARTBEAT}
DC_REPLIES |= {MsgType.DC_CONFIG, MsgType.DC_CHALLENGE}


# -- the mirror ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wirefuzz")
    cluster = Cluster(write_config(directory, ("failover", "failover", "dr")))
    try:
        cluster.start("A", "B")  # C stays down: a known name for the intruder
        cluster.wait_backup_active()
        with good_client(cluster) as c:
            c.set("USER", GOOD, (0,), "ready")
        yield cluster
    finally:
        cluster.close()


def good_client(cluster) -> Client:
    return Client([cluster.address("A")], follow_primary=False, timeout=15, retries=0)


def addr(cluster, member: str, kind: str) -> tuple[str, int]:
    a = getattr(cluster.cfg.member(member), kind)
    return a.host, a.port


def members_view(cluster) -> dict:
    return {r["member"]: r for r in cluster.status("A").get("members", [])}


def assert_serving(cluster, n: int) -> None:
    """A alive, and a good client gets PING and its own write back."""
    assert cluster.procs["A"].poll() is None, "the primary died"
    with good_client(cluster) as c:
        assert c.ping() == "pong"
        c.set("USER", GOOD, (n % 7,), n)
        assert c.get("USER", GOOD, (n % 7,)) == n


class Log:
    """A's log from the moment this was made."""

    def __init__(self, cluster):
        self.path = Path(cluster.cfg.member("A").data_dir) / "instance.log"
        self.start = self.path.stat().st_size

    def text(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode(errors="replace")


# -- the client side of the wire -------------------------------------------------------


def _send_then_read_to_close(s: socket.socket, pieces: list[bytes], got: bytearray, timeout):
    """Send `pieces` one write each, close our side, and read into `got` until the server
    closes (an AssertionError if it keeps the connection `timeout` s after our close)."""
    try:
        for piece in pieces:
            s.sendall(piece)
        s.shutdown(socket.SHUT_WR)
    except OSError:  # the server closed first (bad magic, a frame too large)
        pass
    deadline = time.monotonic() + timeout
    while True:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            return
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection {timeout} s after our close"
            ) from None
        if not chunk:
            return
        got += chunk


def exchange(address, pieces: list[bytes], timeout: float = 10.0) -> tuple[bytes, int]:
    """Send `pieces` on a fresh connection, close our side, and read until the server
    closes.  Returns (bytes received, our port)."""
    s = socket.create_connection(address, timeout=timeout)
    port = s.getsockname()[1]
    got = bytearray()
    try:
        _send_then_read_to_close(s, pieces, got, timeout)
    finally:
        s.close()
    return bytes(got), port


def insider_exchange(address, body: dict, after: list[bytes], secret: str, timeout=10.0) -> bytes:
    """As exchange(), from a member that knows the mirror secret: it answers the primary's
    challenge with its proof, then sends `after`.  Returns every byte received."""
    s = socket.create_connection(address, timeout=timeout)
    got, dec = bytearray(), FrameDecoder(max_frame=1 << 30)
    try:
        body = {**body, "nonce": mirror_secret.new_nonce()}
        s.sendall(encode_frame(MsgType.DC_HELLO, 1, body))
        first: list = []
        while not first and (chunk := s.recv(1 << 16)):
            got += chunk
            first = dec.feed(chunk)
        if first and first[0].type == MsgType.DC_CHALLENGE:
            theirs = unpack(first[0].body)["nonce"]
            proof = mirror_secret.member_proof(
                secret, body["mirror"], body["member"], body["nonce"], theirs
            )
            s.sendall(encode_frame(MsgType.DC_HELLO, 2, {**body, "proof": proof}))
        _send_then_read_to_close(s, after, got, timeout)
    finally:
        s.close()
    return bytes(got)


def check_replies(data: bytes, allowed: set) -> list:
    """Every byte answered is whole frames of the allowed types; errors are well-formed
    and never `internal`.  Returns the decoded error maps."""
    dec = FrameDecoder(max_frame=1 << 30)
    try:
        frames = dec.feed(data)
    except FrameError as exc:
        raise AssertionError(f"garbage in the answer: {exc.reason}: {data[:80]!r}") from None
    assert dec.pending == 0, f"an answer cut in the middle of a frame: {dec.pending} bytes"
    errors = []
    for f in frames:
        assert not isinstance(f, BadFrame), f
        assert f.type in allowed, f"answered a {MsgType(f.type).name} frame"
        body = unpack(f.body)  # raises on a body that is not MessagePack
        if f.type == MsgType.ERROR:
            assert isinstance(body, dict), body
            assert isinstance(body.get("code"), str) and isinstance(body.get("message"), str)
            assert body["code"] != "internal", body
            errors.append(body)
    return errors


# -- strategies ------------------------------------------------------------------------

WORDS = [
    *("TEST", "USER", "APP", "%MIRROR", "A", "C", "X", "", "^", "MirrorDB", "Global"),
    *("mirror_info", "copy_info", "export_snapshot", "auth", "auth_challenge", "status"),
    *("mirror", "member", "codecs", "position", "version", "join", "type", "superserver"),
    *("private", "join_id", "failover", "dr", "async", "zlib", "lz4", "zstd", "127.0.0.1:1"),
]
texts = st.sampled_from(WORDS) | st.text(max_size=24)
integers = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(
    [0, 1, -1, 2, 12, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, -(2**63)]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.binary(max_size=24),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
)
keys = texts | integers | st.binary(max_size=8) | st.none() | st.booleans()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=24,
)
# bodies that are not what pack() makes: invalid MessagePack, trailing bytes, deep nesting,
# lying container sizes, strings that are not UTF-8
raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda v, junk: pack(v) + junk, values, st.binary(min_size=1, max_size=8)),
    st.integers(1, 5000).map(lambda n: b"\x91" * n + b"\xc0"),
    st.integers(1, 5000).map(lambda n: b"\x81\xc0" * n + b"\xc0"),
    st.sampled_from(
        [b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc1"]
    ),
    st.sampled_from([b"\xa2\xed\xa0", b"\xa1\xff", b"\xd4\x00", b"\xd6\xff\x00\x00\x00\x00"]),
)
positions = st.one_of(
    st.none(),
    st.tuples(integers, integers).map(list),
    # near the journal's real positions: file 1, inside a record, at its end, beyond it
    st.tuples(st.integers(-1, 3), st.integers(-1, 1 << 16)).map(list),
    values,
)
types_any = st.sampled_from([int(t) for t in MsgType]) | st.integers(0, 255)
req_ids = st.integers(0, 2**32 - 1)


@st.composite
def frames(draw, type_strategy=types_any, body_values=values) -> bytes:
    """One frame: well formed, or with a bad version, a bad magic, a lying length..."""
    mtype = draw(type_strategy)
    req_id = draw(req_ids)
    body = draw(st.one_of(body_values.map(pack), body_values.map(pack), raw_bodies))
    kind = draw(st.sampled_from(["good"] * 6 + ["version", "magic", "short", "long", "truncated"]))
    if kind == "version":
        version = draw(st.integers(0, 255).filter(lambda v: v != PROTOCOL_VERSION))
        return encode_raw_frame(mtype, req_id, body, version=version)
    if kind == "magic":
        return draw(st.binary(min_size=2, max_size=2)) + encode_raw_frame(mtype, req_id, body)[2:]
    if kind in ("short", "long"):  # the length field lies
        length = draw(
            st.integers(0, max(0, len(body) - 1))
            if kind == "short"
            else st.integers(len(body) + 1, 2**32 - 1)
        )
        return HEADER.pack(MAGIC, PROTOCOL_VERSION, mtype, req_id, length) + body
    if kind == "truncated":
        whole = encode_raw_frame(mtype, req_id, body)
        return whole[: draw(st.integers(0, len(whole) - 1))]
    return encode_raw_frame(mtype, req_id, body)


chunks = frames() | st.binary(max_size=64)


@st.composite
def split(draw, data: bytes) -> list[bytes]:
    """The bytes cut into writes at random places (the server must reassemble them)."""
    if not data or draw(st.booleans()):
        return [data]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    out, prev = [], 0
    for c in [*cuts, len(data)]:
        out.append(data[prev:c])
        prev = c
    return [p for p in out if p]


def logged_refusals(text: str, listener: str) -> int:
    """Refusals a listener's log lines tell of: one a line, plus the counts of lines left out
    (a summary line of its own, naming no peer, is only its count)."""
    n = 0
    for line in text.splitlines():
        if f"{listener} listener" not in line:
            continue
        more = re.search(r"\(\+(\d+) more not logged\)", line)
        n += int(more.group(1)) if more else 0
        n += 0 if more and "127.0.0.1:" not in line else 1
    return n


# -- 1. the superserver ----------------------------------------------------------------


def test_the_superserver_survives_arbitrary_bytes_and_frames(mirror):
    log = Log(mirror)
    superserver = addr(mirror, "A", "superserver")
    seen = {"examples": 0, "protocol": 0, "errors": 0}

    @FUZZ
    @given(data=st.data(), sequence=st.lists(chunks, min_size=1, max_size=6))
    def run(data, sequence):
        stream = b"".join(sequence)
        allowed = set(REPLIES)
        if any(len(c) > 3 and c[3] == MsgType.DC_HELLO for c in sequence):
            allowed = DC_REPLIES  # a hello that the primary took: this became a data channel
        answer, _ = exchange(superserver, data.draw(split(stream)))
        errors = check_replies(answer, allowed)
        seen["examples"] += 1
        seen["errors"] += len(errors)
        seen["protocol"] += sum(e["code"] == "protocol" for e in errors)
        assert_serving(mirror, seen["examples"])

    run()
    assert seen["examples"] >= 100 and seen["protocol"], seen
    # every protocol refusal is in the log (rate-limited lines count the ones left out)
    wait_for(
        lambda: logged_refusals(log.text(), "superserver") >= seen["protocol"],
        15,
        f"{seen['protocol']} refusals in A's log",
    )
    assert members_view(mirror)["B"]["journal_transfer"] == "Active"


def test_the_superserver_survives_every_request_type_with_arbitrary_arguments(mirror):
    """Well-formed frames only, one request type each, pipelined on one connection: what
    the handlers make of arbitrary arguments (nothing is an internal error)."""
    superserver = addr(mirror, "A", "superserver")
    requests = st.sampled_from(sorted(int(t) for t in MsgType if t < MsgType.DC_HELLO))
    n = [0]

    @FUZZ
    @given(
        batch=st.lists(
            st.tuples(requests, req_ids, st.lists(values, max_size=4) | values),
            min_size=1,
            max_size=5,
        )
    )
    def run(batch):
        stream = b"".join(encode_frame(t, r, args) for t, r, args in batch)
        stream += encode_frame(MsgType.PING, 7, [])
        s = socket.create_connection(superserver, timeout=15)
        try:
            s.sendall(stream)
            dec, got = FrameDecoder(max_frame=1 << 30), []
            while len(got) < len(batch) + 1:  # every request gets its reply, in order
                chunk = s.recv(1 << 16)
                assert chunk, f"closed after {len(got)} of {len(batch) + 1} replies"
                got += dec.feed(chunk)
        finally:
            s.close()
        data = b"".join(encode_raw_frame(f.type, f.req_id, f.body) for f in got)
        check_replies(data, REPLIES)
        assert [f.req_id for f in got] == [r for _, r, _ in batch] + [7]
        n[0] += 1
        assert_serving(mirror, n[0])

    run()


def admin_refusal(mirror, args: list) -> dict:
    s = socket.create_connection(addr(mirror, "A", "superserver"), timeout=5)
    try:
        s.sendall(encode_frame(MsgType.ADMIN, 3, args))
        dec, got = FrameDecoder(), []
        while not got:
            chunk = s.recv(1 << 16)
            assert chunk
            got += dec.feed(chunk)
    finally:
        s.close()
    assert got[0].type == MsgType.ERROR, args
    return unpack(got[0].body)


@pytest.mark.parametrize("args", [[[]], [{}], [["mirror_info"], "USER"], [{"a": 1}, None, "t"]])
def test_an_admin_action_that_is_not_a_string_is_a_bad_request(mirror, args):
    reply = admin_refusal(mirror, args)
    assert_serving(mirror, 0)
    assert reply["code"] in ("bad_request", "unauthorized"), reply


@pytest.mark.parametrize("token", ["\u00e9", "token-\u2603"])
def test_a_non_ascii_admin_token_is_unauthorized(mirror, token):
    reply = admin_refusal(mirror, ["digest", "USER", token])
    assert_serving(mirror, 0)
    assert reply["code"] == "unauthorized", reply


# -- 2. the data channel ---------------------------------------------------------------

member_names = (texts | st.sampled_from(["A", "C", "C", "C"]) | values).filter(
    lambda name: name != "B"  # the real backup's name: see the xfail test below
)
joins = (
    st.none()
    | values
    | st.fixed_dictionaries(
        {},
        optional={
            "type": texts,
            "superserver": texts | values,
            "private": texts | values,
            "join_id": texts | values,
        },
    )
)


@st.composite
def hellos(draw) -> bytes:
    if draw(st.booleans()):  # plausible: the mirror and a member it knows, the rest arbitrary
        body = {"mirror": "TEST", "member": "C", "codecs": draw(st.lists(texts, max_size=3))}
        body["position"] = draw(positions)
        body.update(draw(st.dictionaries(st.sampled_from(["type", "version", "join"]), values)))
        if draw(st.booleans()):
            body["join"] = draw(joins)
        return encode_frame(MsgType.DC_HELLO, draw(req_ids), body)
    body = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "mirror": st.sampled_from(["TEST"] * 4) | values,
                "member": member_names,
                "type": texts,
                "codecs": st.lists(texts, max_size=3) | values,
                "position": positions,
                "version": integers | values,
                "join": joins,
            },
        )
        | values
    )
    return encode_frame(MsgType.DC_HELLO, draw(req_ids), body)


acks = st.builds(
    lambda pos, rest: encode_frame(MsgType.DC_ACK, 0, [pos, *rest]),
    positions,
    st.lists(values, max_size=2),
) | st.builds(lambda body: encode_frame(MsgType.DC_ACK, 0, body), values)
dc_types = st.sampled_from([int(t) for t in MsgType if MsgType.DC_HELLO <= t < MsgType.OK])
dc_frames = st.one_of(
    acks,
    acks,
    st.builds(lambda b: encode_frame(MsgType.DC_HEARTBEAT, 0, b), values),
    st.just(encode_frame(MsgType.DC_LEAVE, 0, [])),
    frames(dc_types),
    frames(),
    st.binary(max_size=32),
)


def test_the_data_channel_survives_arbitrary_hellos_and_acks(mirror):
    log = Log(mirror)
    private = addr(mirror, "A", "private")
    refusals = [0]
    secret_refusals: set[str] = set()
    n = [0]

    @FUZZ
    @given(data=st.data(), hello=hellos(), after=st.lists(dc_frames, max_size=6))
    def run(data, hello, after):
        # the primary's journal end, now and then the intruder's position (a catch-up of
        # nothing, so it goes live at once and its acks can be possible ones)
        if data.draw(st.booleans()):
            end = mirror.status("A")["journal_end"]
            body = unpack(hello[HEADER_SIZE:])
            if isinstance(body, dict):
                body["position"] = end
                hello = encode_frame(MsgType.DC_HELLO, 1, body)
                after = [encode_frame(MsgType.DC_ACK, 0, [end]), *after]
        body = unpack(hello[HEADER_SIZE:])
        plausible = isinstance(body, dict) and (body.get("mirror"), body.get("member")) == (
            "TEST",
            "C",
        )
        if plausible and data.draw(st.booleans()):
            answer = insider_exchange(private, body, after, mirror.cfg.secret)
        else:
            answer, _ = exchange(private, data.draw(split(hello + b"".join(after))))
        errors = check_replies(answer, DC_REPLIES)
        for e in errors:
            if e["code"] != "protocol":
                continue
            if e["message"].startswith("data channel refused: member C did not"):
                # a refusal of a known member's hello is logged once per reason (a member
                # with a wrong secret asks twice a second): counted once below
                secret_refusals.add(e["message"])
            else:
                refusals[0] += 1
        view = members_view(mirror)
        assert view["C"]["journal_transfer"] != "Active", view["C"]
        n[0] += 1
        assert_serving(mirror, n[0])

    run()
    assert n[0] >= 100 and refusals[0], (n, refusals)

    def logged() -> int:  # the listener's lines (rate-limited) and the links' own
        text = log.text()
        return logged_refusals(text, "private") + text.count("data channel from ")

    wait_for(lambda: logged() >= refusals[0], 15, f"{refusals[0]} refusals in A's log")
    assert secret_refusals, "no stranger was refused at the challenge"
    for message in secret_refusals:
        assert message in log.text(), message
    mirror.wait_backup_active(timeout=20)


# -- regressions the data channel fuzzing found (fixed in engine/replication/sender.py) -----


def _hello_as_c(mirror, position) -> list:
    """The frames the primary sends C (an insider, with the secret) saying hello at
    `position`, until it closes the connection."""
    body = {"mirror": "TEST", "member": "C", "codecs": [], "position": position}
    with Hello(addr(mirror, "A", "private"), mirror.cfg.secret) as h:
        first = h.say(body)
        return [first, *h.later, *h.until_closed(CATCHUP_STALL_S + 10)]


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        ([-1, 0], "is negative"),
        ([1, -1], "is negative"),
        ([0, 0], "which the primary does not have"),
    ],
)
def test_a_hello_at_a_position_the_primary_cannot_serve_is_refused(mirror, position, reason):
    """Was: DC_WELCOME, then the catch-up task died with a traceback (JournalGap for file 0
    or -1, OSError EINVAL for a negative offset) and the link closed without a reason."""
    log = Log(mirror)
    got = _hello_as_c(mirror, position)
    assert [f.type for f in got] == [MsgType.ERROR], got
    error = unpack(got[0].body)
    assert error["code"] == "protocol" and reason in error["message"], error
    assert "Traceback" not in log.text()  # the refusal's line is rate-limited: not checked


def test_a_hello_inside_a_journal_record_is_given_up_with_a_reason(mirror):
    """Was: DC_WELCOME, then catch-up polled the journal every millisecond for as long as the
    peer held the connection (a fifth of a core), never live, never a line in the log."""
    log = Log(mirror)
    seq, offset = mirror.status("A")["journal_end"]
    started = time.monotonic()
    got = _hello_as_c(mirror, [seq, offset - 3])
    took = time.monotonic() - started
    assert [f.type for f in got] == [MsgType.DC_WELCOME, MsgType.ERROR], got
    assert "cannot catch up" in unpack(got[1].body)["message"]
    assert CATCHUP_STALL_S <= took < CATCHUP_STALL_S + 5, took
    assert "cannot catch up" in log.text() and "Traceback" not in log.text()
    assert members_view(mirror)["C"]["status"] != "Synchronizing"


def _intruder(mirror, name: str):
    """A data channel as `name` at the primary's journal end, from an insider who knows the
    mirror secret: (socket, decoder, journal end)."""
    end = mirror.status("A")["journal_end"]
    h = Hello(addr(mirror, "A", "private"), mirror.cfg.secret)
    welcome = h.say({"mirror": "TEST", "member": name, "codecs": [], "position": end})
    assert welcome is not None and welcome.type == MsgType.DC_WELCOME, welcome
    return h.sock, h.decoder, end


def test_a_stalled_backup_holds_writes_whatever_an_intruder_acknowledges(mirror):
    """B stopped (SIGSTOP), C's impostor acknowledges every chunk it is sent at once: a
    write is answered only once A gives up on B (revokes Active after QoS/2..QoS)."""
    mirror.wait_backup_active()
    qos = mirror.cfg.qos_timeout_ms / 1000
    s, dec, end = _intruder(mirror, "C")
    stop = threading.Event()

    def ack_everything():
        acked = end
        s.settimeout(0.05)
        while not stop.is_set():
            try:
                chunk = s.recv(1 << 16)
            except TimeoutError:
                chunk = None
            except OSError:
                return
            if chunk == b"":
                return
            for f in dec.feed(chunk or b""):
                if f.type == MsgType.DC_JOURNAL:
                    seq, off, raw_len = unpack(f.body)[:3]
                    acked = [seq, off + raw_len]
            try:  # everything it was sent (an impossible ack would close its link)
                s.sendall(encode_frame(MsgType.DC_ACK, 0, [acked]))
            except OSError:
                return

    pid = mirror.procs["B"].pid
    os.kill(pid, signal.SIGSTOP)
    acker = threading.Thread(target=ack_everything, daemon=True)
    try:
        acker.start()
        log = Log(mirror)
        with good_client(mirror) as c:
            started = time.monotonic()
            c.set("USER", GOOD, ("stalled",), 1)
            waited = time.monotonic() - started
        assert waited >= qos / 2 - 0.1, f"the write was answered after {waited:.2f} s"
        assert "backup B: Active status revoked" in log.text()
        assert members_view(mirror)["C"]["journal_transfer"] != "Active"
    finally:
        stop.set()
        os.kill(pid, signal.SIGCONT)
        acker.join(5)
        s.close()
    mirror.wait_backup_active(timeout=20)
    assert_serving(mirror, 0)


def test_an_intruder_in_the_real_backups_name_gets_no_further_than_the_challenge(mirror):
    """Was (before the mirror secret): a hello as B and one possible ack made the intruder
    the Active backup, so writes were acknowledged as held by a backup that held nothing."""
    mirror.wait_backup_active()
    private = addr(mirror, "A", "private")
    end = mirror.status("A")["journal_end"]
    as_b = {"mirror": "TEST", "member": "B", "codecs": [], "position": end}
    with Hello(private, None) as stranger:
        challenge = stranger.say(as_b)
        assert challenge is not None and challenge.type == MsgType.DC_CHALLENGE, challenge
        stranger.sock.sendall(encode_frame(MsgType.DC_ACK, 0, [end]))  # before any welcome
        assert all(f.type != MsgType.DC_WELCOME for f in stranger.until_closed(1.0))
    with Hello(private, mirror_secret.new_secret()) as guesser:
        refused = guesser.say(as_b)
        assert refused is not None and refused.type == MsgType.ERROR, refused
        assert "did not prove the mirror secret" in unpack(refused.body)["message"]
    # the real B kept its link and its Active flag all along
    assert members_view(mirror)["B"]["journal_transfer"] == "Active"
    with good_client(mirror) as c:
        c.set("USER", GOOD, ("after the intruder",), 1)
    assert_serving(mirror, 0)


# -- 3. the snapshot port --------------------------------------------------------------


def test_the_snapshot_port_survives_arbitrary_requests(mirror):
    log = Log(mirror)
    superserver = addr(mirror, "A", "superserver")
    n = [0]

    def ask() -> dict | None:
        s = socket.create_connection(superserver, timeout=10)
        try:
            s.sendall(encode_frame(MsgType.ADMIN, 5, ["export_snapshot", "USER"]))
            dec, got = FrameDecoder(), []
            while not got:
                chunk = s.recv(1 << 16)
                assert chunk
                got += dec.feed(chunk)
        finally:
            s.close()
        reply = unpack(got[0].body)
        if got[0].type == MsgType.ERROR and reply["code"] == "unavailable":
            return None  # the previous offer not given back yet (one per requester)
        assert got[0].type == MsgType.OK, reply
        return reply

    def offer() -> dict:
        return wait_for(ask, 15, "a snapshot offer")

    requests = st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=32, max_size=32),  # a token's length, not the token
        st.builds(lambda junk: ("token", junk), st.binary(max_size=64)),  # token + junk
        st.builds(lambda cut: ("prefix", cut), st.integers(0, 31)),  # part of the token
        st.builds(lambda k: ("read", k), st.integers(0, 1 << 16)),  # token, then hang up
    )

    @FUZZ
    @given(request=requests)
    def run(request):
        o = offer()
        token = o["token"].encode()
        with socket.create_connection(("127.0.0.1", o["port"]), timeout=10) as s:
            if isinstance(request, bytes):
                s.sendall(request)
            elif request[0] == "token":
                s.sendall(token + request[1])
            elif request[0] == "prefix":
                s.sendall(token[: request[1]])
            else:
                s.sendall(token)
                got = 0
                while got < request[1]:
                    chunk = s.recv(min(1 << 16, request[1] - got))
                    if not chunk:
                        break
                    got += len(chunk)
        n[0] += 1
        assert_serving(mirror, n[0])

    run()
    assert n[0] >= 100, n
    assert "wrong token" in log.text()
    # and the port still serves a whole snapshot to whoever has the token
    o = offer()
    with socket.create_connection(("127.0.0.1", o["port"]), timeout=10) as s:
        s.sendall(o["token"].encode())
        got = bytearray()
        while chunk := s.recv(1 << 16):
            got += chunk
    magic, size = TRAILER.unpack(bytes(got[-TRAILER.size :]))
    assert magic == TRAILER_MAGIC and size == len(got) - TRAILER.size


def test_b_is_active_after_the_fuzzing(mirror):
    mirror.wait_backup_active(timeout=20)
    assert_serving(mirror, 1)
    text = mirror.log("A")
    assert text.count("Traceback") == 0, "A logged an unexpected exception"
