"""The agent's role checks for load balancers (engine/agent/health.py, guide §3.7): 200 only
where the role fits, 503 with the reason otherwise, on a real mirror and a real agent."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.engine.agent_fixtures import (  # noqa: F401
    instance_entries,
    start_agent_fixture,
    started_agent,
)
from tests.engine.cluster_fixtures import started_cluster, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A primary, B backup, C DR async, one agent for all three; the tests that stop a member
    start it again."""
    root = tmp_path_factory.mktemp("health")
    for cluster in started_cluster(root / "mirror", types=("failover", "failover", "dr")):
        for agent in started_agent(root / "agent", instances=instance_entries(cluster)):
            yield cluster, agent


def check(agent, path: str, credential: str | None = "agent") -> tuple[int, dict]:
    """GET `path` as a load balancer would: the status code and the JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
    headers = {} if credential is None else {"Authorization": f"Bearer {agent.credential}"}
    try:
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def ready(site):
    cluster, agent = site
    cluster.wait_backup_active()
    cluster.wait_status("C", "status", "Connected")
    return cluster, agent


@pytest.mark.parametrize(
    ("path", "healthy"),
    [
        ("/v1/health/primary?instance=A", True),
        ("/v1/health/primary?instance=B", False),
        ("/v1/health/primary?instance=C", False),
        ("/v1/health/backup?instance=B", True),
        ("/v1/health/backup?instance=B&active=1", True),
        ("/v1/health/backup?instance=A", False),
        ("/v1/health/async?instance=C", True),
        ("/v1/health/async?instance=C&max_lag_s=30", True),
        ("/v1/health/async?instance=B", False),
    ],
)
def test_each_member_answers_200_only_for_its_own_role(ready, path, healthy):
    _, agent = ready
    status, body = check(agent, path)
    assert (status, body["healthy"]) == ((200, True) if healthy else (503, False)), body
    if not healthy:
        assert body["reason"]


def test_a_stopped_backup_is_not_a_backup_and_a_down_instance_is_a_503_not_an_error(ready):
    cluster, agent = ready
    cluster.pause("B")
    try:
        wait_for(
            lambda: check(agent, "/v1/health/backup?instance=B&active=1")[0] == 503,
            15,
            "B's check to fail",
        )
        # the primary that lost its Active backup is In Trouble for 2 x QoS: no writes there
        wait_for(
            lambda: (
                check(agent, "/v1/health/primary?instance=A")[1]
                .get("reason", "")
                .startswith("the primary is In Trouble")
            ),
            15,
            "A's check to say In Trouble",
        )
        wait_for(lambda: check(agent, "/v1/health/primary?instance=A")[0] == 200, 20, "A again")
    finally:
        cluster.resume("B")
    cluster.kill9("C")
    try:
        status, body = check(agent, "/v1/health/async?instance=C")
        assert status == 503 and body["healthy"] is False and body["reason"]
    finally:
        cluster.start("C")
    wait_for(lambda: check(agent, "/v1/health/async?instance=C")[0] == 200, 20, "C back")
    wait_for(lambda: check(agent, "/v1/health/primary?instance=A")[0] == 200, 20, "A Primary")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/health/primary", 400),  # three instances: which one?
        ("/v1/health/primary?instance=NOPE", 404),
        ("/v1/health/leader?instance=A", 404),
        ("/v1/health/async?instance=C&max_lag_s=soon", 400),
        ("/v1/health/async?instance=C&max_lag_s=nan", 400),
        ("/v1/health/async?instance=C&max_lag_s=-1", 400),
        ("/v1/health/backup?instance=B&active=yes", 400),
        ("/v1/health/primary?instance=A&active=1", 400),
        ("/v1/health/primary?instance=A&max_lag_s=5", 400),
    ],
)
def test_a_misconfigured_check_is_an_error_never_a_healthy_server(ready, path, status):
    _, agent = ready
    got, body = check(agent, path)
    assert got == status and body["error"]["message"], body


def test_a_check_without_the_credential_is_refused(ready):
    _, agent = ready
    status, body = check(agent, "/v1/health/primary?instance=A", credential=None)
    assert status == 401 and body["error"]["code"] == "credential_required"
