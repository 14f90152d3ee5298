"""Free loopback ports for the throwaway mirrors of the tests and the bench scripts.

The launcher's neighbour: tests/ and bench/ start local clusters with it, and both import the
engine but not each other.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# the ports of examples/*.toml, which a developer may have running
EXAMPLE_PORTS = range(21000, 23000)


def free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on right now, below the range the kernel picks outgoing
    ports from: a port taken from that range (bind to port 0) can be grabbed as the source
    port of some connection before the member binds it.  The examples' ports are avoided."""
    floor = _ephemeral_floor()
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(10000, floor)
        if port in ports or port in EXAMPLE_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _ephemeral_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 12000)
