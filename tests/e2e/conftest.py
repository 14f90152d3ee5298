"""Real hosts for the portal's end-to-end tests: one agent per host and instances that are not
members of anything yet, started as processes from a build plan (engine/cluster/plan.py) but not
built — the portal does the building, through its REST API and jobs.

`fresh_hosts(hosts, members)` starts them and returns a Site: the plan, each host's agent client
(the launcher's identity, which the tests use to look at the members directly), and the portal
configured with the plan's portal identity. Everything is stopped at teardown.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from engine.client.agent import AgentClient
from engine.cluster.hosts import make_pki, start_processes, wait_started
from engine.cluster.launcher import is_running, stop_pids
from engine.cluster.plan import Plan, load_plan
from engine.cluster.ports import free_ports
from tests.conftest import api_client_for
from tests.jobs.conftest import celery_worker  # noqa: F401 - the worker fixture

V1 = "/api/v1"


@dataclass
class Site:
    plan: Plan
    agents: dict[str, AgentClient]  # host name -> the launcher's client
    entries: list[dict]  # the processes

    def agent_of(self, member: str) -> AgentClient:
        return self.agents[self.plan.member(member).host]

    def entry(self, kind: str, name: str) -> dict:
        return next(e for e in self.entries if e["kind"] == kind and e["name"] == name)


def plan_text(hosts: dict[str, list[str]], members: dict[str, str], tls: bool) -> str:
    ports = iter(free_ports(len(hosts) + 2 * len(members)))
    lines = ["[mirror]", 'name = "UNUSED"', 'data_root = "var"', f"tls = {str(tls).lower()}", ""]
    for host, instances in hosts.items():
        lines += ["[[hosts]]", f'name = "{host}"', f"agent = {next(ports)}"]
        lines += [f"instances = {json.dumps(instances)}", ""]
    for name, mtype in members.items():
        lines += ["[[members]]", f'name = "{name}"', f'type = "{mtype}"']
        lines.append(f"superserver = {next(ports)}")
        if mtype == "failover":
            lines.append(f"private = {next(ports)}")
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def fresh_hosts(transactional_db, tmp_path, settings, monkeypatch):
    started: list[Site] = []

    def start(hosts: dict[str, list[str]], members: dict[str, str], tls: bool = True) -> Site:
        path = tmp_path / f"plan{len(started)}.toml"
        path.write_text(plan_text(hosts, members, tls))
        plan = load_plan(path)
        plan.root.mkdir(parents=True, exist_ok=True)
        identities = make_pki(plan)
        me = identities["client"]
        agents = {
            h.name: AgentClient(h.url, cert=me["cert"], key=me["key"], ca=me["ca"], timeout=30)
            for h in plan.hosts
        }
        site = Site(plan, agents, start_processes(plan, identities))
        started.append(site)
        wait_started(plan, site.entries, agents)
        # the portal's identity, for this process and for a worker process started after this
        portal = identities["portal"]
        settings.PORTAL_AGENT_TLS = portal
        for key, value in portal.items():
            monkeypatch.setenv(f"PORTAL_AGENT_TLS_{key.upper()}", value)
        return site

    yield start
    for site in started:
        for agent in site.agents.values():
            agent.close()
        stop_pids([e for e in site.entries if e["kind"] == "agent"])
        stop_pids([e for e in site.entries if e["kind"] == "instance"])
        assert not [e for e in site.entries if is_running(e)]


class Portal:
    """The REST API as a script uses it: POST an operation, wait for its job, read rows."""

    def __init__(self, client: APIClient):
        self.client = client

    def get(self, path: str, **params):
        response = self.client.get(V1 + path, params)
        assert response.status_code == 200, response.content
        return response.json()

    def post(self, path: str, body: dict | None = None, expect: int = 202) -> dict:
        response = self.client.post(V1 + path, body or {}, format="json")
        assert response.status_code == expect, response.content
        return response.json() if response.content else {}

    def wait(self, job: dict, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            current = self.get(f"/jobs/{job['id']}/")
            if current["state"] in ("succeeded", "failed", "cancelled"):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job['id']} still {current['state']}: {current['log']}")
            time.sleep(0.1)

    def run(self, path: str, body: dict | None = None, timeout: float = 120) -> dict:
        """POST an operation and wait for its job, which must succeed."""
        job = self.wait(self.post(path, body), timeout)
        log = "\n".join(line["message"] for line in job["log"])
        assert job["state"] == "succeeded", f"{job['kind']}: {job['error']}\n{log}"
        return job

    def one(self, path: str, **params) -> dict:
        rows = self.get(path, **params)["results"]
        assert len(rows) == 1, rows
        return rows[0]


@pytest.fixture
def portal(admin_user, fresh_hosts):
    return Portal(api_client_for(admin_user))


@pytest.fixture
def worker(request, fresh_hosts):
    """The Celery worker, started once the hosts (and so the portal's identity) exist: call it."""

    def start():
        return request.getfixturevalue("celery_worker")

    return start
