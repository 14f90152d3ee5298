"""Agents as real processes for the engine tests: a throwaway PKI, config files, processes.

    from tests.engine.agent_fixtures import pki_fixture, start_agent_fixture  # noqa: F401
and take `pki` / `start_agent` as test arguments.

`pki` (module-scoped) makes a test CA, a second unrelated CA and certificates: the agent's,
an allowed client's ("portal"), one from the other CA ("intruder"), an expired one
("expired") and a valid one whose DN is not on the allow list ("stranger").
`start_agent(...)` writes an agent config and starts `python -m engine agent` on a free
loopback port; every agent is stopped at teardown.
"""

from __future__ import annotations

import datetime as dt
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.client.agent import AgentClient
from engine.wire.tls import CA, CertPaths, make_ca, make_cert
from tests.engine.cluster_fixtures import free_ports, wait_for

REPO = Path(__file__).resolve().parents[2]
PORTAL_DN = "CN=portal,O=Mirror Portal"


@dataclass
class PKI:
    directory: Path
    ca: CA
    other_ca: CA
    agent: CertPaths
    portal: CertPaths
    intruder: CertPaths
    expired: CertPaths
    stranger: CertPaths


@pytest.fixture(scope="module", name="pki")
def pki_fixture(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    other = make_ca(d, name="Some other CA", prefix="other-ca")
    now = dt.datetime.now(dt.UTC)
    return PKI(
        directory=d,
        ca=ca,
        other_ca=other,
        agent=make_cert(ca, d, "agent-host1"),
        portal=make_cert(ca, d, "portal"),
        intruder=make_cert(other, d, "portal", name="intruder"),
        expired=make_cert(
            ca,
            d,
            "portal",
            name="expired",
            not_before=now - dt.timedelta(days=10),
            not_after=now - dt.timedelta(days=1),
        ),
        stranger=make_cert(ca, d, "stranger"),
    )


def _toml(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


def write_agent_config(
    path: Path,
    port: int,
    *,
    pki: PKI | None = None,
    credential: str | None = None,
    allowed_dns=(PORTAL_DN,),
    instances=(),
    agent_extra: dict | None = None,
) -> Path:
    """An agent config: mutual TLS when pki is given, else the bearer credential."""
    lines = ["[agent]", f'listen = "127.0.0.1:{port}"', "probe_timeout_ms = 1500"]
    for k, v in (agent_extra or {}).items():
        lines.append(f"{k} = {_toml(v)}")
    if pki is not None:
        lines += [
            "",
            "[agent.tls]",
            f"cert = {_toml(str(pki.agent.cert))}",
            f"key = {_toml(str(pki.agent.key))}",
            f"ca = {_toml(str(pki.ca.cert_path))}",
            f"allowed_dns = {_toml(list(allowed_dns))}",
        ]
    if credential is not None:
        lines += ["", "[agent.auth]", f"credential = {_toml(credential)}"]
    for inst in instances:
        lines += ["", "[[instances]]"]
        lines += [f"{k} = {_toml(str(v))}" for k, v in inst.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def instance_entries(cluster) -> list[dict]:
    """[[instances]] entries of an agent config for every member of a test Cluster."""
    return [
        {
            "name": m.name,
            "superserver": str(m.superserver),
            "data_dir": str(m.data_dir),
            "mirror": cluster.cfg.name,
        }
        for m in cluster.cfg.members
    ]


class AgentProcess:
    def __init__(self, config: Path, port: int, pki: PKI | None, credential: str | None):
        self.config = config
        self.port = port
        self.pki = pki
        self.credential = credential
        self.log_path = config.with_suffix(".log")
        self.log_start = 0
        self._spawn()

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "agent", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(REPO),
            )

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    def client(self, who: str | None = "portal", credential: str | None = None) -> AgentClient:
        """A client presenting pki certificate `who` (None: no certificate), or a credential."""
        if self.pki is None:
            return AgentClient(self.url, credential=credential, timeout=10)
        paths = getattr(self.pki, who) if who else None
        return AgentClient(
            self.url,
            cert=paths.cert if paths else None,
            key=paths.key if paths else None,
            ca=self.pki.ca.cert_path,
            timeout=10,
        )

    def log(self) -> str:
        """The log of the current process (a restart starts a new one)."""
        return self.log_path.read_text(errors="replace")[self.log_start :]

    def log_from_here(self) -> None:
        """log() starts here from now on: a module's shared agent, for each test's own lines."""
        self.log_start = len(self.log_path.read_text(errors="replace"))

    def restart(self) -> None:
        """Stop the agent and start it again with the same configuration and port."""
        self.stop()
        self.log_start = len(self.log_path.read_text(errors="replace"))
        self._spawn()
        self.wait_ready()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")
            return "agent listening" in self.log()

        wait_for(ready, 20, "the agent to listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(name="start_agent")
def start_agent_fixture(tmp_path):
    """Factory: start_agent(pki=PKI | None, credential=None, instances=[...], ...) -> AgentProcess.

    Without pki the agent uses a fresh random credential (agent.credential) unless one is given.
    """
    started: list[AgentProcess] = []

    def factory(pki: PKI | None = None, credential: str | None = None, **kw) -> AgentProcess:
        if pki is None and credential is None:
            credential = secrets.token_urlsafe(24)
        (port,) = free_ports(1)
        config = write_agent_config(
            tmp_path / f"agent{len(started)}.toml", port, pki=pki, credential=credential, **kw
        )
        agent = AgentProcess(config, port, pki, credential)
        started.append(agent)
        agent.wait_ready()
        return agent

    yield factory
    for agent in started:
        agent.stop()


def started_agent(directory: Path, pki: PKI | None = None, credential: str | None = None, **kw):
    """Generator for module-scoped fixtures: yields an agent started as start_agent(...) starts
    one, then stops it."""
    if pki is None and credential is None:
        credential = secrets.token_urlsafe(24)
    directory.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    config = write_agent_config(
        directory / "agent.toml", port, pki=pki, credential=credential, **kw
    )
    agent = AgentProcess(config, port, pki, credential)
    try:
        agent.wait_ready()
        yield agent
    finally:
        agent.stop()


class StreamFollower:
    """An agent's status stream followed on a background thread (engine StatusStream),
    every event handed over through a queue so a test can wait for one with a deadline."""

    def __init__(self, client: AgentClient, agent: AgentProcess | None = None, **kw):
        self.client = client
        self.agent = agent
        self.stream = client.status_stream(**kw)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.stream.events():
                self.events.put(event)
        except Exception as exc:  # handed to the test, which raises it
            self.events.put(exc)

    def next(self, timeout: float = 15.0) -> dict:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            recent = "\n".join(str(e)[:300] for e in self.seen[-5:])
            log = self.agent.log()[-3000:] if self.agent else ""
            raise AssertionError(
                f"no status stream event within {timeout:.1f} s (resyncs: "
                f"{self.stream.resyncs}); last events:\n{recent}\nagent log:\n{log}"
            ) from None
        if isinstance(item, Exception):
            raise item
        self.seen.append(item)
        return item

    def until(self, predicate, timeout: float = 15.0, what: str = "an event") -> dict:
        """Read events until one satisfies predicate; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            try:
                event = self.next(left)
            except AssertionError as exc:
                raise AssertionError(f"waiting for {what}: {exc}") from None
            if predicate(event):
                return event

    def until_state(self, predicate, timeout: float = 15.0, what: str = "a state") -> None:
        """Read events until predicate(stream) holds for the followed state (instances /
        agent), then take every event already delivered, so `seen` holds the ones that
        led there (the state is updated on the reading thread, a little ahead)."""
        deadline = time.monotonic() + timeout
        while not predicate(self.stream):
            left = deadline - time.monotonic()
            try:
                self.next(max(left, 0.001))
            except AssertionError as exc:
                raise AssertionError(f"waiting for {what}: {exc}") from None
        while not self.events.empty():
            self.next(0.1)

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)
        self.client.close()


@pytest.fixture(name="follow")
def follow_fixture():
    """Factory: follow(agent_process, who="portal", **StatusStream kw) -> StreamFollower."""
    followers: list[StreamFollower] = []

    def factory(agent: AgentProcess, who: str | None = "portal", **kw) -> StreamFollower:
        follower = StreamFollower(agent.client(who, credential=agent.credential), agent, **kw)
        followers.append(follower)
        return follower

    yield factory
    for f in followers:
        f.close()
