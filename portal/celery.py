import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class InMemoryBrokerHasNoHost(logging.Filter):
    """Drops kombu's "No hostname was supplied. Reverting to default 'localhost'" while the
    broker is the in-memory one of the embedded default (settings LOGGING): that broker has no
    host to supply, and kombu says so whenever it names the connection, as the embedded
    worker's start-up line "Connected to memory://..." does. With any other broker (a Redis
    URL without a host, say) the warning is a real one and stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("No hostname was supplied"):
            return True
        return not str(app.conf.broker_url or "").startswith("memory://")
