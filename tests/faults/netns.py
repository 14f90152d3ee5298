"""Test hosts in Linux network namespaces joined by veth pairs, and links between them cut in
the kernel: the other way to break a link (links.py is the proxy way).

    with Net() as net:                           # NetnsUnavailable (a reason) when it cannot be
        a, b = net.host("a"), net.host("b")      # one namespace each, loopback up
        ab = net.link(a, b)                      # a veth pair, 198.18.x.y/30 on each end
        server = b.socket(); server.bind((ab.address(b), 7000)); ...   # a socket inside b
        b.popen("python", "-m", "engine", ...)   # a process inside b (killed at close)
        with ab.cut():                           # silence both ways; healed at the with's end
            ...

Cut methods (NetLink.cut):
    "qdisc"  (default) a `pfifo limit 0` root qdisc on each end: every packet the link would
             carry is dropped, so the peers see silence (a SYN times out, established
             connections retransmit), as in a real partition.  Needs only `ip` and `tc`
             (iproute2): netem is not in this kernel, but pfifo is.
    "down"   `ip link set down` on both ends: the hosts see their link down, so new
             connections fail at once (ENETUNREACH) instead of timing out.
`only_from=host` (qdisc) drops only what that host sends: a one-way partition.  (A firewall
DROP rule would do the same, but neither nft nor iptables is on these machines, and a method
the CI never runs would be untested.)

What a kernel cut does to TCP is what a real partition does: nothing is lost at heal.  The
connections retransmit with backoff and carry on (a short partition is a stall), unless the
cut outlasts TCP's retransmissions (net.ipv4.tcp_retries2, about 15 minutes by default).

Addresses are taken from 198.18.0.0/15 (RFC 2544, set aside for benchmarking) inside the
namespaces only: both ends of every veth are in namespaces made here, nothing is added to the
machine's own namespace, and everything is removed at close().  Namespaces are named
mpf-<pid>-<host>; those left by a process that no longer exists are removed at the next Net().

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and `tc`.  require_netns() skips a test
with the reason when they are missing; on CI (CI=true) as root a missing tool fails instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.faults.links import Healing

PREFIX = "mpf"
NETNS_DIR = Path("/run/netns")
SUBNET = ipaddress.ip_network("198.18.0.0/15")
CLONE_NEWNET = 0x40000000
METHODS = ("qdisc", "down")
ON_CI = os.environ.get("CI", "").lower() == "true"


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be used here; the message says why."""


def _run(args: list[str], *, input: str | None = None, check: bool = True, timeout: float = 30):
    result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


_probe: str | None | bool = False  # False: not probed yet


def missing() -> str | None:
    """Why namespaces cannot be used here, or None when they can (probed once)."""
    global _probe
    if _probe is not False:
        return _probe  # type: ignore[return-value]
    reason = None
    if not sys.platform.startswith("linux"):
        reason = "network namespaces are Linux only"
    elif os.geteuid() != 0:
        reason = "network namespaces need root"
    else:
        absent = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
        if absent:
            reason = f"{' and '.join(absent)} not found (apt-get install iproute2)"
    if reason is None:
        name = f"{PREFIX}-{os.getpid()}-probe"
        made = _run(["ip", "netns", "add", name], check=False)
        if made.returncode != 0:
            reason = f"cannot create a network namespace: {made.stderr.strip()}"
        else:
            _run(["ip", "netns", "delete", name], check=False)
    _probe = reason
    return reason


def require_netns() -> None:
    """Skip the calling test when namespaces cannot be used, with the reason; on CI (CI=true)
    as root that is a failure: CI runs as root and every tool needed is in iproute2."""
    import pytest

    reason = missing()
    if reason is None:
        return
    if ON_CI and os.geteuid() == 0:
        pytest.fail(f"{reason} (required on CI, which runs as root)")
    pytest.skip(reason)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def in_namespace(ns: str, fn: Callable):
    """fn() run in a thread that has entered network namespace `ns`, and its result.  The
    namespace is per thread: sockets fn makes belong to `ns` and may then be used anywhere."""
    out: dict = {}

    def run():
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if _libc().setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=run, name=f"in {ns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class Host:
    """A test host: one network namespace."""

    def __init__(self, net: Net, name: str):
        self.net = net
        self.name = name
        self.ns = f"{PREFIX}-{os.getpid()}-{name}"
        self.procs: list[subprocess.Popen] = []

    def __repr__(self) -> str:
        return f"<Host {self.name} ({self.ns})>"

    def run(self, *args: str, check: bool = True, timeout: float = 30, input=None):
        """A command inside the namespace, waited for (CompletedProcess, text)."""
        return _run(
            ["ip", "netns", "exec", self.ns, *args], input=input, check=check, timeout=timeout
        )

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        """A process inside the namespace, killed (by its pid) at Net.close()."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *args], **kw)
        self.procs.append(proc)
        return proc

    def call(self, fn: Callable):
        """fn() in a thread inside this host's namespace (see in_namespace)."""
        return in_namespace(self.ns, fn)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM) -> socket.socket:
        return self.call(lambda: socket.socket(family, type))

    def connect(self, address: tuple[str, int], timeout: float | None = 5.0) -> socket.socket:
        """A TCP connection from this host (the connect itself made inside the namespace)."""
        return self.call(lambda: socket.create_connection(address, timeout=timeout))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()


class NetLink:
    """A veth pair between two hosts, a /30 of its own; the same interface name on both ends."""

    def __init__(self, net: Net, a: Host, b: Host, index: int, name: str):
        self.net = net
        self.a, self.b = a, b
        self.name = name
        self.ifname = f"l{index}"
        subnet = list(SUBNET.subnets(new_prefix=30))[index]
        hosts = list(subnet.hosts())
        self._addresses = {a.name: str(hosts[0]), b.name: str(hosts[1])}
        self.prefix = subnet.prefixlen
        self.cut_as: tuple[str, tuple[Host, ...]] | None = None  # (method, ends that drop)

    def __repr__(self) -> str:
        return f"<NetLink {self.name} {self.a.name}<->{self.b.name} ({self.ifname})>"

    def address(self, host: Host) -> str:
        """`host`'s address on this link."""
        return self._addresses[host.name]

    def ends(self) -> tuple[Host, Host]:
        return self.a, self.b

    def cut(self, method: str = "qdisc", only_from: Host | None = None) -> Healing:
        """Stop the link (module doc); heal() or the end of a with undoes it."""
        if method not in METHODS:
            raise ValueError(f"cut method {method!r}: one of {', '.join(METHODS)}")
        if self.cut_as is not None:
            self.heal()
        if only_from is not None and only_from not in (self.a, self.b):
            raise ValueError(f"{only_from} is not an end of {self}")
        if method == "down":
            if only_from is not None:
                raise ValueError("a downed link carries nothing either way: no only_from")
            for host in (self.a, self.b):
                _run(["ip", "-n", host.ns, "link", "set", self.ifname, "down"])
            self.cut_as = (method, (self.a, self.b))
            return Healing(self.heal)
        senders = (only_from,) if only_from is not None else (self.a, self.b)
        for host in senders:
            self._qdisc_drop(host)
        self.cut_as = (method, senders)
        return Healing(self.heal)

    def _qdisc_drop(self, host: Host) -> None:
        # a queue of length 0: every packet leaving this end is dropped, silently for the
        # sender (TCP takes it as loss and retransmits)
        host.run("tc", "qdisc", "replace", "dev", self.ifname, "root", "pfifo", "limit", "0")

    def heal(self) -> None:
        if self.cut_as is None:
            return
        method, senders = self.cut_as
        self.cut_as = None
        if method == "down":
            for host in (self.a, self.b):
                _run(["ip", "-n", host.ns, "link", "set", self.ifname, "up"])
            return
        for host in senders:
            host.run("tc", "qdisc", "del", "dev", self.ifname, "root", check=False)


class Net:
    """Test hosts and the links between them; removes every namespace it made at close()."""

    def __init__(self):
        reason = missing()
        if reason is not None:
            raise NetnsUnavailable(reason)
        self.hosts: dict[str, Host] = {}
        self.links: list[NetLink] = []
        remove_stale()

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def host(self, name: str) -> Host:
        if not re.fullmatch(r"[a-z0-9]{1,20}", name):
            raise ValueError(f"host name {name!r}: 1-20 lowercase letters or digits")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        host = Host(self, name)
        _run(["ip", "netns", "add", host.ns])
        self.hosts[name] = host
        _run(["ip", "-n", host.ns, "link", "set", "lo", "up"])
        return host

    def link(self, a: Host, b: Host, name: str | None = None) -> NetLink:
        link = NetLink(self, a, b, len(self.links), name or f"{a.name}<->{b.name}")
        ifname = link.ifname
        # both ends made straight inside the namespaces: nothing appears in the machine's own
        _run(
            ["ip", "link", "add", ifname, "netns", a.ns, "type", "veth"]
            + ["peer", "name", ifname, "netns", b.ns]
        )
        self.links.append(link)
        for host in (a, b):
            cidr = f"{link.address(host)}/{link.prefix}"
            _run(["ip", "-n", host.ns, "addr", "add", cidr, "dev", ifname])
            _run(["ip", "-n", host.ns, "link", "set", ifname, "up"])
        return link

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()
        for host in self.hosts.values():  # deleting a namespace deletes its veth ends
            _run(["ip", "netns", "delete", host.ns], check=False)
        self.hosts.clear()
        self.links.clear()


def remove_stale() -> list[str]:
    """Remove the namespaces this module made in processes that no longer exist."""
    removed = []
    if not NETNS_DIR.is_dir():
        return removed
    for entry in NETNS_DIR.iterdir():
        m = re.fullmatch(rf"{PREFIX}-(\d+)-[a-z0-9]+", entry.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _run(["ip", "netns", "delete", entry.name], check=False)
            removed.append(entry.name)
    return removed
