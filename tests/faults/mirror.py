"""A real mirror whose failover links can be cut: members A and B (and any asyncs), and an
arbiter, where every link between A, B and the arbiter crosses a LinkProxy of tests/faults/
links.py.

    "A->B", "B->A"                each failover member's data channel to the other (whichever
                                  is primary: the backup connects to the primary)
    "A->arbiter", "B->arbiter"    each failover member's contact with the arbiter

Each failover member runs from its own copy of the mirror file in which the other's private
address and the arbiter's address are the proxies'; asyncs run from the plain file (their
links are not cut here).  `isolate("A")` cuts every link of A as one network event.

`Arbiter` runs `python -m engine arbiter` on a free loopback port; the `arbiter` fixture
(import `arbiter_fixture` into a test module) gives a started one.  bench/failover.py uses
both as well.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.client.app import Client
from engine.cluster.launcher import start_member, wait_ready
from engine.member.config import load_config
from tests.engine.agent_fixtures import AgentProcess, write_agent_config
from tests.engine.cluster_fixtures import Cluster, free_ports, wait_for, write_config
from tests.faults.links import PARTITION, Links

ROOT = Path(__file__).resolve().parents[2]


class Arbiter:
    """`python -m engine arbiter` on a free loopback port."""

    def __init__(self, directory: Path):
        (self.port,) = free_ports(1)
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = directory / "arbiter.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "arbiter", "--listen", self.address],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(lambda: "arbiter listening" in self.log_path.read_text(), 15, "the arbiter")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(name="arbiter")
def arbiter_fixture(tmp_path):
    a = Arbiter(tmp_path)
    a.start()
    yield a
    a.stop()


class LinkedMirror(Cluster):
    def __init__(
        self, directory: Path, arbiter, types=("failover", "failover"), qos_ms=1000, agents=False
    ):
        directory.mkdir(parents=True, exist_ok=True)
        mirror = {"qos_timeout_ms": qos_ms}
        if arbiter is not None:
            mirror["arbiter"] = arbiter.address
        path = write_config(directory, types, mirror=mirror)
        super().__init__(path)
        self.arbiter = arbiter
        self.qos_ms = qos_ms
        self.links = Links()
        self.agents: dict[str, AgentProcess] = {}
        if agents:  # one per failover member's "host", reached directly (not through a link)
            self._start_agents(directory, path)
        text = path.read_text()
        self.member_cfgs = {}
        for me, other in (("A", "B"), ("B", "A")):
            real = self.cfg.member(other).private
            proxy = self.links.add(f"{me}->{other}", real)
            mine = text.replace(f'private = "{real}"', f'private = "{proxy.address}"')
            if arbiter is not None:
                proxy = self.links.add(f"{me}->arbiter", arbiter.address)
                real = f'arbiter = "{arbiter.address}"'
                mine = mine.replace(real, f'arbiter = "{proxy.address}"')
            own = directory / f"mirror-{me}.toml"
            own.write_text(mine)
            self.member_cfgs[me] = load_config(own)

    def _start_agents(self, directory: Path, path: Path) -> None:
        text = path.read_text()
        for name in ("A", "B"):
            member = self.cfg.member(name)
            (port,) = free_ports(1)
            entry = {"name": name, "superserver": member.superserver, "data_dir": member.data_dir}
            config = write_agent_config(
                directory / f"agent-{name}.toml",
                port,
                credential=secrets.token_urlsafe(24),
                instances=[{**entry, "mirror": self.cfg.name}],
            )
            agent = AgentProcess(config, port, None, None)
            agent.wait_ready()
            self.agents[name] = agent
            line = f'private = "{member.private}"'
            text = text.replace(line, f'{line}\nagent = "http://127.0.0.1:{port}"')
        path.write_text(text)
        self.cfg = load_config(path)

    def start(self, *names: str, wait: bool = True) -> None:
        names = names or tuple(m.name for m in self.cfg.members)
        for n in names:
            self.procs[n] = start_member(self.member_cfgs.get(n, self.cfg), n)
        if wait:
            wait_ready(self.cfg, {n: self.procs[n] for n in names})

    def close(self) -> None:
        super().close()
        self.links.close()
        for agent in self.agents.values():
            agent.stop()

    # -- network events ----------------------------------------------------------------------
    def cut(self, *names: str, mode: str = PARTITION):
        return self.links.cut(*names, mode=mode)

    def cut_between(self, a: str, b: str, mode: str = PARTITION):
        """Cut the links between two parties ("A", "B" or "arbiter") both ways."""
        names = [n for n in self.links.names() if set(n.split("->")) == {a, b}]
        return self.links.cut(*names, mode=mode)

    def isolate(self, member: str, mode: str = PARTITION):
        """Every link of a failover member, as one event."""
        names = [n for n in self.links.names() if member in n.split("->")]
        return self.links.cut(*names, mode=mode)

    # -- what the members say ------------------------------------------------------------------
    def view(self, member: str) -> tuple[str, str]:
        st = self.status(member)
        return st.get("failover_mode"), st.get("arbiter_connection")

    def exited(self, member: str) -> bool:
        proc = self.procs.get(member)
        return proc is not None and proc.poll() is not None

    def forget(self, member: str) -> None:
        """A member whose process ended by itself is started again with start()."""
        self.procs.pop(member).wait(5)

    def write(self, key: str, *members: str, timeout: float = 10.0) -> None:
        """A client write wherever the primary is, looked for among `members` (all without)."""
        addresses = [self.address(m) for m in members] or self.addresses()
        with Client(addresses, timeout=timeout) as c:
            c.set("USER", "Faults", (key,), key)
