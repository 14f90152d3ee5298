"""The services pass of `make test` really runs on PostgreSQL and Redis (and the embedded pass on
SQLite and the in-process broker): the job tests are only worth running twice if they do."""

import os
import subprocess

import pytest
import redis
from django.conf import settings
from django.db import connection

from tasks.models import Job
from tasks.services import start_job
from tests import factories
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.jobs.conftest import wait_until_final

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(120)]


def test_jobs_run_on_the_database_and_broker_the_environment_names(
    celery_worker, start_agent, admin_user
):
    services_pass = bool(os.environ.get("REDIS_URL"))
    if services_pass:
        assert connection.vendor == "postgresql"
        assert os.environ["DATABASE_URL"].startswith("postgresql://")
        assert settings.CELERY_BROKER_URL.startswith("redis://")
        assert redis.Redis.from_url(settings.CELERY_BROKER_URL).ping()
        assert isinstance(celery_worker, subprocess.Popen)  # a worker process of its own
    else:
        assert connection.vendor == "sqlite"
        assert settings.CELERY_BROKER_URL == "memory://"
    agent = start_agent(credential="backend-agent-secret-1")
    host = factories.host(address="127.0.0.1", agent_port=agent.port, credential=agent.credential)

    job = wait_until_final(start_job(admin_user, "check_host", host))

    assert job.state == Job.SUCCEEDED, job.error
    if services_pass:  # the worker process wrote the outcome through PostgreSQL
        assert celery_worker.poll() is None
        assert Job.objects.filter(pk=job.pk, state=Job.SUCCEEDED, attempts=1).exists()
