"""A person signs in through the login form, sees the mirrors and opens one — in real Chromium."""

import pytest
from playwright.sync_api import expect

from members import services
from tests import factories
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

SCREENSHOT = "/tmp/mirror-portal-browser.png"


@pytest.fixture
def seeded(transactional_db):
    alpha = factories.mirror(name="ALPHA")
    node_a = factories.member(alpha, name="NODEA")
    factories.member(alpha, name="NODEB")
    factories.member(alpha, name="FARAWAY", member_type="dr")
    database = factories.database(alpha, name="SALES")
    factories.copy(database, node_a, status="Normal")
    factories.mirror(name="BRAVO", requires_tls=False)
    return make_user("vera-viewer", "viewer")


def log_in(page, base_url, username):
    page.goto(f"{base_url}/")
    expect(page).to_have_url(f"{base_url}/login/?next=/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base_url}/")


def test_viewer_logs_in_sees_the_mirrors_and_opens_one(live_server, browser_page, seeded):
    page = browser_page
    log_in(page, live_server.url, seeded.username)
    expect(page.get_by_role("heading", name="Mirrors", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="ALPHA")).to_be_visible()
    expect(page.get_by_role("link", name="BRAVO")).to_be_visible()
    expect(page.locator(".role")).to_have_text("viewer")

    page.get_by_role("link", name="ALPHA").click()
    expect(page).to_have_url(f"{live_server.url}/mirrors/ALPHA/")
    expect(page.get_by_role("heading", name="Mirror ALPHA")).to_be_visible()
    members = page.get_by_role("region", name="Members", exact=True)
    for name in ("NODEA", "NODEB", "FARAWAY"):
        expect(members.get_by_role("rowheader", name=name)).to_be_visible()
    expect(members.get_by_text("Disaster Recovery (DR)")).to_be_visible()
    # A viewer sees who waits for authorization but gets no buttons to decide.
    expect(page.get_by_role("heading", name="Members waiting for authorization")).to_be_visible()
    expect(page.get_by_role("button", name="Authorize")).to_have_count(0)
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_operator_checks_a_host_and_watches_the_job_succeed(
    live_server, browser_page, celery_worker, start_agent
):
    agent = start_agent(credential="browser-agent-secret-01")
    services.register_host(
        None,
        name="agent-1",
        address="127.0.0.1",
        agent_port=agent.port,
        credential="browser-agent-secret-01",
    )
    operator = make_user("otto-operator", "operator")
    page = browser_page
    log_in(page, live_server.url, operator.username)

    page.get_by_role("link", name="Hosts").click()
    expect(page.get_by_role("row", name="agent-1")).to_contain_text("Not checked")
    page.get_by_role("button", name="Check agent-1").click()

    expect(page.get_by_role("heading", name="check_host")).to_be_visible()
    # The page refreshes itself every 2 s until the job is final; the worker runs it meanwhile.
    expect(page.locator(".badge")).to_have_text("Succeeded", timeout=30_000)
    expect(page.get_by_text("Reachable, round trip")).to_be_visible()
    expect(page.get_by_text("answered (auth credential)")).to_be_visible()
    expect(page.locator("progress")).to_have_attribute("value", "100")

    page.get_by_role("link", name="Hosts").click()
    expect(page.get_by_role("row", name="agent-1")).to_contain_text("Reachable")
