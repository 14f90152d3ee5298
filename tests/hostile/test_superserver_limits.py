"""The superserver's connection limits on real instance processes (issue 12, item 5).

Each test starts a non-member instance (`python -m engine instance --data-dir`) with small
limits given as its --superserver-* options, attacks its superserver from raw sockets and
checks that the attack is cut where the limits say, that a good client is served meanwhile,
and that every refusal is in the instance's log (lines beyond the rate limit are counted
there as "(+N more not logged)")."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.client.app import Client, EngineError
from engine.cluster.launcher import spawn, start_member, wait_ready
from engine.cluster.ports import free_ports
from engine.wire.protocol import (
    HEADER,
    MAGIC,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    MsgType,
    encode_frame,
    unpack,
)
from tests.engine.cluster_fixtures import Cluster, wait_for, write_config

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


class Instance:
    def __init__(self, root: Path, limits: dict):
        self.data_dir = root / "LIM"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        args = ["--data-dir", str(self.data_dir), "--name", "LIM", "--superserver", self.address]
        for key, value in limits.items():
            args += ["--superserver-" + key.removesuffix("_s").replace("_", "-"), str(value)]
        with open(self.data_dir / "instance.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "instance", *args],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.answers, 15, "instance answering")

    def client(self) -> Client:
        return Client([self.address], follow_primary=False, timeout=5, retries=0)

    def answers(self) -> bool:
        try:
            with self.client() as c:
                return c.ping() == "pong"
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self) -> str:
        return (self.data_dir / "instance.log").read_text(errors="replace")

    def counted(self, limit: str) -> int:
        """Refusals or closes by `limit` the log tells of, one by one or as counts."""
        n = 0
        for line in self.log().splitlines():
            if f"[limit {limit}=" in line:
                n += 1
            elif f"[limit {limit}]" not in line:
                continue
            more = re.search(r"\(\+(\d+) more not logged\)", line)
            n += int(more.group(1)) if more else 0
        return n

    def status_field(self, name: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {name} in /proc/{self.proc.pid}/status")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def reset_peak_rss(self) -> bool:
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False


@pytest.fixture
def start(tmp_path):
    started: list[Instance] = []

    def factory(**limits) -> Instance:
        inst = Instance(tmp_path / str(len(started)), limits)
        started.append(inst)
        return inst

    yield factory
    for inst in started:
        inst.stop()


def connect(inst: Instance) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", inst.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    return s


def ping(s: socket.socket, req_id: int = 1) -> None:
    s.sendall(encode_frame(MsgType.PING, req_id, []))
    dec, frames = FrameDecoder(), []
    while not frames:
        chunk = s.recv(65536)
        assert chunk, "closed instead of answering"
        frames = dec.feed(chunk)
    assert frames[0].type == MsgType.OK and unpack(frames[0].body) == "pong"


def closed_with(s: socket.socket, timeout: float) -> str | None:
    """The reason the server gave before closing `s` within `timeout`, or None if still open."""
    s.settimeout(timeout)
    dec, frames = FrameDecoder(), []
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            frames += dec.feed(chunk)
    except TimeoutError:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    errors = [unpack(f.body) for f in frames if isinstance(f, Frame) and f.type == MsgType.ERROR]
    return errors[-1]["message"] if errors else "closed"


def header(mtype: int, req_id: int, length: int) -> bytes:
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, mtype, req_id, length)


def test_idle_and_silent_connections_are_closed_and_their_descriptors_come_back(start):
    inst = start(handshake_timeout_s=1, idle_timeout_s=1.5)
    fds_before = inst.descriptors()
    good = inst.client()
    assert good.ping() == "pong"
    idle = [connect(inst) for _ in range(60)]
    for s in idle:
        ping(s)  # a first request, then nothing
    silent = [connect(inst) for _ in range(60)]  # never a request
    wait_for(lambda: inst.descriptors() >= fds_before + 120, 5, "every connection accepted")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:  # a good client that keeps talking is never idle
        assert good.ping() == "pong"
        time.sleep(0.2)
    reasons = [closed_with(s, 3) for s in idle + silent]
    assert all(r and "idle for" in r for r in reasons[:60]), reasons[:60]
    assert all(r and "no request" in r for r in reasons[60:]), reasons[60:]
    for s in idle + silent:
        s.close()
    wait_for(lambda: inst.descriptors() <= fds_before + 1, 5, "descriptors back")
    assert good.ping() == "pong"
    good.close()
    wait_for(lambda: inst.counted("idle_timeout_s") == 60, 5, "60 idle closes in the log")
    wait_for(lambda: inst.counted("handshake_timeout_s") == 60, 5, "60 handshake closes logged")
    assert "more not logged" in inst.log()  # the flood did not flood the log


def test_connections_over_the_maximum_are_refused_at_once_while_a_good_client_is_served(start):
    inst = start(max_connections=20)
    good = inst.client()
    assert good.ping() == "pong"
    held = [connect(inst) for _ in range(19)]
    for s in held:
        ping(s)
    t0 = time.monotonic()
    over = [connect(inst) for _ in range(25)]
    reasons = [closed_with(s, 2) for s in over]
    assert time.monotonic() - t0 < 5
    assert all(r and "too many connections" in r for r in reasons), reasons
    assert good.ping() == "pong"  # the good client connected before is still served
    # the refusal frame, or a reset when the server closes with the client's hello unread
    with pytest.raises(EngineError, match="too many connections|lost"), inst.client() as late:
        late.ping()
    for s in held[:5]:
        s.close()
    wait_for(inst.answers, 5, "a new client served once there is room")
    wait_for(lambda: inst.counted("max_connections") == 26, 5, "26 refusals in the log")
    for s in held[5:] + over:
        s.close()
    good.close()


def test_half_sent_frames_are_cut_at_the_caps_and_memory_stays_bounded(start):
    inst = start(
        max_buffered_per_connection="4MiB",
        max_buffered_total="8MiB",
        frame_timeout_s=60,
        handshake_timeout_s=60,
    )
    rss_before = inst.status_field("VmRSS")
    peak_reset = inst.reset_peak_rss()
    # a frame larger than one connection may hold: refused at its header
    big = connect(inst)
    big.sendall(header(MsgType.SET, 7, 6 * MIB))
    reason = closed_with(big, 3)
    assert reason and "max_buffered_per_connection" in reason, reason
    # 24 connections each send 3 MiB of a 4 MiB frame: 72 MiB without a total cap
    socks = []
    for i in range(24):
        s = connect(inst)
        socks.append(s)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(header(MsgType.SET, i + 1, 4 * MIB - HEADER.size) + b"x" * (3 * MIB))
    time.sleep(0.5)
    reasons = [closed_with(s, 0.5) for s in socks]
    cut = [r for r in reasons if r is not None]
    assert len(cut) >= 22, reasons  # 8 MiB holds two of them
    assert all("max_buffered_total" in r or r == "reset" for r in cut), cut
    peak = inst.status_field("VmHWM") if peak_reset else inst.status_field("VmRSS")
    growth = peak - rss_before
    assert growth < 32 * MIB, f"the instance grew by {growth / MIB:.1f} MiB"
    with inst.client() as good:  # still served while the survivors hold their bytes
        assert good.ping() == "pong"
    for s in socks:
        s.close()
    wait_for(lambda: inst.counted("max_buffered_total") == len(cut), 5, "every cut logged")
    assert inst.counted("max_buffered_per_connection") == 1


class HalfSender(threading.Thread):
    """Keeps one half-sent frame on the superserver: sends a header and `held` - 12 bytes of
    its body, waits for the server to close it (keeping the reason), and comes back."""

    def __init__(self, port: int, held: int, stop: threading.Event, release: threading.Event):
        super().__init__(daemon=True)
        self.port, self.held, self.stop, self.release = port, held, stop, release
        self.reasons: list[str] = []
        self.parked = threading.Event()  # stopped: nothing more will be sent

    def run(self) -> None:
        payload = header(MsgType.SET, 7, MIB - 64) + b"h" * (self.held - HEADER.size)
        while not self.stop.is_set():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    s.sendall(payload)
                reason = None
                while reason is None and not self.stop.is_set():
                    reason = closed_with(s, 0.05)
                if reason is None:  # stopped while held: anything the server says at last
                    self.parked.set()
                    self.release.wait(30)
                    reason = closed_with(s, 0.2)
                if reason is not None:
                    self.reasons.append(reason)
            finally:
                s.close()
            time.sleep(0.05)
        self.parked.set()


def test_a_good_client_writes_while_half_sent_frames_keep_the_total_cap_full(tmp_path):
    """The total cap evicts the largest holders: a client whose ordinary frames arrive in two
    reads crosses the cap again and again and is never the one cut."""
    limits = {
        "max_buffered_per_connection": MIB,
        "max_buffered_total": 4 * MIB,
        "frame_timeout_s": 60,
        "handshake_timeout_s": 60,
        "idle_timeout_s": 60,
    }
    cluster = Cluster(write_config(tmp_path, ("failover", "failover"), databases=("USER",)))
    args = ["instance", "--config", str(cluster.path), "--member", "A"]
    for key, value in limits.items():
        args += ["--superserver-" + key.removesuffix("_s").replace("_", "-"), str(value)]
    a = cluster.cfg.member("A")
    cluster.procs["A"] = spawn(args, Path(a.data_dir) / "instance.log")
    cluster.procs["B"] = start_member(cluster.cfg, "B")
    stop, release = threading.Event(), threading.Event()
    senders: list[HalfSender] = []
    try:
        wait_ready(cluster.cfg, cluster.procs)
        cluster.wait_backup_active()
        log_mark = len(cluster.log("A"))
        # 8 of them hold 4 MiB - 4 KiB: 4 KiB left, and 4 more keep trying to get in
        held = 512 * 1024 - 512
        senders = [HalfSender(a.superserver.port, held, stop, release) for _ in range(12)]
        for t in senders:
            t.start()
        wait_for(lambda: sum(len(t.reasons) for t in senders) >= 4, 10, "the total cap full")

        good = connect_to(a.superserver.port)
        good_peer = "{}:{}".format(*good.getsockname())
        values = {}
        dec = FrameDecoder()
        for i in range(30):  # ordinary writes, each frame arriving in two reads
            values[i] = f"good {i} " + "g" * (20 * 1024)
            frame = encode_frame(MsgType.SET, i + 1, ["USER", "Good", [i], values[i]])
            good.sendall(frame[: len(frame) // 2])
            time.sleep(0.05)
            good.sendall(frame[len(frame) // 2 :])
            frames: list = []
            while not frames:
                chunk = good.recv(65536)
                assert chunk, f"the good client was cut at write {i}"
                frames = dec.feed(chunk)
            assert frames[0].type == MsgType.OK and frames[0].req_id == i + 1, frames[0]
        good.close()
    finally:
        stop.set()
        for t in senders:  # nothing more is sent once every one is parked
            t.parked.wait(30)
        time.sleep(0.5)
        release.set()
        for t in senders:
            t.join(30)

    try:
        with cluster.client() as c:
            for i, value in values.items():
                assert c.get("USER", "Good", (i,)) == value
        reasons = [r for t in senders for r in t.reasons]
        evicted = [r for r in reasons if r.startswith("evicted")]
        assert all("max_buffered_total" in r for r in reasons), reasons
        # the good client's bytes crossed the cap, and a hostile connection went instead
        assert any(f"crossed by {good_peer})" in r for r in evicted), (good_peer, evicted[:5])
        log = cluster.log("A")[log_mark:]
        assert f"closed {good_peer}" not in log
        assert "evicted:" in log

        def counted() -> int:
            n = 0
            for line in log_since().splitlines():
                if "[limit max_buffered_total=" in line:
                    n += 1
                elif "[limit max_buffered_total]" not in line:
                    continue
                more = re.search(r"\(\+(\d+) more not logged\)", line)
                n += int(more.group(1)) if more else 0
            return n

        def log_since() -> str:
            return cluster.log("A")[log_mark:]

        wait_for(lambda: counted() == len(reasons), 10, f"{len(reasons)} cuts in A's log")
    finally:
        cluster.close()


def connect_to(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_a_slow_sender_is_cut_when_its_frame_takes_too_long(start):
    inst = start(frame_timeout_s=1, idle_timeout_s=30, handshake_timeout_s=30)
    s = connect(inst)
    ping(s)
    body = encode_frame(MsgType.SET, 9, ["USER", "G", [1], "v" * 2000])
    t0 = time.monotonic()
    cut_after = None
    with Client([inst.address], follow_primary=False, timeout=5, retries=0) as good:
        for i in range(0, len(body), 20):  # 20 bytes every 0.1 s: the frame would take 10 s
            try:
                s.sendall(body[i : i + 20])
            except (BrokenPipeError, ConnectionResetError):
                cut_after = time.monotonic() - t0
                break
            if closed_with(s, 0.1) is not None:
                cut_after = time.monotonic() - t0
                break
            assert good.ping() == "pong"
    assert cut_after is not None and 0.9 < cut_after < 3.0, cut_after
    wait_for(lambda: inst.counted("frame_timeout_s") == 1, 5, "the cut in the log")
    assert "a frame not finished" in inst.log()


def test_limits_are_checked_at_start_and_recorded_in_node_json(tmp_path):
    cmd = [sys.executable, "-m", "engine", "instance", "--data-dir", str(tmp_path / "X")]
    cmd += ["--name", "X", "--superserver", "127.0.0.1:1"]
    bad = subprocess.run(
        [*cmd, "--superserver-idle-timeout", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "idle_timeout_s" in bad.stderr, bad.stderr
    from engine.member.node import load_node

    node = load_node(tmp_path / "Y", "Y", "127.0.0.1:1", {"max_connections": "50"})
    assert node.superserver_limits == {"max_connections": 50}
    assert load_node(tmp_path / "Y").superserver_limits == {"max_connections": 50}
