"""The live monitor end to end, as the issue asks: a real mirror (agents and instances as
processes), the collector following it, the portal served with its websockets, two real
Chromium pages on the Mirror Monitor. The backup's instance is SIGKILLed: both pages show it
Down, the primary's word for its journal transfer and a red link, without a reload; started
again it shows Synchronizing while it catches up with what the primary wrote meanwhile, then
Backup / Active. The history holds the events and a local webhook
receiver gets exactly one alert for it."""

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.client.app import Client
from engine.cluster.plan import load_plan
from engine.wire.admin_token import read_token
from engine.wire.tls import superserver_client_context
from monitor.models import Alert, Event
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import make_user, require
from tests.monitor.conftest import session_cookie
from tests.monitor.live_cluster import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


class Receiver(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append({"id": self.headers.get("X-Alert-Id"), **json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    Receiver.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.MONITOR_WEBHOOK_URLS = [f"http://127.0.0.1:{server.server_port}/hook"]
    yield Receiver.posts
    server.shutdown()


@pytest.fixture
def two_pages(asgi_server, monkeypatch):
    require(CHROMIUM.exists(), f"Chromium is not installed at {CHROMIUM}")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    cookie = session_cookie(make_user("watcher", "viewer"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pages = []
            for _ in range(2):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([{**cookie, "url": asgi_server.url}])
                page = context.new_page()
                page.set_default_timeout(20_000)
                page.goto(f"{asgi_server.url}/mirrors/LIVE/monitor/")
                pages.append(page)
            yield pages
        finally:
            browser.close()


def field(page, member: str, name: str):
    return page.locator(f'tr[data-member="{member}"] [data-field="{name}"]')


# every value B's status cell takes, in order, however briefly it shows
RECORD_B_STATUS = """() => {
  window.bStatuses = [];
  const read = () => {
    const cell = document.querySelector('tr[data-member="B"] [data-field="status"]');
    const text = cell ? cell.textContent.trim() : null;
    if (text && window.bStatuses[window.bStatuses.length - 1] !== text) window.bStatuses.push(text);
  };
  read();
  const all = {subtree: true, childList: true, characterData: true};
  new MutationObserver(read).observe(document.body, all);
}"""


def write_on_the_primary(live_portal, megabytes: int) -> None:
    """Journal for B to catch up with when it comes back: written on A, as an application
    would, with A's own credentials (engine/cluster/build.py does the same)."""
    data_dir = live_portal.process("A")["match"]
    address = next(i.superserver for i in load_plan(live_portal.plan).instances if i.name == "A")
    ssl, token = superserver_client_context(data_dir), read_token(data_dir)
    value = secrets.token_hex(512 << 10)  # 1 MiB that compression does not shrink much
    with Client([address], timeout=30, admin_token=token, ssl=ssl) as c:
        for batch in range(megabytes // 4):
            c.pipeline([("set", "ORDERS", "Filler", (batch, i), value) for i in range(4)])


def test_two_browsers_follow_a_backup_killed_and_started_again(
    collector, live_portal, celery_worker, webhook, two_pages
):
    for page in two_pages:
        page.locator('[data-live][data-state="live"]').wait_for()
        field(page, "B", "status").filter(has_text="Backup").wait_for()
        page.locator('[data-link="A->B"][data-state="ok"]').wait_for(state="attached")
        page.evaluate(RECORD_B_STATUS)

    argv = live_portal.kill("B")

    for page in two_pages:
        field(page, "B", "status").filter(has_text="Down").wait_for(timeout=5_000)
        field(page, "B", "journal_transfer").filter(has_text="Disconnected on").wait_for()
        page.locator('[data-link="A->B"][data-state="bad"]').wait_for(state="attached")
    # other alerts may come first (the primary In Trouble for a moment): wait for B's own
    wait_for(
        lambda: any(p.get("rule") == Alert.MEMBER_DOWN for p in webhook),
        timeout=20,
        what="the webhook's member-down alert",
    )

    # what A commits meanwhile (the first write waits out A's trouble timeout, 2 x QoS, guide
    # §3.3.5.1) B fetches when it comes back: long enough to be seen doing it
    write_on_the_primary(live_portal, megabytes=48)
    live_portal.start_again("B", argv)

    for page in two_pages:
        field(page, "B", "status").filter(has_text="Backup").wait_for(timeout=60_000)
        field(page, "B", "journal_transfer").filter(has_text="Active").wait_for(timeout=30_000)
        page.locator('[data-link="A->B"][data-state="ok"]').wait_for(state="attached")
        # Synchronizing while it catches up, then Backup (guide §5.1.1.1)
        seen = page.evaluate("window.bStatuses")
        assert seen[0] == "Backup" and seen[-1] == "Backup", seen
        assert seen.index("Down") < seen.index("Synchronizing"), seen
    after = [e.after for e in Event.objects.filter(member_name="B", kind=Event.STATUS)]
    assert after[:2] == ["Backup", "Synchronizing"] and "Down" in after, after  # newest first
    down_alerts = Alert.objects.filter(rule=Alert.MEMBER_DOWN, member_name="B")
    # the rules run every second: the alert resolves at the tick after B is back
    wait_for(lambda: not down_alerts.filter(resolved_at=None).exists(), what="alert resolved")
    assert down_alerts.count() == 1
    member_down = [p for p in webhook if p.get("rule") == Alert.MEMBER_DOWN]
    assert len(member_down) == 1, webhook
