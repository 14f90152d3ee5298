import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker: on the embedded default a thread of this process (in-memory broker),
    with REDIS_URL set a separate `celery worker` process on Redis, sharing the test database."""
    if not settings.REDIS_URL:
        from portal.embedded_worker import start_embedded_worker

        yield start_embedded_worker(concurrency=2)
        return
    db = connection.settings_dict
    env = dict(
        os.environ,
        DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "2",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
            "--hostname",
            f"test-{os.getpid()}@localhost",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def wait_until_final(job, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_final:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} still {job.state} after {timeout_s} s: {job.log}")
