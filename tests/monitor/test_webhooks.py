"""Alerts reach webhooks over real HTTP: a receiver on a loopback port gets one JSON POST per
alert, with the alert's id and an idempotency key; a failing receiver is tried again (and only
it), every attempt counted on the alert, and a delivered alert is never sent again."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import rules as catalog
from monitor import webhooks
from monitor.alerts import evaluate_alerts
from monitor.models import Alert
from monitor.tasks import MAX_RETRIES, deliver_alert
from portal.celery import app as celery_app
from tests import factories
from tests.monitor.test_alerts import live, seconds


class Receiver:
    """A webhook receiver: answers each POST with the next of `answers` (then 200) and keeps
    what it was sent."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"busy, try later" if status >= 400 else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started = []

    def start(answers=()):
        started.append(Receiver(answers))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def eager_tasks():
    """Celery runs a task where it is sent, retries included (its documented test mode), so the
    on-commit delivery happens within the test."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def down_member(db):
    mirror = factories.mirror(name="ALPHA", requires_tls=False)
    member = factories.member(mirror, name="D", member_type=catalog.DR)
    live(member, status=catalog.DOWN)
    return member


def an_alert(down_member) -> Alert:
    evaluate_alerts(now=seconds(1))
    return Alert.objects.get()


def test_an_alert_is_posted_once_however_often_the_rules_run(
    down_member, receivers, settings, eager_tasks, django_capture_on_commit_callbacks
):
    receiver = receivers()
    settings.MONITOR_WEBHOOK_URLS = [receiver.url]

    for n in range(1, 6):
        with django_capture_on_commit_callbacks(execute=True):
            evaluate_alerts(now=seconds(n))

    alert = Alert.objects.get()
    [post] = receiver.received
    assert post["path"] == "/hooks/alerts"
    assert post["headers"]["X-Alert-Id"] == str(alert.pk)
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Idempotency-Key"] == post["json"]["idempotency_key"]
    body = post["json"]
    assert (body["id"], body["rule"], body["mirror"], body["state"]) == (
        alert.pk,
        "member_down",
        "ALPHA",
        "open",
    )
    assert body["key"] == "member_down:ALPHA:D" and body["text"] == "D is Down"
    assert alert.delivered_at is not None and alert.delivery_attempts == 1


def test_nothing_is_sent_before_the_alert_is_committed(
    down_member, receivers, settings, eager_tasks, django_capture_on_commit_callbacks
):
    receiver = receivers()
    settings.MONITOR_WEBHOOK_URLS = [receiver.url]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        evaluate_alerts(now=seconds(1))

    assert receiver.received == [] and len(callbacks) == 1


def test_a_failing_receiver_is_tried_again_and_the_attempts_are_recorded(
    down_member, receivers, settings
):
    receiver = receivers(answers=[500, 503])
    settings.MONITOR_WEBHOOK_URLS = [receiver.url]
    alert = an_alert(down_member)

    deliver_alert.apply(args=[alert.pk])

    alert.refresh_from_db()
    assert len(receiver.received) == 3
    assert len({p["headers"]["Idempotency-Key"] for p in receiver.received}) == 1
    assert alert.delivery_attempts == 3 and alert.delivered_at is not None
    assert alert.delivery_error == ""


def test_a_receiver_that_keeps_failing_is_given_up_with_the_reason(
    down_member, receivers, settings, caplog
):
    receiver = receivers(answers=[503] * 20)
    settings.MONITOR_WEBHOOK_URLS = [receiver.url]
    alert = an_alert(down_member)

    deliver_alert.apply(args=[alert.pk])

    alert.refresh_from_db()
    assert len(receiver.received) == MAX_RETRIES + 1 == alert.delivery_attempts
    assert alert.delivered_at is None
    assert (
        alert.delivery_error
        == f"http://127.0.0.1:{receiver.server.server_port}: HTTP 503 busy, try later"
    )
    assert f"gave up after {MAX_RETRIES + 1} attempts" in caplog.text


def test_only_the_receiver_that_failed_is_tried_again(down_member, receivers, settings):
    steady, flaky = receivers(), receivers(answers=[500])
    settings.MONITOR_WEBHOOK_URLS = [steady.url, flaky.url]
    alert = an_alert(down_member)

    deliver_alert.apply(args=[alert.pk])

    assert (len(steady.received), len(flaky.received)) == (1, 2)
    assert Alert.objects.get().delivered_at is not None


def test_a_delivered_alert_is_never_sent_again(down_member, receivers, settings, caplog):
    receiver = receivers()
    settings.MONITOR_WEBHOOK_URLS = [receiver.url]
    alert = an_alert(down_member)

    deliver_alert.apply(args=[alert.pk])
    deliver_alert.apply(args=[alert.pk])  # a duplicate message, say

    assert len(receiver.received) == 1
    assert Alert.objects.get().delivery_attempts == 1
    assert "not sending it again" in caplog.text


def test_an_alert_resolved_before_delivery_says_so_in_its_state(down_member, receivers, settings):
    receiver = receivers()
    settings.MONITOR_WEBHOOK_URLS = [receiver.url]
    alert = an_alert(down_member)
    live(down_member, status=catalog.CONNECTED)
    evaluate_alerts(now=seconds(2))

    deliver_alert.apply(args=[alert.pk])

    body = receiver.received[0]["json"]
    assert body["state"] == "resolved" and body["resolved_at"] is not None


# --- The HTTP itself (monitor/webhooks.py) -----------------------------------------------------
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_a_receiver_nobody_listens_on_is_a_delivery_error():
    url = f"http://127.0.0.1:{closed_port()}/hook"

    with pytest.raises(webhooks.DeliveryError, match="refused"):
        webhooks.post_json(url, b"{}", {}, timeout=2)


def test_only_http_receivers_are_posted_to():
    with pytest.raises(webhooks.DeliveryError, match="only http and https"):
        webhooks.post_json("file:///etc/passwd", b"{}", {}, timeout=2)


def test_a_receiver_that_redirects_is_a_failure_not_a_lost_body(receivers):
    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with pytest.raises(webhooks.DeliveryError, match="HTTP 302"):
            webhooks.post_json(f"http://127.0.0.1:{server.server_port}/", b"{}", {}, timeout=2)
    finally:
        server.shutdown()
        server.server_close()


def test_the_secret_part_of_a_receivers_url_stays_out_of_errors_and_logs(
    down_member, receivers, settings, caplog
):
    receiver = receivers(answers=[500] * 20)
    settings.MONITOR_WEBHOOK_URLS = [receiver.url + "/T0KEN-s3cret?sig=abc"]
    alert = an_alert(down_member)

    deliver_alert.apply(args=[alert.pk])

    alert.refresh_from_db()
    assert "s3cret" not in alert.delivery_error and "sig=" not in alert.delivery_error
    assert "s3cret" not in caplog.text
    assert receiver.received[0]["path"] == "/hooks/alerts/T0KEN-s3cret?sig=abc"
