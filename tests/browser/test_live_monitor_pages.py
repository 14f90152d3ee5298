"""The live pages in real Chromium against the portal served over ASGI with its websockets:
what the collector publishes reaches every open page without a reload — the Mirror Monitor's
member table and topology, the fleet overview's order — and the pages say when the live
connection is lost."""

import datetime

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from members.models import Member
from monitor import publish
from monitor.api.serializers import fleet_row, mirror_status
from monitor.models import MemberState
from tasks.models import Job
from tests import factories
from tests.conftest import make_user
from tests.monitor.conftest import asgi_server, session_cookie  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

BOTH = "Both failover members are connected to the arbiter"


def seen(member, status, journal_transfer="", **record):
    """`member` as its agent streams it: the live row and the member's status, as the
    collector writes them."""
    now = timezone.now()
    Member.objects.filter(pk=member.pk).update(status=status, observed_at=now)
    MemberState.objects.update_or_create(
        member=member,
        defaults={
            "status": status,
            "journal_transfer": journal_transfer,
            "dejournaling": "Caught up",
            "record": record,
            "seen_at": now,
            "changed_at": now,
        },
    )


def publish_status(mirror):
    """What the collector does after writing a change: the mirror's viewers get it."""
    publish.send(
        [publish.mirror_group(mirror.pk)], {"type": "status", "status": mirror_status(mirror)}
    )


def publish_fleet_row(mirror):
    publish.send([publish.FLEET_GROUP], {"type": "fleet_row", "row": fleet_row(mirror)})


def healthy_mirror(name, arbiter=""):
    mirror = factories.mirror(name=name, requires_tls=False, arbiter_host=arbiter)
    a = factories.member(mirror, name=f"{name}A")
    b = factories.member(mirror, name=f"{name}B")
    seen(a, "Primary", "N/A", arbiter_connection=BOTH, failover_mode="Arbiter Controlled")
    seen(
        b,
        "Backup",
        "Active",
        arbiter_connection=BOTH,
        incoming_journal_rate="42 KB/s (5s interval)",
    )
    return mirror, a, b


@pytest.fixture
def viewer_cookie(asgi_server):  # noqa: F811 - asgi_server is the fixture
    """A viewer's session, as the cookie a browser sends to the ASGI server."""
    return {**session_cookie(make_user("vera-viewer", "viewer")), "url": asgi_server.url}


@pytest.fixture
def signed_in(browser_page, viewer_cookie):
    browser_page.context.add_cookies([viewer_cookie])
    return browser_page


def another_browser_page(page, cookie):
    """A second page in its own browser context (its own cookies, like a second person)."""
    other = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    other.set_default_timeout(15_000)
    other.context.add_cookies([cookie])
    return other


def open_live(page, url):
    page.goto(url)
    expect(page.locator("[data-live]")).to_have_attribute("data-state", "live")
    # a page that reloads loses this; one updated in place keeps it
    page.evaluate("window.notReloaded = true")


def test_two_open_monitors_show_a_member_going_down_without_reloading(
    asgi_server,  # noqa: F811
    signed_in,
    viewer_cookie,
):
    mirror, _, backup = healthy_mirror("ALPHA", arbiter="10.9.9.9")
    url = f"{asgi_server.url}/mirrors/ALPHA/monitor/"
    pages = [signed_in, another_browser_page(signed_in, viewer_cookie)]
    for page in pages:
        open_live(page, url)
        expect(page.locator('[data-link="ALPHAA->ALPHAB"]')).to_have_attribute("data-state", "ok")
        expect(page.locator('[data-link="ALPHAB->ARBITER"]')).to_have_attribute("data-state", "ok")

    seen(backup, "Down", "Disconnected on 2025-01-31 12:00:00 UTC")
    publish_status(mirror)

    for page in pages:
        row = page.locator('table.member-status tr[data-member="ALPHAB"]')
        expect(row.locator('[data-field="status"]')).to_have_text("Down")
        expect(row).to_have_attribute("data-level", "bad")
        expect(row.locator('[data-field="journal_transfer"]')).to_have_text(
            "Disconnected on 2025-01-31 12:00:00 UTC"
        )
        expect(page.locator('[data-link="ALPHAA->ALPHAB"]')).to_have_attribute("data-state", "bad")
        expect(page.locator('[data-link="ALPHAB->ARBITER"]')).to_have_attribute("data-state", "bad")
        expect(page.locator('[data-section="health"] [data-field="health-level"]')).to_have_text(
            "Warn"
        )
        assert page.evaluate("window.notReloaded") is True


def test_a_new_event_appears_on_the_open_monitor(asgi_server, signed_in):  # noqa: F811
    mirror, _, _ = healthy_mirror("ALPHA")
    open_live(signed_in, f"{asgi_server.url}/mirrors/ALPHA/monitor/")
    event = {
        "id": 991,
        "at": "2025-01-31T12:00:00Z",
        "mirror_name": "ALPHA",
        "member_name": "ALPHAB",
        "kind": "status",
        "before": "Backup",
        "after": "Down",
        "text": "ALPHAB is Down",
        "job": None,
        "job_url": None,
    }
    publish.send([publish.mirror_group(mirror.pk)], {"type": "event", "event": event})
    expect(signed_in.locator('[data-events] [data-event="991"]')).to_contain_text("ALPHAB is Down")


def test_the_fleet_overview_moves_a_mirror_that_goes_bad_to_the_top(
    asgi_server,  # noqa: F811
    signed_in,
):
    healthy_mirror("ALPHA")
    bravo, bravo_primary, _ = healthy_mirror("BRAVO")
    page = signed_in
    open_live(page, f"{asgi_server.url}/")
    rows = page.locator("table[data-fleet] tbody tr")
    expect(rows.first).to_have_attribute("data-mirror", "ALPHA")

    seen(bravo_primary, "Down")
    publish_fleet_row(bravo)

    expect(rows.first).to_have_attribute("data-mirror", "BRAVO")
    expect(rows.first.locator('[data-field="health"]')).to_have_text("Bad")
    expect(rows.first.locator('[data-field="primary"]')).to_have_text("—")
    assert page.evaluate("window.notReloaded") is True


def test_the_live_indicator_says_reconnecting_when_the_server_goes_away(
    asgi_server,  # noqa: F811
    signed_in,
):
    healthy_mirror("ALPHA")
    open_live(signed_in, f"{asgi_server.url}/mirrors/ALPHA/monitor/")
    asgi_server.stop()
    indicator = signed_in.locator("[data-live]")
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    expect(indicator).to_have_text("reconnecting…")


def test_the_charts_draw_each_members_kept_samples_with_uplot(asgi_server, signed_in):  # noqa: F811
    from monitor.models import Sample

    _, _, backup = healthy_mirror("ALPHA")
    now = timezone.now()
    Sample.objects.bulk_create(
        Sample(
            member=backup,
            at=now - datetime.timedelta(seconds=60 * (10 - i)),
            transfer_lag_s=0.1 * i,
            dejournal_lag_s=0.2 * i,
            journal_kb_s=40.0 + i,
            network_kb_s=20.0 + i,
        )
        for i in range(10)
    )

    open_live(signed_in, f"{asgi_server.url}/mirrors/ALPHA/monitor/")

    lag = signed_in.locator('[data-chart="lag"]')
    expect(lag.locator(".uplot canvas")).to_have_count(1)
    expect(lag.locator(".u-legend")).to_contain_text("ALPHAB transfer lag")
    expect(lag.locator(".u-legend")).to_contain_text("ALPHAB dejournal lag")
    rate = signed_in.locator('[data-chart="rate"]')
    expect(rate.locator(".u-legend")).to_contain_text("ALPHAB journal KB/s")
    # drawn, not just laid out: the canvas holds non-blank pixels
    painted = lag.locator("canvas").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 3; i < d.length; i += 4) { if (d[i] !== 0) return true; }
                  return false; }"""
    )
    assert painted is True


def test_an_operator_selects_databases_on_the_live_monitor_and_acts_on_them(
    asgi_server,  # noqa: F811
    browser_page,
):
    mirror, _, backup = healthy_mirror("ALPHA")
    orders, stock = (factories.database(mirror, name=n) for n in ("ORDERS", "STOCK"))
    factories.copy(orders, backup, status="Needs Catchup")
    factories.copy(stock, backup, status="Needs Catchup")
    rows = [{"name": n, "status": "Needs Catchup", "applied": None} for n in ("ORDERS", "STOCK")]
    seen(backup, "Backup", "Active", databases=rows)
    cookie = session_cookie(make_user("otto-operator", "operator"))
    browser_page.context.add_cookies([{**cookie, "url": asgi_server.url}])
    page = browser_page
    open_live(page, f"{asgi_server.url}/mirrors/ALPHA/monitor/")
    block = page.locator('.member-databases[data-member="ALPHAB"]')
    apply = block.get_by_role("button", name="Apply to selected")
    expect(apply).to_be_disabled()

    block.get_by_label("Select ORDERS on ALPHAB").check()
    block.get_by_label("Action for the selected databases on ALPHAB").select_option("catchup")
    expect(apply).to_be_enabled()
    # a live change of a cell, then of the list itself: the selection stays
    seen(backup, "Backup", "Active", databases=[{**rows[0], "applied": [2, 64]}, rows[1]])
    publish_status(mirror)
    expect(block.locator('tr[data-database="ORDERS"] [data-field="next"]')).to_have_text("2:64")
    seen(backup, "Backup", "Active", databases=[*rows, {"name": "NEW", "status": "Downloading"}])
    publish_status(mirror)
    expect(block.locator('tr[data-database="NEW"]')).to_be_visible()
    expect(block.get_by_label("Select ORDERS on ALPHAB")).to_be_checked()
    expect(block.get_by_label("Select STOCK on ALPHAB")).not_to_be_checked()
    assert page.evaluate("window.notReloaded") is True

    apply.click()

    page.wait_for_url("**/jobs/**")
    job = Job.objects.get(kind="catchup_databases")
    assert (job.member, job.params["databases"]) == (backup, ["ORDERS"])


CLOSE_CODE = """path => new Promise(resolve => {
  const socket = new WebSocket("ws://" + location.host + path);
  socket.onclose = event => resolve(event.code);
})"""


def test_a_browser_refused_a_socket_gets_the_reason_as_a_close_code(asgi_server, signed_in):  # noqa: F811
    healthy_mirror("ALPHA")
    signed_in.goto(f"{asgi_server.url}/mirrors/")

    assert signed_in.evaluate(CLOSE_CODE, "/ws/mirrors/NOPE/") == 4404
    signed_in.context.clear_cookies()  # signed out: live.js then says "sign in again"
    assert signed_in.evaluate(CLOSE_CODE, "/ws/mirrors/ALPHA/") == 4403
