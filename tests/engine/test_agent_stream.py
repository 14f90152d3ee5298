"""The agent's status stream (GET /v1/status/stream): a snapshot, then every change in
order with no gap in sequence numbers; a reconnect resyncs from a fresh snapshot; slow
subscribers are cut off without holding up the others.  Real member processes, a real
agent process, real sockets on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from engine.agent.config import parse_agent_config
from engine.client.agent import AgentClient, AgentError
from engine.client.stream import StreamGap
from engine.member.config import ConfigError
from tests.engine.agent_fixtures import (  # noqa: F401
    follow_fixture,
    instance_entries,
    pki_fixture,
    start_agent_fixture,
    started_agent,
)
from tests.engine.cluster_fixtures import started_cluster, wait_for

pytestmark = pytest.mark.timeout(90)


# The mirror and the TLS agent are started once for the module (they were ~1 s of the setup of
# each of eleven tests): a test that forces an instance down, pauses it or restarts the agent
# starts it again and waits for it, and `tls_agent` hands every test the two as a test of its
# own would find them.


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    yield from started_cluster(
        tmp_path_factory.mktemp("mirror"), types=("failover", "failover", "dr"), databases=("USER",)
    )


@pytest.fixture(scope="module")
def shared_tls_agent(mirror, pki, tmp_path_factory):
    entries = instance_entries(mirror)
    entries[0]["cert"] = str(pki.portal.cert)  # any certificate: its expiry is reported
    yield from started_agent(tmp_path_factory.mktemp("agent"), pki=pki, instances=entries)


@pytest.fixture
def tls_agent(shared_tls_agent, mirror):
    """The module's TLS agent, as a fresh one would be: every instance up in its role (B the
    Active backup, C Connected), no subscriber left from the test before and so no status
    poller running, and its log() read from here on."""
    mirror.wait_backup_active()
    mirror.wait_status("C", "status", "Connected")
    with shared_tls_agent.client() as c:
        wait_for(lambda: not c.health()["status_stream"]["polling"], 15, "the poller stopped")
    shared_tls_agent.log_from_here()
    return shared_tls_agent


def changes_of(name: str, key: str):
    """Predicate: an instance event for `name` whose patch carries `key`."""
    return lambda e: e["type"] == "instance" and e["name"] == name and key in e["changed"]


def assert_no_gaps(events: list[dict]) -> None:
    """Within each stream id, seq goes 1, 2, 3 ... and the first event is the snapshot."""
    by_stream: dict[str, list[dict]] = {}
    for e in events:
        by_stream.setdefault(e["stream"], []).append(e)
    for stream, evs in by_stream.items():
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), stream
        assert evs[0]["type"] == "snapshot", stream


def test_the_stream_starts_with_a_snapshot_of_every_instance_in_spec_terms(tls_agent, follow):
    f = follow(tls_agent)
    snap = f.next()
    assert snap["type"] == "snapshot" and snap["seq"] == 1
    assert snap["interval_ms"] == 20  # the default
    assert snap["agent"]["certificate"]["subject_dn"] == "CN=agent-host1,O=Mirror Portal"
    assert snap["agent"]["certificate"]["expired"] is False
    rows = snap["instances"]
    assert set(rows) == {"A", "B", "C"}
    assert {n: r["state"] for n, r in rows.items()} == {"A": "up", "B": "up", "C": "up"}
    assert {n: r["role"] for n, r in rows.items()} == {"A": "primary", "B": "backup", "C": "async"}
    assert rows["A"]["type"] == "Failover" and rows["C"]["type"] == "Disaster Recovery"
    assert rows["A"]["status"] == "Primary"
    assert rows["A"]["journal_transfer"] == "N/A"
    assert rows["A"]["databases"] == [
        {"name": "USER", "status": "Normal", "applied": rows["A"]["databases"][0]["applied"]}
    ]
    assert rows["A"]["certificate"]["subject_dn"] == "CN=portal,O=Mirror Portal"
    assert 0 <= rows["A"]["certificate"]["days_left"] <= 7
    assert rows["B"]["certificate"] is None
    # B and C settle as Backup / Connected (if not yet): the stream says so as changes
    f.until_state(
        lambda s: (
            (s.instances["B"]["status"], s.instances["C"]["status"]) == ("Backup", "Connected")
        ),
        what="B Backup and C Connected",
    )
    assert f.stream.instances["B"]["databases"][0]["status"] == "Dejournaling"
    assert_no_gaps(f.seen)


def test_a_write_on_the_primary_arrives_as_ordered_changes_without_gaps(tls_agent, mirror, follow):
    f = follow(tls_agent)
    f.next()
    before = {n: r["journal_end"] for n, r in f.stream.instances.items()}
    with mirror.client() as c:
        for i in range(20):
            c.set("USER", "Patient", (i,), f"name {i}")
        end = c.status()["journal_end"]
    assert end > before["A"]
    # every member's journal reaches the new end (in whatever order they are polled)
    at_end: set[str] = set()

    def reached(e: dict) -> bool:
        if changes_of(e.get("name"), "journal_end")(e) and e["changed"]["journal_end"] == end:
            at_end.add(e["name"])
        return at_end == {"A", "B", "C"}

    f.until(reached, what=f"A, B and C at journal end {end}")
    assert_no_gaps(f.seen)
    assert all(e["stream"] == f.seen[0]["stream"] for e in f.seen)
    # the followed state is what the instances report themselves
    for name in ("B", "C"):
        wait_for(
            lambda n=name: f.stream.instances[n]["databases"] == mirror.status(n)["databases"],
            15,
            f"{name}'s followed databases to match its own status",
        )
    assert f.stream.instances["A"]["journal_end"] == end


def member_statuses(record: dict) -> dict[str, str]:
    return {m["member"]: m["status"] for m in record.get("members") or []}


def test_an_instance_going_down_and_coming_back_is_streamed(tls_agent, mirror, follow):
    f = follow(tls_agent)
    f.next()
    old_pid = f.stream.instances["C"]["pid"]
    with tls_agent.client() as agent:
        assert agent.force_down("C")["forced"] is True
    # C's own record turns down, and the primary's view of the members shows it Down
    f.until_state(
        lambda s: (
            s.instances["C"]["state"] == "down"
            and member_statuses(s.instances["A"]).get("C") == "Down"
        ),
        what="C down, and Down on the primary",
    )
    # A killed process may first be seen "hung" (still there, not answering) before "down".
    states = [e["changed"]["state"] for e in f.seen if changes_of("C", "state")(e)]
    assert states[-1] == "down" and set(states) <= {"hung", "down"}
    record = f.stream.instances["C"]
    assert (record["status"], record["databases"]) == ("Down", None)
    assert f.stream.instances["C"]["type"] == "Disaster Recovery"  # the last one reported
    mirror.procs.pop("C", None)
    mirror.start("C")
    f.until_state(
        lambda s: (
            s.instances["C"]["state"] == "up"
            and member_statuses(s.instances["A"]).get("C") == "Connected"
        ),
        what="C up and Connected again",
    )
    up = [e for e in f.seen if changes_of("C", "state")(e)][-1]
    assert up["changed"]["state"] == "up"
    assert up["changed"]["pid"] not in (None, old_pid)
    assert_no_gaps(f.seen)


def test_a_dropped_connection_resyncs_with_a_fresh_snapshot_and_a_new_stream(tls_agent, follow):
    f = follow(tls_agent)
    first = f.next()
    f.stream.drop()
    again = f.until(lambda e: e["type"] == "snapshot", what="a new snapshot")
    assert again["seq"] == 1
    assert again["stream"] != first["stream"]
    assert again["agent"]["epoch"] == first["agent"]["epoch"]  # same agent run
    assert f.stream.resyncs == 1
    assert set(again["instances"]) == {"A", "B", "C"}
    assert_no_gaps(f.seen)


def test_an_agent_restart_says_goodbye_then_a_new_epoch_starts(tls_agent, follow):
    f = follow(tls_agent)
    first = f.next()
    tls_agent.restart()
    goodbye = f.until(lambda e: e["type"] == "goodbye", what="the goodbye")
    assert goodbye["code"] == "shutdown" and goodbye["stream"] == first["stream"]
    assert f.stream.last_goodbye == goodbye
    snap = f.until(lambda e: e["type"] == "snapshot", 30, "the new agent's snapshot")
    assert snap["agent"]["epoch"] != first["agent"]["epoch"]
    assert snap["stream"].split("-")[0] == snap["agent"]["epoch"]
    assert {n: r["state"] for n, r in snap["instances"].items()} == {
        "A": "up",
        "B": "up",
        "C": "up",
    }
    assert_no_gaps(f.seen)


@pytest.mark.parametrize("who, status", [(None, 401), ("stranger", 403)])
def test_stream_requests_without_an_allowed_certificate_are_refused(tls_agent, who, status):
    with tls_agent.client(who) as agent, pytest.raises(AgentError) as err:
        agent.open_stream("/v1/status/stream")
    assert err.value.status == status
    # the follower does not retry a refusal: it raises it
    with tls_agent.client(who) as agent, pytest.raises(AgentError):
        next(agent.status_stream().events())


def test_stream_requests_without_the_credential_get_401(mirror, start_agent):
    agent = start_agent(instances=instance_entries(mirror))
    for credential in (None, "wrong-credential-0123456789"):
        with agent.client(credential=credential) as c, pytest.raises(AgentError) as err:
            c.open_stream("/v1/status/stream")
        assert err.value.status == 401


def _raw_stream(agent, credential: str) -> tuple[socket.socket, str]:
    """A subscriber that reads the response head and then nothing more (tiny receive buffer)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", agent.port))
    s.sendall(
        b"GET /v1/status/stream HTTP/1.1\r\nHost: agent\r\n"
        + f"Authorization: Bearer {credential}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    stream_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-stream-id:")
    )
    return s, stream_id


def test_a_slow_subscriber_is_cut_off_and_a_fast_one_keeps_every_event(mirror, start_agent, follow):
    agent = start_agent(
        instances=instance_entries(mirror),
        agent_extra={"stream_queue": 4, "stream_interval_ms": 50},
    )
    fast = follow(agent)
    fast.next()
    stop = threading.Event()

    def load():
        with mirror.client() as c:
            i = 0
            while not stop.is_set():
                c.set("USER", "Load", (i % 500,), "x" * 200)
                i += 1

    writer = threading.Thread(target=load, daemon=True)
    slow, slow_id = _raw_stream(agent, agent.credential)
    seen_before = len(fast.seen)
    writer.start()
    try:
        wait_for(
            lambda: f"status stream {slow_id} ends (overflow)" in agent.log(),
            60,
            "the slow subscriber to be cut off",
        )
        cut_at = fast.stream.seq
        # the fast subscriber still gets what happens after the cut
        fast.until(lambda e: e["seq"] > cut_at + 3, what="events after the cut")
    finally:
        stop.set()
        writer.join(10)
    # it took more events than the slow one was allowed to queue, all of them, in order
    assert len(fast.seen) - seen_before > 4
    assert fast.stream.resyncs == 0
    assert_no_gaps(fast.seen)
    with agent.client(credential=agent.credential) as c:
        stream = c.health()["status_stream"]
    assert stream["cut_off"] == 1 and stream["polling"] is True
    # the slow one's connection ends (after its goodbye, if it still reads that far)
    data = b""
    deadline = time.monotonic() + 15
    with contextlib.suppress(ConnectionError):
        while time.monotonic() < deadline:
            chunk = slow.recv(65536)
            if not chunk:
                break
            data += chunk
    slow.close()
    assert time.monotonic() < deadline, "the slow subscriber's connection was never closed"
    if b"event: goodbye" in data:
        assert b'"code": "overflow"' in data


def test_a_hung_instance_reads_as_error_while_the_others_keep_streaming(tls_agent, mirror, follow):
    f = follow(tls_agent)
    f.next()
    mirror.pause("C")
    try:
        f.until_state(lambda s: s.instances["C"]["state"] == "hung", what="C hung")
        assert f.stream.instances["C"]["status"] == "Error"
        assert "no answer" in f.stream.instances["C"]["detail"]
        with mirror.client() as c:
            c.set("USER", "Patient", (1,), "while C is stopped")
            end = c.status()["journal_end"]
        f.until_state(
            lambda s: (
                s.instances["A"]["journal_end"] == end and s.instances["B"]["journal_end"] == end
            ),
            what="A and B at the new journal end",
        )
    finally:
        mirror.resume("C")
    f.until_state(lambda s: s.instances["C"]["state"] == "up", what="C up again")
    assert_no_gaps(f.seen)


def test_an_idle_stream_carries_keep_alive_comments(start_agent):
    agent = start_agent(agent_extra={"stream_heartbeat_ms": 200})
    s, _ = _raw_stream(agent, agent.credential)
    with s:
        data = b""
        deadline = time.monotonic() + 15
        while data.count(b": keep-alive") < 2 and time.monotonic() < deadline:
            data += s.recv(4096)
    assert data.count(b": keep-alive") >= 2
    # an agent without instances still starts with a (empty) snapshot
    assert b"event: snapshot" in data and b'"instances": {}' in data


def test_subscribers_share_one_poller_that_stops_when_the_last_one_leaves(tls_agent, follow):
    first, second = follow(tls_agent), follow(tls_agent)
    a, b = first.next(), second.next()
    assert a["stream"] != b["stream"] and a["seq"] == b["seq"] == 1
    with tls_agent.client() as c:
        assert c.health()["status_stream"]["subscribers"] == 2
    assert tls_agent.log().count("status poller started") == 1
    first.close()
    second.close()
    with tls_agent.client() as c:
        wait_for(lambda: not c.health()["status_stream"]["polling"], 15, "the poller to stop")
    assert tls_agent.log().count("status poller stopped") == 1


def test_the_follower_treats_a_gap_or_a_stale_snapshot_as_a_lost_stream():
    stream = AgentClient("http://127.0.0.1:2188", credential="c" * 20).status_stream()
    snapshot = {"type": "snapshot", "seq": 1, "stream": "e-1", "agent": {}, "instances": {}}
    stream._apply(snapshot)
    stream._apply({"type": "instance", "seq": 2, "stream": "e-1", "name": "A", "changed": {"x": 1}})
    assert stream.instances == {"A": {"x": 1}}
    with pytest.raises(StreamGap):
        stream._apply({"type": "instance", "seq": 4, "stream": "e-1", "name": "A", "changed": {}})
    with pytest.raises(StreamGap):
        stream._apply({**snapshot, "seq": 1})  # the same stream again is no resync
    with pytest.raises(StreamGap):
        stream._apply({"type": "agent", "seq": 3, "stream": "e-2", "changed": {}})


def test_a_silent_stream_counts_as_lost_and_the_follower_resyncs(start_agent, follow):
    agent = start_agent(agent_extra={"stream_heartbeat_ms": 600000})  # idle: no keep-alives
    f = follow(agent, read_timeout=0.5)
    first = f.next()
    again = f.until(lambda e: e["type"] == "snapshot", what="a snapshot after the silence")
    assert again["stream"] != first["stream"]
    assert f.stream.resyncs >= 1


@pytest.mark.parametrize(
    "key, value", [("stream_interval_ms", 5), ("stream_queue", 0), ("stream_heartbeat_ms", "x")]
)
def test_stream_settings_out_of_range_are_refused_naming_the_key(tmp_path, key, value):
    data = {"agent": {"auth": {"credential": "c" * 20}, key: value}}
    with pytest.raises(ConfigError, match=f"agent.{key}"):
        parse_agent_config(data, tmp_path)


def test_stream_settings_and_an_instance_certificate_are_read(tmp_path):
    data = {
        "agent": {"auth": {"credential": "c" * 20}, "stream_interval_ms": 25, "stream_queue": 8},
        "instances": [
            {"name": "a", "superserver": "127.0.0.1:5000", "data_dir": "A", "cert": "a.pem"}
        ],
    }
    cfg = parse_agent_config(data, tmp_path)
    assert (cfg.stream_interval_s, cfg.stream_queue, cfg.stream_heartbeat_s) == (0.025, 8, 10.0)
    assert cfg.instances[0].cert == tmp_path / "a.pem"
