"""Instances configured through the agent's path: each starts as a non-member
(`python -m engine instance --data-dir`), then creates or joins a mirror."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.client.app import Client
from engine.wire import tls
from engine.wire.admin_token import read_token
from tests.engine.cluster_fixtures import free_ports, wait_for

ROOT = Path(__file__).resolve().parents[2]


# superserver address -> instance, so that a join can be handed its mirror's secret
BY_ADDRESS: dict[str, InstanceProcess] = {}


class InstanceProcess:
    """One instance process and its addresses."""

    def __init__(self, root: Path, name: str, superserver: int, private: int):
        self.name = name
        self.data_dir = root / name
        self.superserver = f"127.0.0.1:{superserver}"
        self.private = f"127.0.0.1:{private}"
        self.proc: subprocess.Popen | None = None
        BY_ADDRESS[self.superserver] = self

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "instance.log", "ab")  # noqa: SIM115 (the child keeps it)
        args = ["--data-dir", str(self.data_dir), "--name", self.name]
        args += ["--superserver", self.superserver]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "instance", *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_answering()

    def wait_answering(self, timeout: float = 15.0) -> dict:
        def info():
            try:
                with self.client(timeout=1) as c:
                    return c.status()
            except Exception:
                return None

        return wait_for(info, timeout, f"{self.name} answering")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def client(self, timeout: float = 10.0) -> Client:
        return Client(
            [self.superserver],
            follow_primary=False,
            timeout=timeout,
            retries=0,
            admin_token=read_token(self.data_dir),  # as an administrator of its host reads it
            ssl=tls.superserver_client_context(self.data_dir),  # and how to reach it, beside it
        )

    def admin(self, action: str, arg=None, timeout: float = 10.0):
        if action == "mirror_join" and isinstance(arg, dict) and "secret" not in arg:
            arg = {**arg, "secret": secret_at(arg.get("address"), arg.get("mirror"))}
        with self.client(timeout) as c:
            return c.admin(action, arg)

    def status(self) -> dict:
        with self.client() as c:
            return c.status()

    def status_of(self, mirror: str) -> dict:
        """One mirror's status on an instance in several mirrors."""
        with self.client() as c:
            return c.status(mirror)

    def after_restart(self, member: str | None = None) -> dict:
        """Wait until the process answers as a mirror member (after create/join)."""

        def member_status():
            try:
                st = self.status()
            except Exception:
                return None
            return st if st.get("mirror") else None

        return wait_for(member_status, 20, f"{self.name} restarted as a member")

    def wait_state(self, status: str, timeout: float = 20.0) -> dict:
        def check():
            try:
                st = self.status()
            except Exception:
                return None
            return st if st.get("status") == status else None

        return wait_for(check, timeout, f"{self.name} status {status}")

    def log(self) -> str:
        return (self.data_dir / "instance.log").read_text(errors="replace")

    def set_tls(self, certs: Path, cn: str | None = None) -> dict:
        return self.admin(
            "set_tls",
            {
                "cert": str(certs / f"{cn or self.name}.pem"),
                "key": str(certs / f"{cn or self.name}-key.pem"),
                "ca": str(certs / "ca.pem"),
            },
        )


def secret_at(address, mirror) -> str | None:
    """The mirror secret of the member at `address`, read from its mirror.json as an
    administrator of that host would read it to hand to a joining instance (what the agent
    does with GET .../mirror/secret).  None where there is none to read: the join is then
    refused, or needs none (TLS)."""
    host = BY_ADDRESS.get(address)
    if host is None:
        return None
    for path in (
        host.data_dir / "mirror.json",
        host.data_dir / "mirrors" / str(mirror) / "mirror.json",
    ):
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("name") == mirror:
                return data.get("secret")
    return None


class Hosts:
    def __init__(self, root: Path):
        self.root = root
        self.certs = root / "certs"
        self.ca: tls.CA | None = None
        self.hosts: dict[str, InstanceProcess] = {}
        self.promised: set[int] = set()

    def make_ca(self) -> tls.CA:
        self.ca = tls.make_ca(self.certs)
        return self.ca

    def cert(self, cn: str, **kw) -> tls.CertPaths:
        return tls.make_cert(self.ca, self.certs, cn, **kw)

    def ports(self, n: int) -> list[int]:
        """Free ports never handed out before here: a host binds its private port only
        once it is in a mirror, so a port free now may already be promised to it."""
        while True:
            ports = free_ports(n)
            if not self.promised.intersection(ports):
                self.promised.update(ports)
                return ports

    def add(self, name: str, tls_files: bool = False) -> InstanceProcess:
        superserver, private = self.ports(2)
        host = InstanceProcess(self.root, name, superserver, private)
        self.hosts[name] = host
        host.start()
        if tls_files:
            self.cert(name)
            host.set_tls(self.certs)
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()


@pytest.fixture
def hosts(tmp_path):
    h = Hosts(tmp_path)
    yield h
    h.close()
