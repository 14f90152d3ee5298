"""A job reaches an agent with the credential the portal keeps sealed (docs/hardening.md), and a
credential no key opens fails the job with the reason, not with a crash."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from members.models import Host
from portal import crypto
from tasks.models import Job
from tasks.services import start_job
from tests import factories
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.jobs.conftest import wait_until_final

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(120)]


def stored(host) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credential FROM members_host WHERE id = %s", [host.pk])
        return cursor.fetchone()[0]


def test_a_job_opens_the_sealed_credential_and_the_agent_accepts_it(
    celery_worker, start_agent, admin_user
):
    agent = start_agent(credential="sealed-agent-secret-0001")
    host = factories.host(address="127.0.0.1", agent_port=agent.port, credential=agent.credential)
    assert agent.credential not in stored(host)

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.SUCCEEDED, job.error
    assert job.result["agent"]["auth"] == "credential"


def test_a_credential_no_key_opens_fails_the_job_with_the_reason(
    celery_worker, start_agent, admin_user
):
    agent = start_agent(credential="sealed-agent-secret-0002")
    host = factories.host(
        name="lost-key", address="127.0.0.1", agent_port=agent.port, credential=agent.credential
    )
    # sealed with a key the portal (and its worker, wherever it runs) never had
    foreign = Fernet(Fernet.generate_key()).encrypt(agent.credential.encode()).decode()
    Host.objects.filter(pk=host.pk).update(credential=crypto.Sealed(crypto.PREFIX + foreign))

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.FAILED
    assert job.error.startswith("Host lost-key: its stored credential cannot be decrypted")
    assert "Unexpected error" not in job.error and "Traceback" not in job.error
