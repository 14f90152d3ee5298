"""Telling webhooks about an alert: the JSON body, its headers, one POST per receiver.

Kept free of Celery and retries (monitor/tasks.py decides when to try again), so that what goes
over the wire can be read — and tested against a real HTTP server — in one place.

Every POST of one alert carries the same `Idempotency-Key` (and `X-Alert-Id`): a receiver that
got it once, but whose answer was lost, can recognise the retry and drop it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.core.serializers.json import DjangoJSONEncoder

from monitor.api.serializers import AlertSerializer
from monitor.models import Alert

log = logging.getLogger(__name__)

USER_AGENT = "MirrorPortal-Alerts/1"
SCHEMES = ("http", "https")
ERROR_MAX = 200  # of a receiver's answer kept in the reason


class DeliveryError(Exception):
    """A receiver did not take the alert; the message says why."""


def idempotency_key(alert: Alert) -> str:
    """The same for every attempt at one alert, different for the next alert of the same key
    (it has its own opening time), and meaningless outside: a hash, not an id to guess from."""
    seed = f"{alert.pk}:{alert.key}:{alert.opened_at.isoformat()}"
    return "alert-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def alert_state(alert: Alert) -> str:
    return "open" if alert.is_open else "resolved"


def payload(alert: Alert) -> dict:
    """What a receiver gets: the alert as the REST API shows it, its state now (a delivery that
    was retried for a while may find the alert resolved already) and the idempotency key."""
    return {
        **AlertSerializer(alert).data,
        "state": alert_state(alert),
        "idempotency_key": idempotency_key(alert),
    }


def headers(alert: Alert) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Alert-Id": str(alert.pk),
        "Idempotency-Key": idempotency_key(alert),
    }


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A receiver that redirects is misconfigured: urllib would follow a 302 with a GET and
    lose the body, so a redirect is reported as the failure it is."""

    def redirect_request(self, req, fp, code, msg, hdrs, newurl):
        return None


OPENER = urllib.request.build_opener(NoRedirects)


def receiver_name(url: str) -> str:
    """A receiver as logs and errors name it: scheme, host and port only. Many webhook URLs
    carry their secret in the path or the query (chat services do), so the rest stays out."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: the POST will say so
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def post_json(url: str, body: bytes, request_headers: dict, timeout: float) -> int:
    """POST `body` to `url`; the status when it is 2xx, else DeliveryError with the reason."""
    name = receiver_name(url)
    if urlsplit(url).scheme not in SCHEMES:
        raise DeliveryError(f"{name}: refused, only http and https receivers are allowed")
    request = urllib.request.Request(url, data=body, headers=request_headers, method="POST")
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        answer = exc.read(ERROR_MAX).decode(errors="replace").strip()
        raise DeliveryError(f"{name}: HTTP {exc.code} {answer}".strip()) from exc
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{name}: {exc.reason}") from exc
    except (TimeoutError, OSError, ValueError) as exc:  # a timeout reading the answer, a reset
        raise DeliveryError(f"{name}: {exc or exc.__class__.__name__}") from exc


def send_alert(alert: Alert, urls: list[str], timeout: float) -> dict[str, str]:
    """POST `alert` to each of `urls`; the receivers that did not take it, with the reason
    (an empty dict: every one took it)."""
    body = json.dumps(payload(alert), cls=DjangoJSONEncoder).encode()
    request_headers = headers(alert)
    failed = {}
    for url in urls:
        try:
            post_json(url, body, request_headers, timeout)
        except DeliveryError as exc:
            log.warning("webhook for alert %s not delivered: %s", alert.pk, exc)
            failed[url] = str(exc)
    return failed
