"""Free loopback ports for the throwaway mirrors of the tests and the bench scripts.

The launcher's neighbour: tests/ and bench/ start local clusters with it, and both import the
engine but not each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

# the ports of examples/*.toml, which a developer may have running
EXAMPLE_PORTS = range(21000, 23000)


def free_ports(n: int) -> list[int]:
    """Ports nobody listens on right now, handed out in turn from this test process's own
    share of the ports below the range the kernel picks outgoing ports from (a port taken
    from that range, by bind to port 0, can be grabbed as the source port of some connection
    before the member binds it).  Test runs side by side on one machine hold different
    shares (_PortShare), so one cannot start a member on a port another has just handed out:
    a member binds its ports only a moment after they are chosen (a private address only
    once the instance is in a mirror).  The ports of examples/*.toml are avoided."""
    return _port_share().take(n)


class _PortShare:
    """One of SHARES equal parts of [10000, the ephemeral floor), held by an exclusive
    lock on a file in the temp directory for as long as this process lives."""

    SHARES = 8
    LOCK_DIR = Path(tempfile.gettempdir()) / "mirror-portal-test-ports"

    def __init__(self):
        floor = _ephemeral_floor()
        size = (floor - 10000) // self.SHARES
        self.lock_fd: int | None = None
        share = self._lock_a_share()
        if share is None:  # every share taken, or no lock directory: the whole range
            self.low, self.high = 10000, floor
        else:
            self.low = 10000 + share * size
            self.high = self.low + size
        self.next = random.randrange(self.low, self.high)

    def _lock_a_share(self) -> int | None:
        with contextlib.suppress(OSError):
            self.LOCK_DIR.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                self.LOCK_DIR.chmod(0o1777)  # engineers' test runs share the machine
        for share in random.sample(range(self.SHARES), self.SHARES):
            try:
                fd = os.open(self.LOCK_DIR / f"share-{share}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.lock_fd = fd  # kept open: the lock lasts until this process exits
            return share
        return None

    def take(self, n: int) -> list[int]:
        """n ports in turn (a port comes round again only after the whole share), each
        free right now."""
        ports: list[int] = []
        for _ in range(self.high - self.low):
            if len(ports) == n:
                break
            port = self.next
            self.next = self.low + (port + 1 - self.low) % (self.high - self.low)
            if port in EXAMPLE_PORTS:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
        if len(ports) < n:
            raise RuntimeError(f"no {n} free ports in {self.low}-{self.high}")
        return ports


_share: _PortShare | None = None


def _port_share() -> _PortShare:
    global _share
    if _share is None:
        _share = _PortShare()
    return _share


def _ephemeral_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 12000)
