"""The API docs work with no way out to the internet: in real Chromium, every request to a host
other than the portal is aborted, and Swagger UI still renders the operations — because it never
even tried to reach another host."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_swagger_ui_renders_the_operations_with_every_other_host_cut_off(
    live_server, browser_page, transactional_db
):
    viewer = make_user("vera-viewer", "viewer")
    page = browser_page
    portal = urlsplit(live_server.url).netloc
    requested, foreign, aborted = [], [], []

    def only_the_portal(route):
        if urlsplit(route.request.url).netloc == portal:
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort("internetdisconnected")

    def note(request):
        # Every request the page makes, aborted or not (data: URLs have no host to reach).
        requested.append(request.url)
        url = urlsplit(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.netloc != portal:
            foreign.append(request.url)

    page.route("**/*", only_the_portal)
    page.on("request", note)
    page.on("websocket", lambda socket: foreign.append(socket.url))

    # The docs are for signed-in roles (the API answers 401 otherwise), so sign in first.
    page.goto(f"{live_server.url}/login/?next=/api/docs/")
    page.get_by_label("User name").fill(viewer.username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/api/docs/")

    mirrors = page.locator('.opblock-summary-path[data-path="/api/v1/mirrors/"]')
    expect(mirrors.first).to_be_visible(timeout=30_000)
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 20  # the whole API, not one stray block
    expect(page.locator(".errors-wrapper")).to_have_count(0)  # the schema loaded and parsed

    # Swagger UI's own files and the schema were fetched, all from the portal.
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in requested)
    assert any(urlsplit(url).path == "/api/schema/" for url in requested)
    assert foreign == [] and aborted == [], foreign + aborted
