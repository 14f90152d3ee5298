import gc
import os
import warnings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

# WhiteNoise serves static files as a response over a synchronous file iterator, which Django's
# ASGI handler reads in a worker thread, warning once per process that it must ("Warning:
# StreamingHttpResponse must consume synchronous iterators ..."): the files are served all
# the same (evansd/whitenoise#531). The portal streams nothing of its own; a view that did
# should give an asynchronous iterator, which Django streams without that warning.
warnings.filterwarnings(
    "ignore",
    message="StreamingHttpResponse must consume synchronous iterators",
    module="django.core.handlers.asgi",
)

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import get_resolver  # noqa: E402

django_asgi_app = get_asgi_application()

from portal.routing import build_application  # noqa: E402

if settings.PORTAL_EMBEDDED_WORKER:
    from portal.embedded_worker import start_embedded_worker

    start_embedded_worker(settings.PORTAL_EMBEDDED_CONCURRENCY)

if settings.PORTAL_EMBEDDED_MONITOR:
    from monitor.collector import start_embedded_collector

    start_embedded_collector()

application = build_application(django_asgi_app)

# Load every URLconf and view module now rather than on the first request, then move the
# start-up heap out of the garbage collector's reach: full collections otherwise re-walk those
# ~100k long-lived objects and show up as p99 spikes (bench/api.py: 76 ms -> ~25 ms).
_ = get_resolver().url_patterns
gc.freeze()
