"""Celery task: deliver an alert to the webhooks (monitor/webhooks.py does the HTTP).

At least once, never after success: a receiver that failed is tried again with a growing
delay, up to MAX_RETRIES times, and only the receivers that failed are tried again. Once every
receiver took the alert its `delivered_at` is set, and no later run (a duplicate message, a new
evaluation) sends it again. Two runs at the very same moment could still both send it, which is
what the Idempotency-Key header is for.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from monitor import webhooks
from monitor.models import Alert

log = logging.getLogger(__name__)
MAX_RETRIES = 5
RETRY_BASE_S = 2  # then 4, 8, 16, 32: about a minute of trying in all
ERROR_MAX = 300  # Alert.delivery_error


def retry_delay(retries: int) -> int:
    return RETRY_BASE_S * 2**retries


@shared_task(bind=True, max_retries=MAX_RETRIES)
def deliver_alert(self, alert_id: int, urls: list[str] | None = None):
    """POST alert `alert_id` to `urls` (every MONITOR_WEBHOOK_URLS on the first run, those that
    failed on a retry) and record how it went on the alert."""
    alert = Alert.objects.select_related("mirror", "acknowledged_by").filter(pk=alert_id).first()
    if alert is None:
        log.info("alert %s is gone: nothing to deliver", alert_id)
        return
    if alert.delivered_at is not None:
        log.info("alert %s was delivered at %s: not sending it again", alert_id, alert.delivered_at)
        return
    receivers = list(settings.MONITOR_WEBHOOK_URLS) if urls is None else urls
    if not receivers:
        log.info("alert %s: no webhook receivers configured", alert_id)
        return
    failed = webhooks.send_alert(alert, receivers, settings.MONITOR_WEBHOOK_TIMEOUT_S)
    record_attempt(alert_id, failed)
    if not failed:
        return
    if self.request.retries >= MAX_RETRIES:
        log.warning(
            "alert %s: gave up after %d attempts: %s",
            alert_id,
            MAX_RETRIES + 1,
            "; ".join(failed.values()),
        )
        return
    raise self.retry(
        args=[alert_id], kwargs={"urls": list(failed)}, countdown=retry_delay(self.request.retries)
    )


def record_attempt(alert_id: int, failed: dict[str, str]) -> None:
    """Count the attempt; on success stamp delivered_at (once: the filter keeps the first)."""
    if failed:
        error = "; ".join(failed.values())[:ERROR_MAX]
        Alert.objects.filter(pk=alert_id).update(
            delivery_attempts=F("delivery_attempts") + 1, delivery_error=error
        )
    else:
        Alert.objects.filter(pk=alert_id, delivered_at=None).update(
            delivery_attempts=F("delivery_attempts") + 1,
            delivery_error="",
            delivered_at=timezone.now(),
        )
