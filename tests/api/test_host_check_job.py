"""POST /hosts/{id}/check/ starts a real job: a real Celery worker picks it up, and the caller
follows it through GET /jobs/{id}/ to its outcome."""

import time

import pytest

from accounts.services import create_token
from tests import factories
from tests.api.conftest import bearer
from tests.conftest import make_user
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.jobs.conftest import celery_worker, closed_port  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def follow(client, job_id, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}/").json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s} s")


@pytest.fixture
def operator_client(transactional_db):
    _, secret = create_token(make_user("otto-operator", "operator"), name="ops script")
    return bearer(secret)


def test_an_operator_checks_a_host_and_reads_the_outcome_from_the_jobs_endpoint(
    celery_worker,  # noqa: F811
    start_agent,
    operator_client,
):
    agent = start_agent(credential="api-agent-secret-00001")
    host = factories.host(address="127.0.0.1", agent_port=agent.port, credential=agent.credential)

    started = operator_client.post(f"/api/v1/hosts/{host.pk}/check/")

    assert started.status_code == 202
    assert started.json()["state"] == "queued"
    assert started.json()["requested_by_name"] == "otto-operator"
    job = follow(operator_client, started.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["progress"] == 100 and job["log"]
    assert job["result"]["rtt_ms"] > 0 and job["result"]["agent"]["auth"] == "credential"
    checked = operator_client.get(f"/api/v1/hosts/{host.pk}/").json()
    assert checked["reachable"] is True and checked["rtt_ms"] > 0


def test_an_unreachable_host_fails_the_job_with_a_reason(
    celery_worker,  # noqa: F811
    closed_port,  # noqa: F811
    operator_client,
):
    host = factories.host(address="127.0.0.1", agent_port=closed_port)

    job = follow(
        operator_client, operator_client.post(f"/api/v1/hosts/{host.pk}/check/").json()["id"]
    )

    assert job["state"] == "failed"
    assert "connection refused" in job["error"]
    checked = operator_client.get(f"/api/v1/hosts/{host.pk}/").json()
    assert checked["reachable"] is False and "connection refused" in checked["last_check_error"]
