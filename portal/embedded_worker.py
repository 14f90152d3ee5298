"""A real Celery worker running on a thread of the portal process.

Used on the embedded default, where the broker is in memory and so only reachable from inside
this process. Jobs still go through Celery's queue and run off the request thread.
"""

import logging
import threading

from celery import signals
from celery.worker import WorkController

from portal.celery import app

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_worker: WorkController | None = None


class EmbeddedWorker(WorkController):
    """WorkController (not celery.apps.worker.Worker) installs no signal handlers, which only
    the main thread may do; it also neither says nor signals that it is ready, which this does
    as `celery worker` would: one INFO line, then `worker_ready`."""

    def on_consumer_ready(self, consumer):
        logger.info(
            "Celery worker %s ready in this process (%d threads)", self.hostname, self.concurrency
        )
        signals.worker_ready.send(sender=consumer)


def start_embedded_worker(concurrency: int = 2) -> WorkController:
    """Start the worker once; later calls return the running one."""
    global _worker
    with _lock:
        if _worker is not None:
            return _worker
        worker = EmbeddedWorker(
            app=app,
            pool_cls="threads",
            concurrency=concurrency,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="embedded@portal",
        )
        threading.Thread(target=worker.start, name="celery-embedded", daemon=True).start()
        _worker = worker
        return worker
