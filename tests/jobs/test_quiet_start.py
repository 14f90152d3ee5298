"""`make run`'s portal starts quietly: importing portal.asgi, as uvicorn does, starts the
embedded Celery worker, and every line logged until that worker is connected to its in-memory
broker names its level, INFO: nothing that reads as a warning or an error without being one
(kombu's "No hostname was supplied", unlevelled lines on stderr)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]

# What uvicorn imports (Django, the middleware, the URLconf, the embedded worker), then a wait
# for the worker's `worker_ready`, sent once it is connected and has logged that it is ready;
# then out at once: the start-up is what is checked, not a shutdown.
START = """
import os, sys, threading

from celery import signals

ready = threading.Event()
signals.worker_ready.connect(lambda **kwargs: ready.set(), weak=False)
import portal.asgi  # noqa: E402

if not ready.wait(30):
    sys.exit("the embedded worker was not ready within 30 s")
sys.stderr.flush()
os._exit(0)
"""


def test_the_embedded_worker_starts_with_info_lines_only(tmp_path):
    (tmp_path / "static").mkdir()  # as `make run`'s collectstatic leaves it
    env = dict(os.environ, PORTAL_VAR_DIR=str(tmp_path), PORTAL_LOG_LEVEL="INFO")
    for name in ("DATABASE_URL", "REDIS_URL", "PORTAL_EMBEDDED_WORKER"):  # the embedded default
        env.pop(name, None)

    started = subprocess.run(
        [sys.executable, "-c", START], cwd=ROOT, env=env, capture_output=True, text=True, timeout=45
    )

    assert started.returncode == 0, started.stderr
    lines = started.stderr.splitlines()
    assert any("Connected to memory://" in line for line in lines), started.stderr
    assert "INFO portal.embedded_worker: Celery worker embedded@portal ready" in started.stderr
    assert all(line.startswith("INFO ") for line in lines), started.stderr
