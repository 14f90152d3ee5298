"""The link-cutting tool itself (tests/faults/links.py, netns.py): first on a tiny echo server,
then on a real mirror whose backup reaches the primary's data channel through a LinkProxy, then
on test hosts in network namespaces.  Figures (how long a member took to notice) are printed,
never asserted: run with -s to see them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from engine.cluster.launcher import start_member, wait_ready
from engine.cluster.ports import free_ports
from engine.member.config import load_config
from tests.engine.cluster_fixtures import Cluster, wait_for, write_config
from tests.faults import netns
from tests.faults.links import PARTITION, STALL, LinkProxy, Links

pytestmark = pytest.mark.timeout(120)


# -- a tiny echo server ------------------------------------------------------------------------


class EchoServer:
    """Echoes every connection until its EOF (then closes), remembering what it saw."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", free_ports(1)[0]))
        self.sock.listen(512)
        self.address = self.sock.getsockname()
        self.accepted = 0
        self.received = bytearray()
        self.endings: list[str] = []  # "eof" or "reset", one per finished connection
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        ending = "eof"
        with conn:
            try:
                while data := conn.recv(65536):
                    with self.lock:
                        self.received += data
                    conn.sendall(data)
            except ConnectionResetError:
                ending = "reset"
            except OSError:
                ending = "error"
        with self.lock:
            self.endings.append(ending)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo):
    with LinkProxy(echo.address, name="client->echo") as p:
        yield p


def dial(proxy: LinkProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send data and read back as many bytes."""
    sock.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def silent(sock: socket.socket, wait: float = 0.3) -> bool:
    """Nothing arrives within `wait`, and the connection is neither closed nor reset."""
    sock.settimeout(wait)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(5.0)
    return False


def dialled_and_reset(proxy: LinkProxy) -> bool:
    """Dial, and say whether the proxy reset the connection; the reset may come before
    connect() returns (seen on CI: ECONNRESET from connect itself)."""
    try:
        sock = dial(proxy)
    except ConnectionResetError:
        return True
    with sock:
        return was_reset(sock)


def was_reset(sock: socket.socket) -> bool:
    try:
        sock.recv(1)
    except ConnectionResetError:
        return True
    return False


# -- the proxy on an echo server -----------------------------------------------------------------


def test_bytes_cross_the_proxy_both_ways_and_are_counted(echo, proxy):
    with dial(proxy) as c:
        assert exchange(c, b"hello through the proxy") == b"hello through the proxy"
    stats = proxy.wait_for(lambda s: s.open == 0, what="the connection to close")
    assert (stats.connections, stats.bytes_to_target, stats.bytes_to_client) == (1, 23, 23)
    assert echo.endings == ["eof"]


def test_a_partition_is_silence_for_both_peers_then_its_connections_are_reset(echo, proxy):
    old = dial(proxy)
    assert exchange(old, b"before") == b"before"
    proxy.cut(PARTITION)
    old.sendall(b"lost in the partition")
    assert silent(old), "the client heard something during the partition"
    during = dial(proxy)  # accepted, but it never reaches the target
    during.sendall(b"never delivered")
    assert silent(during)
    assert echo.accepted == 1 and bytes(echo.received) == b"before"
    assert echo.endings == [], "the server was told of the partition"

    proxy.heal()
    assert was_reset(old) and was_reset(during)
    with dial(proxy) as new:
        assert exchange(new, b"after") == b"after"
    assert bytes(echo.received) == b"beforeafter"
    wait_for(lambda: "reset" in echo.endings, 5, "the server to see its connection reset")
    assert proxy.stats().resets == 2


def test_a_stall_loses_nothing_and_resumes_in_order_at_heal(echo, proxy):
    old = dial(proxy)
    assert exchange(old, b"before|") == b"before|"
    with proxy.cut(STALL):
        for i in range(5):
            old.sendall(f"stalled-{i}|".encode())
        assert silent(old)
        during = dial(proxy)
        during.sendall(b"opened during the stall")
        assert silent(during)
        assert echo.accepted == 1, "a connection reached the target during the stall"
    expected = b"".join(f"stalled-{i}|".encode() for i in range(5))
    assert _read(old, len(expected)) == expected
    assert _read(during, 23) == b"opened during the stall"
    assert echo.accepted == 2 and proxy.stats().resets == 0
    old.close()
    during.close()


def _read(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_reset_closes_every_connection_with_an_rst_on_both_sides(echo, proxy):
    clients = [dial(proxy) for _ in range(3)]
    for c in clients:
        assert exchange(c, b"ping") == b"ping"
    proxy.reset()
    assert all(was_reset(c) for c in clients)
    wait_for(lambda: len(echo.endings) == 3, 5, "the server to see three endings")
    assert echo.endings == ["reset"] * 3
    with dial(proxy) as c:
        assert exchange(c, b"still serving") == b"still serving"
    assert proxy.stats().resets == 3


def test_refused_connections_are_refused_by_the_kernel_while_open_ones_carry_on(proxy):
    kept = dial(proxy)
    with proxy.refuse():
        with pytest.raises(ConnectionRefusedError):
            dial(proxy)
        assert exchange(kept, b"still here") == b"still here"
    with dial(proxy) as again:  # heal() listens again on the same port
        assert exchange(again, b"accepted again") == b"accepted again"
    kept.close()


def test_a_delay_line_holds_each_way_for_the_given_time_and_keeps_the_order(proxy):
    proxy.delay(150)
    with dial(proxy) as c:
        started = time.monotonic()
        assert exchange(c, b"one") == b"one"
        round_trip = time.monotonic() - started
        # the delay line releases nothing early: a lower bound the tool guarantees
        assert round_trip >= 0.3
        c.sendall(b"".join(b"%03d" % i for i in range(100)))
        assert _read(c, 300) == b"".join(b"%03d" % i for i in range(100))
    proxy.delay(0)
    with dial(proxy) as c:
        assert exchange(c, b"no delay") == b"no delay"
    print(f"\nround trip through a 150 ms delay line each way: {round_trip * 1000:.0f} ms")


def test_one_connection_can_be_cut_while_the_others_flow(proxy):
    first, second = dial(proxy), dial(proxy)
    assert exchange(first, b"1") == b"1" and exchange(second, b"2") == b"2"
    conn = proxy.connections()[0]
    conn.cut(STALL)
    first.sendall(b"held")
    assert silent(first)
    assert exchange(second, b"flows") == b"flows"
    assert conn.stats().state == "cut (stall)"
    conn.heal()
    assert _read(first, 4) == b"held"
    proxy.connections()[1].cut(PARTITION)
    proxy.connections()[1].heal()
    assert was_reset(second)
    assert exchange(first, b"unaffected") == b"unaffected"
    first.close()
    second.close()


def test_links_cut_several_links_as_one_network_event(echo):
    with Links() as links:
        links.add("A->B data", echo.address)
        links.add("B->arbiter", echo.address)
        links.add("C->A data", echo.address)
        socks = {
            name: socket.create_connection(("127.0.0.1", links[name].port))
            for name in links.names()
        }
        for s in socks.values():
            assert exchange(s, b"up") == b"up"
        with links.cut("A->B data", "B->arbiter", mode=STALL):
            for s in socks.values():
                s.sendall(b"x")
            assert silent(socks["A->B data"]) and silent(socks["B->arbiter"])
            assert _read(socks["C->A data"], 1) == b"x"
            assert [links[n].stats().cut for n in links.names()] == [STALL, STALL, None]
        assert _read(socks["A->B data"], 1) == b"x" and _read(socks["B->arbiter"], 1) == b"x"
        cuts = [e for e in links.events if e.action == "cut"]
        heals = [e for e in links.events if e.action == "heal"]
        assert [(e.links, e.mode) for e in cuts] == [(("A->B data", "B->arbiter"), STALL)]
        assert [e.links for e in heals] == [("A->B data", "B->arbiter")]
        for s in socks.values():
            s.close()


def test_the_proxy_forwards_garbage_intact_and_keeps_serving_many_connections(echo, proxy):
    garbage = os.urandom(2 * 1024 * 1024)
    with dial(proxy, timeout=20) as c:
        sender = threading.Thread(target=c.sendall, args=(garbage,))
        sender.start()
        assert _read(c, len(garbage)) == garbage
        sender.join()
    clients = [dial(proxy) for _ in range(200)]
    for i, c in enumerate(clients):
        c.sendall(b"%05d" % i)
    assert [_read(c, 5) for c in clients] == [b"%05d" % i for i in range(200)]
    for i, c in enumerate(clients):
        if i % 2:  # half of them go with an RST, half with a FIN
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    stats = proxy.wait_for(lambda s: s.open == 0, what="every connection to close")
    assert stats.connections == 201
    assert stats.bytes_to_target == stats.bytes_to_client == len(garbage) + 1000
    with dial(proxy) as c:
        assert exchange(c, b"still serving") == b"still serving"


def test_a_half_close_is_passed_on_and_the_answer_still_comes_back(proxy):
    with dial(proxy) as c:
        c.sendall(b"last words")
        c.shutdown(socket.SHUT_WR)
        assert _read(c, 100) == b"last words"  # the echo, then the server's own close
        assert c.recv(1) == b""


def test_a_target_that_refuses_gives_the_client_a_reset_and_is_counted():
    (nobody,) = free_ports(1)
    with LinkProxy(("127.0.0.1", nobody)) as p:
        assert dialled_and_reset(p)
        stats = p.wait_for(lambda s: s.open == 0, what="the connection to go")
        assert stats.failed == 1


def test_the_proxy_holds_at_most_its_cap_per_direction(echo):
    cap = 64 * 1024
    with LinkProxy(echo.address, cap=cap) as p:
        p.delay(60_000)  # nothing is released for a minute: everything read stays held
        with dial(p) as c:
            c.setblocking(False)
            sent = 0
            with contextlib.suppress(BlockingIOError):
                for _ in range(10_000):
                    sent += c.send(b"\0" * 65536)
            p.wait_for(lambda s: s.held >= cap, what="the cap to be reached")
            time.sleep(0.2)  # more time to read more, were the cap not kept
            held = p.stats().held
            assert held <= cap + 256 * 1024  # at most one read (asyncio's) past the cap
            assert sent > held  # the rest waits in the kernel's socket buffers
            p.reset()
        assert p.stats().bytes_dropped == held


# -- a real mirror's data channel through a proxy ------------------------------------------------


class ProxiedPair:
    """A primary A and a backup B whose data channel to A crosses the link "B->A data": B is
    started from a copy of the mirror file in which A's private address is the proxy's."""

    def __init__(self, directory: Path, qos_ms: int):
        self.qos_ms = qos_ms
        path = write_config(directory, ("failover", "failover"), mirror={"qos_timeout_ms": qos_ms})
        self.cluster = Cluster(path)
        real = self.cluster.cfg.member("A").private
        self.links = Links()
        self.data = self.links.add("B->A data", real)
        line = f'private = "{real}"'
        text = path.read_text()
        assert text.count(line) == 1
        b_path = directory / "mirror-B.toml"
        b_path.write_text(text.replace(line, f'private = "{self.data.address}"'))
        self.b_cfg = load_config(b_path)

    def start(self) -> None:
        self.cluster.procs["A"] = start_member(self.cluster.cfg, "A")
        self.cluster.procs["B"] = start_member(self.b_cfg, "B")
        wait_ready(self.cluster.cfg, self.cluster.procs)

    def close(self) -> None:
        self.cluster.close()
        self.links.close()

    def transfer_on_primary(self) -> str:
        rows = {r["member"]: r for r in self.cluster.status("A")["members"]}
        return rows["B"]["journal_transfer"]


@pytest.fixture
def make_pair(tmp_path):
    made: list[ProxiedPair] = []

    def factory(qos_ms: int) -> ProxiedPair:
        directory = tmp_path / f"pair{len(made)}"
        directory.mkdir()
        pair = ProxiedPair(directory, qos_ms)
        made.append(pair)
        pair.start()
        return pair

    yield factory
    for pair in made:
        pair.close()


def test_a_partitioned_data_channel_costs_the_backup_active_and_healing_restores_it(make_pair):
    pair = make_pair(qos_ms=1000)
    cluster = pair.cluster
    cluster.wait_backup_active()
    assert pair.data.stats().open >= 1, "B's data channel does not cross the proxy"
    with cluster.client() as c:
        c.set("USER", "Before", (1,), "x")

    def write():
        with cluster.client() as c:
            c.set("USER", "During", (1,), "written while partitioned")
            return time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        cut_at = time.monotonic()
        pair.links.cut("B->A data", mode=PARTITION)
        # a write needs the partitioned backup's ack: the primary gives up on it within the
        # QoS timeout, revokes Active, and the write is answered (after the primary's trouble)
        answered = pool.submit(write)
        wait_for(
            lambda: pair.transfer_on_primary() != "Active",
            10 * pair.qos_ms / 1000,
            "the primary to stop showing B Active",
        )
        primary_noticed = time.monotonic() - cut_at
        write_took = answered.result(timeout=30) - cut_at
    assert "Active status revoked" in cluster.log("A")
    wait_for(
        lambda: cluster.status("B")["journal_transfer"].startswith("Disconnected"),
        10 * pair.qos_ms / 1000,
        "B to see itself disconnected",
    )
    b_noticed = time.monotonic() - cut_at

    healed_at = time.monotonic()
    pair.links.heal("B->A data")
    cluster.wait_backup_active(timeout=30)
    active_again = time.monotonic() - healed_at
    # B catches up with A, the write made during the partition included
    assert cluster.wait_converged("B") == cluster.digests("A")
    assert pair.data.stats().resets >= 1
    print(
        f"\nQoS {pair.qos_ms} ms, partition with a write: the primary stopped showing B Active "
        f"after {primary_noticed:.2f} s, answered the write after {write_took:.2f} s; B saw "
        f"itself disconnected after {b_noticed:.2f} s; B Active again {active_again:.2f} s "
        "after the heal"
    )


def test_an_idle_primary_notices_a_partitioned_backup_within_the_qos_timeout(make_pair):
    pair = make_pair(qos_ms=1000)
    cluster = pair.cluster
    cluster.wait_backup_active()
    cut_at = time.monotonic()
    pair.links.cut("B->A data", mode=PARTITION)  # and no write at all
    wait_for(
        lambda: pair.transfer_on_primary() != "Active",
        10 * pair.qos_ms / 1000,
        "the idle primary to stop showing B Active",
    )
    print(f"\nidle primary noticed the partition after {time.monotonic() - cut_at:.2f} s")
    assert "nothing heard from it within the QoS timeout" in cluster.log("A")
    pair.links.heal("B->A data")
    cluster.wait_backup_active(timeout=20)


def test_a_stalled_data_channel_makes_writes_wait_then_complete_without_loss(make_pair):
    pair = make_pair(qos_ms=5000)
    cluster = pair.cluster
    cluster.wait_backup_active()

    def write():
        with cluster.client() as c:
            c.set("USER", "Stalled", (1,), "acknowledged after the stall")
            return time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pair.links.cut("B->A data", mode=STALL):
            started = time.monotonic()
            pending = pool.submit(write)
            time.sleep(0.5)  # far inside the QoS timeout (5 s)
            assert not pending.done(), "a write was answered without the backup's ack"
            healed_at = time.monotonic()
        finished = pending.result(timeout=30)
    assert pair.transfer_on_primary() == "Active"
    assert "revoked" not in cluster.log("A")
    assert pair.data.stats().resets == 0
    cluster.wait_converged("B")
    print(
        f"\nQoS {pair.qos_ms} ms, 0.5 s stall: the write took {finished - started:.2f} s, "
        f"answered {(finished - healed_at) * 1000:.0f} ms after the heal"
    )


def test_a_reset_data_channel_reconnects_at_once_and_the_backup_is_active_again(make_pair):
    pair = make_pair(qos_ms=2000)
    cluster = pair.cluster
    cluster.wait_backup_active()
    before = pair.data.stats().connections
    reset_at = time.monotonic()
    pair.data.reset()
    pair.data.wait_for(lambda s: s.connections > before, 10, "B to reconnect")
    reconnected = time.monotonic() - reset_at
    cluster.wait_backup_active(timeout=30)
    active_again = time.monotonic() - reset_at
    with cluster.client() as c:
        c.set("USER", "AfterReset", (1,), "y")
    cluster.wait_converged("B")
    assert pair.data.stats().resets == 1
    print(
        f"\nreset data channel: B reconnected after {reconnected * 1000:.0f} ms, Active again "
        f"after {active_again * 1000:.0f} ms"
    )


# -- test hosts in network namespaces -------------------------------------------------------------


@pytest.fixture
def net():
    netns.require_netns()
    with netns.Net() as n:
        yield n


def _serve_one(host: netns.Host, address: str) -> tuple[socket.socket, int]:
    server = host.socket()
    server.bind((address, 0))
    server.listen(8)
    return server, server.getsockname()[1]


def test_hosts_in_namespaces_talk_over_their_veth_and_a_cut_link_is_silence(net):
    a, b = net.host("a"), net.host("b")
    ab = net.link(a, b)
    server, port = _serve_one(b, ab.address(b))
    client = a.connect((ab.address(b), port))
    peer, _ = server.accept()
    client.sendall(b"hello")
    assert peer.recv(5) == b"hello"
    with ab.cut("qdisc"):  # every packet dropped, both ways
        client.sendall(b"sent during the cut")
        assert silent(peer, 0.5) and silent(client, 0.1)
        with pytest.raises(TimeoutError):  # a SYN into a partition times out
            a.connect((ab.address(b), port), timeout=1.0)
    # TCP retransmits: a short partition loses nothing
    peer.settimeout(20)
    assert _read(peer, 19) == b"sent during the cut"
    for s in (client, peer, server):
        s.close()


def test_a_downed_link_fails_new_connections_at_once_and_comes_back_up(net):
    a, b = net.host("a"), net.host("b")
    ab = net.link(a, b)
    server, port = _serve_one(b, ab.address(b))
    with ab.cut("down"):
        with pytest.raises(OSError) as raised:
            a.connect((ab.address(b), port), timeout=5.0)
        assert raised.value.errno == errno.ENETUNREACH
    a.connect((ab.address(b), port), timeout=5.0).close()
    server.close()


def test_a_one_way_cut_drops_only_what_one_host_sends(net):
    a, b = net.host("a"), net.host("b")
    ab = net.link(a, b)
    server, port = _serve_one(b, ab.address(b))
    client = a.connect((ab.address(b), port))
    peer, _ = server.accept()
    with ab.cut("qdisc", only_from=a):
        peer.sendall(b"b to a")
        client.settimeout(5)
        assert _read(client, 6) == b"b to a"
        client.sendall(b"a to b")
        assert silent(peer, 0.5)
    peer.settimeout(20)
    assert _read(peer, 6) == b"a to b"
    for s in (client, peer, server):
        s.close()


def test_a_process_runs_inside_a_host_and_every_namespace_goes_at_close():
    netns.require_netns()
    with netns.Net() as n:
        a = n.host("a")
        names = [h.ns for h in n.hosts.values()]
        out = a.run("ip", "-o", "link", "show").stdout
        assert "lo" in out and "eth" not in out  # only the namespace's own interfaces
        sleeper = a.popen("sleep", "60")
    assert sleeper.poll() is not None, "the host's process outlived the Net"
    assert not any((netns.NETNS_DIR / name).exists() for name in names)
