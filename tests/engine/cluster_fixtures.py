"""Real multi-process mirrors for the engine tests: free ports (engine/cluster/ports.py, shared
with bench/), config files, member processes; and for build plans (`cluster build`), the
command line, the agents it started and the logs it left.

Import the fixtures into a test module with
    from tests.engine.cluster_fixtures import make_cluster_fixture  # noqa: F401
and take `make_cluster` as a test argument: make_cluster(...) returns a running Cluster;
every process is killed and every directory removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.client.agent import AgentClient
from engine.client.app import Client, EngineError
from engine.cluster.launcher import start_member, wait_ready
from engine.cluster.ports import free_ports
from engine.member.config import load_config
from engine.wire.admin_token import read_token
from engine.wire.mirror_secret import new_secret
from engine.wire.tls import superserver_client_context

DEFAULT_TYPES = ("failover", "failover", "dr", "ro_reporting")
ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 15.0, what: str = "condition", interval: float = 0.02):
    """Poll predicate until it returns a truthy value; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (EngineError, OSError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" ({last_exc})" if last_exc else "")
    )


def write_config(
    directory: Path,
    types=DEFAULT_TYPES,
    databases=("USER", "APP"),
    mirror: dict | None = None,
    member_extra: dict | None = None,
    tls: bool = False,
    secret: bool = True,
) -> Path:
    """A mirror config with one member per entry of `types` on free loopback ports.

    Members are named A, B, C, ... in order; failover members get a private address.
    tls=True makes a throwaway CA and a certificate per member (CN = member name); without it
    the members share a mirror secret unless secret=False.
    """
    ports = free_ports(2 * len(types))
    settings = {"qos_timeout_ms": 2000}
    member_extra = {k: dict(v) for k, v in (member_extra or {}).items()}
    if tls:
        from engine.wire.tls import make_ca, make_cert

        ca = make_ca(directory / "certs")
        settings.update(tls=True, tls_ca=str(ca.cert_path))
        for i in range(len(types)):
            name = chr(ord("A") + i)
            paths = make_cert(ca, directory / "certs", name)
            member_extra.setdefault(name, {}).update(
                tls_cert=str(paths.cert), tls_key=str(paths.key)
            )
    elif secret:  # without TLS the members prove themselves with the mirror secret
        (directory / "secret").write_text(new_secret() + "\n")
        settings["secret_file"] = str(directory / "secret")
    settings.update(mirror or {})
    lines = ["[mirror]", 'name = "TEST"', f"databases = {list(databases)!r}".replace("'", '"')]
    lines.append(f'data_root = "{directory}"')
    for k, v in settings.items():
        lines.append(f"{k} = {_toml(v)}")
    for i, mtype in enumerate(types):
        name = chr(ord("A") + i)
        lines += ["", "[[members]]", f'name = "{name}"', f'type = "{mtype}"']
        lines.append(f'superserver = "127.0.0.1:{ports[2 * i]}"')
        if mtype == "failover":
            lines.append(f'private = "127.0.0.1:{ports[2 * i + 1]}"')
        for k, v in member_extra.get(name, {}).items():
            lines.append(f"{k} = {_toml(v)}")
    path = directory / "mirror.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return str(v)


class Cluster:
    def __init__(self, path: Path):
        self.path = path
        self.cfg = load_config(path)
        self.procs: dict[str, subprocess.Popen] = {}

    # -- processes ------------------------------------------------------------
    def start(self, *names: str, wait: bool = True) -> None:
        names = names or tuple(m.name for m in self.cfg.members)
        for n in names:
            self.procs[n] = start_member(self.cfg, n)
        if wait:
            wait_ready(self.cfg, {n: self.procs[n] for n in names})

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def pause(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGCONT)

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(10)

    # -- access -----------------------------------------------------------------
    def address(self, name: str) -> str:
        return str(self.cfg.member(name).superserver)

    def addresses(self) -> list[str]:
        return [str(m.superserver) for m in self.cfg.members]

    def client(self, name: str | None = None, **kw) -> Client:
        """A client on the primary (default), or pinned to member `name`; over TLS when the
        superservers speak it (a TLS mirror), as the host's tools reach them."""
        member = self.cfg.member(name) if name is not None else self.cfg.members[0]
        kw.setdefault("ssl", superserver_client_context(member.data_dir))
        if name is None:
            return Client(self.addresses(), **kw)
        # what an administrator of that member's host reads (engine/member/admin_auth.py)
        kw.setdefault("admin_token", read_token(self.cfg.member(name).data_dir))
        return Client([self.address(name)], follow_primary=False, **kw)

    def role(self, name: str) -> str | None:
        """The role a member says it has now (primary, backup, async), None if it does not
        answer."""
        try:
            with self.client(name, timeout=2, retries=0) as c:
                return c.info()["role"]
        except (EngineError, OSError, TimeoutError):
            return None

    def status(self, name: str) -> dict:
        with self.client(name) as c:
            return c.status()

    def log(self, name: str) -> str:
        p = Path(self.cfg.member(name).data_dir) / "instance.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def digests(self, name: str, databases=None) -> dict:
        dbs = databases or self.cfg.member(name).databases
        with self.client(name) as c:
            return {db: c.admin("digest", db) for db in dbs}

    def wait_status(self, name: str, key: str, value, timeout: float = 15.0) -> dict:
        def check():
            st = self.status(name)
            return st if st.get(key) == value else None

        return wait_for(check, timeout, f"{name} {key} == {value!r}")

    def wait_backup_active(self, backup: str = "B", primary: str = "A", timeout: float = 15.0):
        """Wait until the primary reports the backup Active (asks the primary only, so the
        backup's own status sample is left untouched)."""

        def active():
            rows = {r["member"]: r for r in self.status(primary).get("members", [])}
            return rows.get(backup, {}).get("journal_transfer") == "Active"

        wait_for(active, timeout, f"backup {backup} Active on {primary}")

    def wait_converged(self, name: str, primary: str = "A", timeout: float = 20.0) -> dict:
        dbs = self.cfg.member(name).databases
        want = self.digests(primary, dbs)
        wait_for(
            lambda: self.digests(name, dbs) == want, timeout, f"{name} to converge with {primary}"
        )
        return want


@pytest.fixture(name="make_cluster")
def make_cluster_fixture(tmp_path):
    """Factory: make_cluster(types=..., mirror={...}, start=True) -> Cluster (torn down after)."""
    made: list[Cluster] = []

    def factory(types=DEFAULT_TYPES, start: bool = True, **kw) -> Cluster:
        directory = tmp_path / f"cluster{len(made)}"
        directory.mkdir()
        cluster = Cluster(write_config(directory, types, **kw))
        made.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield factory
    for c in made:
        c.close()


def started_cluster(directory: Path, types=DEFAULT_TYPES, **kw):
    """Generator for module-scoped fixtures: yields a started Cluster, then tears it down."""
    directory.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(write_config(directory, types, **kw))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- build plans (`python -m engine cluster build`) ----------------------------------------


def cluster_cli(*args, timeout=180) -> subprocess.CompletedProcess:
    """`python -m engine cluster ARGS` as a process of its own, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "engine", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def log_tails(root: Path, lines: int = 15) -> str:
    """The last lines of every agent and instance log a build left under `root` (its
    data_root), for a failed assertion's message."""
    out = []
    for log in sorted([*root.glob("*/agent.log"), *root.glob("*/*/instance.log")]):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"\n--- {log.relative_to(root)}\n" + "\n".join(tail))
    return "".join(out)


def agent_for(state: dict, host: str, who: str = "client") -> AgentClient:
    """A client of `host`'s agent with one of the identities the build made ("client": the
    launcher's, "portal": the portal's), from the build's state file."""
    ident = state[who]
    return AgentClient(
        state["agents"][host], cert=ident["cert"], key=ident["key"], ca=ident["ca"], timeout=10
    )
