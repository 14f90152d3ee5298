"""The first real job, end to end through a real Celery worker: queued, running, then an
outcome with progress and log lines on the row — against real engine agents where it matters."""

import pytest

from tasks.models import Job
from tasks.services import start_job
from tasks.tasks import run_job
from tests import factories
from tests.engine.agent_fixtures import pki_fixture, start_agent_fixture  # noqa: F401
from tests.jobs.conftest import wait_until_final

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(120)]


def test_check_host_records_reachability_round_trip_and_what_runs_there(
    celery_worker, start_agent, admin_user
):
    agent = start_agent(credential="agent-secret-0000000009")
    host = factories.host(
        address="127.0.0.1", agent_port=agent.port, credential="agent-secret-0000000009"
    )
    job = start_job(admin_user, "check_host", host)
    assert job.state == Job.QUEUED

    job = wait_until_final(job)

    assert job.state == Job.SUCCEEDED, job.error
    assert job.progress == 100
    assert job.started_at >= job.created_at and job.finished_at >= job.started_at
    assert any("Reachable" in line["message"] for line in job.log)
    host.refresh_from_db()
    assert host.reachable is True
    assert host.rtt_ms is not None and host.rtt_ms > 0
    assert job.result["rtt_ms"] == pytest.approx(host.rtt_ms, abs=0.001)
    assert job.result["instances"] == [] and host.instances.count() == 0


def test_without_a_way_to_authenticate_check_host_reports_reachability_only(
    celery_worker, start_agent, admin_user
):
    agent = start_agent(credential="agent-secret-0000000010")
    host = factories.host(address="127.0.0.1", agent_port=agent.port)  # no credential, no TLS

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["agent"] is None and job.result["rtt_ms"] > 0
    assert "reachability only" in job.log[-1]["message"]


def test_check_host_fails_with_a_clear_reason_when_nothing_listens(
    celery_worker, closed_port, admin_user
):
    host = factories.host(address="127.0.0.1", agent_port=closed_port)

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.FAILED
    assert "connection refused" in job.error
    host.refresh_from_db()
    assert host.reachable is False
    assert "connection refused" in host.last_check_error


def test_a_job_whose_host_is_gone_fails_instead_of_hanging(celery_worker):
    job = Job.objects.create(kind="check_host", target_type="host", target_id="999999")

    run_job.delay(job.pk)
    job = wait_until_final(job)

    assert job.state == Job.FAILED
    assert "no longer exists" in job.error


def test_check_host_calls_a_real_agent_with_the_hosts_credential(
    celery_worker, start_agent, admin_user
):
    agent = start_agent(credential="agent-secret-0000000001")
    host = factories.host(
        address="127.0.0.1", agent_port=agent.port, credential="agent-secret-0000000001"
    )

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["agent"]["auth"] == "credential"
    assert job.result["agent"]["version"]
    assert any("Agent" in line["message"] and "answered" in line["message"] for line in job.log)


def test_check_host_fails_clearly_when_the_agent_refuses_the_credential(
    celery_worker, start_agent, admin_user
):
    agent = start_agent(credential="the-right-credential-1")
    host = factories.host(
        address="127.0.0.1", agent_port=agent.port, credential="a-wrong-credential-22"
    )

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.FAILED
    assert "did not accept the portal" in job.error and "401" in job.error
    host.refresh_from_db()
    assert host.reachable is True and "401" in host.last_check_error


@pytest.fixture
def portal_tls_identity(pki, settings, monkeypatch):
    """The portal presents the test CA's "portal" certificate to agents (in this process and in
    a worker process started after this fixture)."""
    identity = {
        "cert": str(pki.portal.cert),
        "key": str(pki.portal.key),
        "ca": str(pki.ca.cert_path),
    }
    for key, value in identity.items():
        monkeypatch.setenv(f"PORTAL_AGENT_TLS_{key.upper()}", value)
    settings.PORTAL_AGENT_TLS = identity
    return identity


def test_check_host_speaks_mutual_tls_to_an_agent_that_requires_it(
    portal_tls_identity, celery_worker, start_agent, pki, admin_user
):
    agent = start_agent(pki=pki)
    host = factories.host(address="127.0.0.1", agent_port=agent.port)

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["agent"]["auth"] == "mutual-tls"
    assert job.result["agent"]["certificate"]["not_after"]
