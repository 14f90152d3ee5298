"""Disaster recovery from the pages on a 390 px phone, in real Chromium: both failover members
of ALPHA are Down and FARAWAY, an authorized DR async, is promoted to primary (guide §5.5,
§6.3). The member table scrolls inside its box, and the name column stays in sight beside a
row's Actions menu, so the menu still says whose it is; the partner page and the confirmation
page fit the screen. No member runs: the preview job is answered here, as a member would.

Each page is saved at 390 px under var/screens/disaster-recovery/ (not committed) to be looked
at."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from members.models import Member
from tasks import services as services_of_tasks
from tasks.models import Job
from tasks.services import finish_job
from tests import factories
from tests.browser.conftest import log_in
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PHONE = {"width": 390, "height": 844}
SCREENS = Path(__file__).resolve().parents[2] / "var" / "screens" / "disaster-recovery"
STAKE = {
    "member": "FARAWAY",
    "partner": "NODEA",
    "journal_end": [7, 8192],
    "last_primary": "NODEA",
    "term": 3,
    "confirmed": False,
    "warning": "NODEA's agent must confirm it down; its journal beyond this member's is copied "
    "first",
}


@pytest.fixture
def lost(transactional_db):
    """ALPHA: NODEA (the primary) and NODEB (its backup) Down; FARAWAY a DR async, Waiting.
    The admin who signs in."""
    alpha, now = factories.mirror(name="ALPHA", requires_tls=False), timezone.now()
    for name in ("NODEA", "NODEB"):
        factories.member(alpha, name=name, status="Down", observed_at=now)
    factories.member(alpha, name="FARAWAY", member_type="dr", status="Waiting", observed_at=now)
    return make_user("ada-admin", "admin")


@pytest.fixture
def sent(monkeypatch):
    """The job ids sent to Celery, kept here instead: this test answers the job as a member
    would, and a worker left running in this process by an earlier test must not (it failed
    the job first once in CI: "runs on no registered host")."""
    ids: list[int] = []
    monkeypatch.setattr(services_of_tasks, "dispatch", ids.append)
    return ids


def fits_the_screen(page, name: str) -> None:
    """Nothing runs off the page sideways (a wide table scrolls inside its own box)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}-390.png"), full_page=True)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{name}: the page is {widths[0]} px wide on a 390 px screen"


def inside(inner: dict, outer: dict) -> bool:
    return (
        outer["x"] - 1 <= inner["x"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
    )


def test_an_admin_promotes_the_dr_async_to_primary_on_a_phone(
    live_server, browser_page, lost, sent
):
    page, base = browser_page, live_server.url
    page.set_viewport_size(PHONE)
    log_in(page, base, lost.username)
    page.goto(f"{base}/mirrors/ALPHA/")
    expect(page.get_by_role("heading", name="Mirror ALPHA")).to_be_visible()
    fits_the_screen(page, "mirror-page")

    # the Actions column is off to the right: opening FARAWAY's menu scrolls the table inside
    # its box, and FARAWAY's name is still beside it
    members = page.get_by_role("region", name="Members", exact=True)
    box = members.locator(".scroll")
    members.get_by_text("Actions for FARAWAY").click()
    promote = members.get_by_role("link", name="Promote to primary FARAWAY")
    expect(promote).to_be_visible()
    promote.scroll_into_view_if_needed()
    assert box.evaluate("e => e.scrollLeft") > 0  # the table did scroll
    seen = box.bounding_box()
    assert inside(members.get_by_role("rowheader", name="FARAWAY").bounding_box(), seen)
    assert inside(promote.bounding_box(), seen)
    fits_the_screen(page, "mirror-page-dr-actions")
    # and NODEA's menu, scrolled the same way, says it is NODEA's
    members.get_by_text("Actions for FARAWAY").click()
    members.get_by_text("Actions for NODEA").click()
    clear = members.get_by_role("button", name="Clear ValidatedMember on NODEA")
    clear.scroll_into_view_if_needed()
    assert inside(members.get_by_role("rowheader", name="NODEA").bounding_box(), box.bounding_box())
    assert inside(clear.bounding_box(), box.bounding_box())

    # step one: the partner page
    members.get_by_text("Actions for NODEA").click()
    members.get_by_text("Actions for FARAWAY").click()
    promote.click()
    expect(page.get_by_role("heading", name="Promote FARAWAY to primary")).to_be_visible()
    page.get_by_label("NODEA (Down, as it last reported)").check()
    fits_the_screen(page, "promote-to-primary-partner")
    page.get_by_role("button", name="Ask FARAWAY what is at stake").click()
    expect(page.get_by_text("this page refreshes every 2 seconds")).to_be_visible()
    fits_the_screen(page, "promote-to-primary-waiting")

    # step two: FARAWAY answers (no member runs here), and the page shows it by itself
    preview = Job.objects.get(kind="preview_promote_to_primary")
    assert preview.params == {"partner": "NODEA"}
    assert sent == [preview.pk]
    finish_job(preview, result=STAKE)
    confirm = page.get_by_label("Type the mirror's name to confirm")
    expect(confirm).to_be_visible(timeout=10_000)
    expect(page.get_by_text("NODEA: its agent must confirm it down")).to_be_visible()
    fits_the_screen(page, "promote-to-primary-confirm")
    confirm.fill("ALPH")
    page.get_by_role("button", name="Make FARAWAY the primary").click()
    expect(page.get_by_text("Type the mirror's name, ALPHA, to confirm.").first).to_be_visible()
    fits_the_screen(page, "promote-to-primary-refused")
    assert not Job.objects.filter(kind="promote_to_primary").exists()
    assert Member.objects.get(name="FARAWAY").member_type == "dr"
