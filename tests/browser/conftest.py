"""A real headless Chromium driven by Playwright, against pytest-django's live server."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import require

# A real Celery worker and something listening where an agent would be, as the job tests use.
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.jobs.conftest import celery_worker  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page(monkeypatch):
    require(CHROMIUM.exists(), f"Chromium is not installed at {CHROMIUM}")
    # Playwright's sync API keeps an event loop running on this thread, and Django refuses ORM
    # calls from a thread with a running loop; the test's own setup queries are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def log_in(page, base_url: str, username: str) -> None:
    """Signed in through the login form (the tests' users share one password)."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Mirrors", level=1)).to_be_visible()
