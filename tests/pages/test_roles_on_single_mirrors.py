"""Roles on single mirrors (accounts.models.MirrorRole), seen from the pages and the websockets.

Two mirrors, ALPHA and BETA, and the people who look at them: a teammate with no portal-wide
role and a viewer's role on ALPHA alone, an outsider who holds a role on BETA alone, an operator
of ALPHA alone, a portal-wide viewer, and someone with no role anywhere. The roles are given the
way the portal gives them (accounts.services.create_user with no role, set_mirror_role).

What they may see (accounts/decorators.py, members/access.py, monitor/consumers.py): a mirror's
pages answer 404 to someone who holds a role elsewhere but none there, 403 when the role there is
too weak or when they hold none anywhere; the fleet, jobs, the timeline and alerts list only the
rows of the mirrors they see; hosts and the audit trail need a portal-wide role. A mirror's socket
closes with 4404 for someone with no role on it; the fleet's passes on only the rows of visible
mirrors; a committed role change makes the user's open sockets look again."""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.asgi import get_asgi_application
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.roles import NO_ROLE
from members.models import Mirror
from monitor import publish
from monitor.api.serializers import fleet_row
from monitor.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from monitor.models import Alert, Event
from portal.routing import build_application
from tasks.models import Job
from tasks.services import start_job
from tests import factories
from tests.conftest import make_user
from tests.monitor.test_consumers_communicator import (
    SITE,
    TIMEOUT_S,
    as_sent,
    consumers_for,
    in_an_event_loop,
    receive,
    refusal,
    socket,
)

# live: the services pass runs the sockets on channels-redis and the pages on PostgreSQL too
pytestmark = [pytest.mark.django_db, pytest.mark.live]

PASSWORD = "correct horse battery"


# --- The cast ---------------------------------------------------------------------------------
@pytest.fixture
def alpha(db):
    mirror = factories.mirror(name="ALPHA", requires_tls=False)
    factories.member(mirror, name="ANODE")
    return mirror


@pytest.fixture
def beta(db):
    mirror = factories.mirror(name="BETA", requires_tls=False)
    factories.member(mirror, name="BNODE")
    return mirror


def someone_with_roles_on(admin, username, **roles):
    """A user made with no portal-wide role, then given `roles` ({mirror name: role})."""
    user = services.create_user(admin, username=username, password=PASSWORD, role=NO_ROLE)
    for name, role in roles.items():
        services.set_mirror_role(admin, user, Mirror.objects.get(name=name), role)
    return user


@pytest.fixture
def teammate(admin_user, alpha, beta):
    return someone_with_roles_on(admin_user, "tia-teammate", ALPHA="viewer")


@pytest.fixture
def outsider(admin_user, alpha, beta):
    return someone_with_roles_on(admin_user, "olaf-outsider", BETA="viewer")


@pytest.fixture
def alpha_operator(admin_user, alpha, beta):
    return someone_with_roles_on(admin_user, "opal-alpha-operator", ALPHA="operator")


@pytest.fixture
def nobody(db):
    return make_user("nora-norole", None)


@pytest.fixture
def cast(teammate, outsider, alpha_operator, viewer, nobody):
    return {
        "teammate": teammate,
        "outsider": outsider,
        "alpha operator": alpha_operator,
        "viewer": viewer,
        "nobody": nobody,
    }


@pytest.fixture
def browser(cast):
    def signed_in_as(who: str) -> Client:
        client = Client()
        client.force_login(cast[who])
        return client

    return signed_in_as


@pytest.fixture
def rows(alpha, beta, admin_user):
    """A job, an event and an open alert of each mirror, and a job of a host (no mirror)."""
    now = timezone.now()
    found = {"host job": start_job(admin_user, "check_host", factories.host())}
    for mirror in (alpha, beta):
        key = mirror.name.lower()
        found[f"{key} job"] = start_job(
            admin_user, "refresh_mirror", mirror, mirror=mirror, send=False
        )
        found[f"{key} event"] = Event.objects.create(
            mirror=mirror,
            mirror_name=mirror.name,
            kind="status",
            text=f"{mirror.name} moved",
            at=now,
        )
        found[f"{key} alert"] = Alert.objects.create(
            mirror=mirror,
            rule=Alert.MEMBER_DOWN,
            key=f"member_down:{mirror.name}",
            text=f"a member of {mirror.name} is down",
            opened_at=now,
        )
    return found


def fleet_on_page(client) -> list[str]:
    response = client.get(reverse("mirror-list"))
    assert response.status_code == 200
    return sorted(re.findall(r'<tr data-mirror="(\w+)"', response.text))


def main_nav(html: str) -> str:
    start = html.index('<nav aria-label="Main">')
    return html[start : html.index("</nav>", start)]


# --- The fleet page ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "who, listed",
    [("teammate", ["ALPHA"]), ("outsider", ["BETA"]), ("viewer", ["ALPHA", "BETA"])],
)
def test_the_fleet_page_lists_only_the_mirrors_each_user_holds_a_role_on(browser, who, listed):
    assert fleet_on_page(browser(who)) == listed


# --- One mirror's pages -----------------------------------------------------------------------
@pytest.mark.parametrize("page", ["mirror-detail", "mirror-monitor"])
def test_alphas_pages_answer_the_teammate_200_the_outsider_404_and_a_user_with_no_role_403(
    browser, page
):
    url = reverse(page, args=["ALPHA"])

    shown = browser("teammate").get(url)
    hidden = browser("outsider").get(url)
    refused = browser("nobody").get(url)

    assert shown.status_code == 200 and "ALPHA" in shown.text
    assert hidden.status_code == 404
    # the outsider learns nothing a mirror that does not exist would not tell them
    assert browser("outsider").get(reverse(page, args=["NOSUCH"])).status_code == 404
    assert refused.status_code == 403
    assert "Your account has no role yet" in refused.text


def test_a_viewer_on_alpha_has_no_refresh_button_and_posting_one_is_403(browser, alpha):
    refresh = reverse("mirror-refresh", args=["ALPHA"])
    client = browser("teammate")

    page = client.get(reverse("mirror-detail", args=["ALPHA"]))
    monitor = client.get(reverse("mirror-monitor", args=["ALPHA"]))
    posted = client.post(refresh)

    assert page.status_code == 200 and f'action="{refresh}"' not in page.text
    assert monitor.context["can_operate"] is False
    assert posted.status_code == 403
    assert not Job.objects.filter(kind="refresh_mirror").exists()


def test_an_operator_on_alpha_sees_the_refresh_button_and_posting_it_starts_a_job(
    browser, alpha, alpha_operator
):
    refresh = reverse("mirror-refresh", args=["ALPHA"])
    client = browser("alpha operator")

    page = client.get(reverse("mirror-detail", args=["ALPHA"]))
    monitor = client.get(reverse("mirror-monitor", args=["ALPHA"]))
    posted = client.post(refresh)

    assert f'action="{refresh}"' in page.text
    assert monitor.context["can_operate"] is True
    job = Job.objects.get(kind="refresh_mirror")
    assert posted.status_code == 302 and posted["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.mirror, job.requested_by) == (alpha, alpha_operator)
    # an operator of ALPHA is nobody on BETA
    assert client.post(reverse("mirror-refresh", args=["BETA"])).status_code == 404
    assert Job.objects.filter(kind="refresh_mirror").count() == 1


# --- Jobs, the timeline, alerts ---------------------------------------------------------------
def test_the_jobs_list_shows_the_teammate_only_alphas_jobs_and_a_viewer_every_job(browser, rows):
    def listed(who):
        response = browser(who).get(reverse("job-list"))
        assert response.status_code == 200
        return {job.pk for job in response.context["page"]}, response.text

    teammates, html = listed("teammate")
    viewers, _ = listed("viewer")

    assert teammates == {rows["alpha job"].pk}
    assert f'href="{reverse("job-detail", args=[rows["alpha job"].pk])}"' in html
    assert f'href="{reverse("job-detail", args=[rows["beta job"].pk])}"' not in html
    assert viewers == {rows[k].pk for k in ("alpha job", "beta job", "host job")}


def test_a_job_of_another_mirror_is_404_for_the_teammate(browser, rows):
    client = browser("teammate")

    assert client.get(reverse("job-detail", args=[rows["alpha job"].pk])).status_code == 200
    assert client.get(reverse("job-detail", args=[rows["beta job"].pk])).status_code == 404


def test_a_hosts_job_is_404_for_a_mirror_only_user_and_200_for_a_portal_wide_viewer(browser, rows):
    url = reverse("job-detail", args=[rows["host job"].pk])

    assert rows["host job"].mirror_id is None
    assert browser("teammate").get(url).status_code == 404
    assert browser("viewer").get(url).status_code == 200


def test_the_timeline_shows_the_teammate_only_alphas_events_even_when_asked_for_beta(browser, rows):
    def shown(who, **query):
        response = browser(who).get(reverse("timeline"), query)
        assert response.status_code == 200
        return {int(i) for i in re.findall(r'<tr data-event="(\d+)"', response.text)}

    alpha_event, beta_event = rows["alpha event"].pk, rows["beta event"].pk
    assert shown("teammate") == {alpha_event}
    assert shown("teammate", mirror="BETA") == set()
    assert shown("outsider") == {beta_event}
    assert shown("viewer") == {alpha_event, beta_event}


def test_the_alerts_page_shows_the_teammate_only_alphas_alerts_and_counts_only_those(browser, rows):
    teammate = browser("teammate").get(reverse("alert-list"))
    viewer = browser("viewer").get(reverse("alert-list"))

    assert teammate.status_code == 200
    assert [a.pk for a in teammate.context["page"]] == [rows["alpha alert"].pk]
    assert "a member of ALPHA is down" in teammate.text
    assert "a member of BETA is down" not in teammate.text
    assert "Open (1)" in teammate.text
    assert {a.pk for a in viewer.context["page"]} == {rows["alpha alert"].pk, rows["beta alert"].pk}
    assert "Open (2)" in viewer.text


# --- What only the portal as a whole has ------------------------------------------------------
def test_the_hosts_and_audit_pages_are_403_for_the_teammate_and_open_to_a_portal_wide_viewer(
    browser, alpha
):
    host = alpha.members.get().host
    for url in (
        reverse("host-list"),
        reverse("host-detail", args=[host.pk]),
        reverse("audit-list"),
    ):
        assert browser("teammate").get(url).status_code == 403, url
        assert browser("viewer").get(url).status_code == 200, url


def test_the_teammates_navigation_shows_mirrors_but_not_hosts_or_audit(browser):
    teammate = main_nav(browser("teammate").get(reverse("mirror-list")).text)
    viewer = main_nav(browser("viewer").get(reverse("mirror-list")).text)

    assert f'href="{reverse("mirror-list")}" aria-current="page">Mirrors</a>' in teammate
    assert f'href="{reverse("job-list")}"' in teammate
    assert f'href="{reverse("host-list")}"' not in teammate
    assert f'href="{reverse("audit-list")}"' not in teammate
    assert (
        f'href="{reverse("host-list")}"' in viewer and f'href="{reverse("audit-list")}"' in viewer
    )


# --- The websockets ---------------------------------------------------------------------------
def over_a_socket(test):
    """An async test body run from a synchronous test (database work goes back to the test's
    thread), on a database whose transactions commit, so a role change's on_commit runs."""
    test = in_an_event_loop(test)
    for mark in (
        pytest.mark.django_db(transaction=True),
        pytest.mark.live,
        pytest.mark.timeout(60),
    ):
        test = mark(test)
    return test


@pytest.fixture
def layer(settings):
    """The in-memory channel layer, fresh for every test: the consumers and the publisher share
    it (monitor/publish.py)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


@pytest.fixture
def application(settings, layer):
    """What portal/asgi.py serves (Origin check, session, routes), answering to SITE only."""
    settings.ALLOWED_HOSTS = [SITE]
    return build_application(get_asgi_application())


async def from_the_collector(message: dict, mirror) -> None:
    # publish.send blocks until the layer took the message: never from the event loop's thread
    await asyncio.to_thread(publish.send, [publish.FLEET_GROUP], message, mirror_id=mirror.pk)


async def set_mirror_role(actor, user, mirror, role: str) -> None:
    """The service, committed (transaction=True), so its on_commit tells the user's sockets."""
    await database_sync_to_async(services.set_mirror_role)(actor, user, mirror, role)


@over_a_socket
async def test_the_teammates_alpha_socket_gets_the_status_and_their_beta_socket_closes_with_4404(
    application, teammate
):
    async with socket(application, "/ws/mirrors/ALPHA/", teammate) as on_alpha:
        connected, _ = await on_alpha.connect(timeout=TIMEOUT_S)
        first = await receive(on_alpha)
    async with socket(application, "/ws/mirrors/BETA/", teammate) as on_beta:
        code = await refusal(on_beta)

    assert connected
    assert first["type"] == "status" and first["status"]["mirror"] == "ALPHA"
    assert code == CLOSE_NOT_FOUND


@over_a_socket
async def test_a_user_with_no_role_anywhere_is_refused_with_4403_not_4404(
    application, nobody, alpha
):
    async with socket(application, "/ws/mirrors/ALPHA/", nobody) as on_alpha:
        assert await refusal(on_alpha) == CLOSE_FORBIDDEN


@over_a_socket
async def test_the_teammates_fleet_snapshot_holds_only_alpha_and_a_viewers_holds_both(
    application, teammate, viewer, alpha
):
    async with socket(application, "/ws/fleet/", teammate) as teammates:
        assert (await teammates.connect(timeout=TIMEOUT_S))[0]
        snapshot = await receive(teammates)
    async with socket(application, "/ws/fleet/", viewer) as viewers:
        assert (await viewers.connect(timeout=TIMEOUT_S))[0]
        everything = await receive(viewers)

    assert snapshot == {"type": "fleet", "rows": [await as_sent(fleet_row, alpha)]}
    assert everything["type"] == "fleet"
    assert sorted(row["mirror"] for row in everything["rows"]) == ["ALPHA", "BETA"]


@over_a_socket
async def test_a_fleet_row_about_beta_reaches_the_outsider_but_not_the_teammate_and_alphas_does(
    layer, teammate, outsider, alpha, beta
):
    alpha_row = {"type": "fleet_row", "row": await as_sent(fleet_row, alpha)}
    beta_row = {"type": "fleet_row", "row": await as_sent(fleet_row, beta)}
    async with (
        socket(consumers_for(teammate), "/ws/fleet/") as teammates,
        socket(consumers_for(outsider), "/ws/fleet/") as outsiders,
    ):
        for fleet_socket in (teammates, outsiders):
            assert (await fleet_socket.connect(timeout=TIMEOUT_S))[0]
            await receive(fleet_socket)  # the snapshot

        await from_the_collector(beta_row, beta)
        await from_the_collector(alpha_row, alpha)

        # BETA's row was sent first: the teammate's next message would be it if it got through
        assert await receive(teammates) == alpha_row
        assert await teammates.receive_nothing(timeout=0.5)
        assert await receive(outsiders) == beta_row
        assert await outsiders.receive_nothing(timeout=0.5)


@over_a_socket
async def test_taking_the_teammates_role_on_alpha_closes_their_alpha_socket_with_4404(
    layer, admin_user, teammate, alpha
):
    app = consumers_for(teammate)
    async with (
        socket(app, "/ws/mirrors/ALPHA/") as on_alpha,
        socket(app, "/ws/fleet/") as on_fleet,
    ):
        for open_socket in (on_alpha, on_fleet):
            assert (await open_socket.connect(timeout=TIMEOUT_S))[0]
            await receive(open_socket)  # the snapshot
        assert await on_alpha.receive_nothing(timeout=0.2)

        await set_mirror_role(admin_user, teammate, alpha, NO_ROLE)

        closed = await on_alpha.receive_output(timeout=TIMEOUT_S)
        fresh = await receive(on_fleet)
        # and the fleet socket, still open, no longer passes ALPHA's rows on
        await from_the_collector({"type": "fleet_row", "row": {"mirror": "ALPHA"}}, alpha)
        assert await on_fleet.receive_nothing(timeout=0.5)

    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
    assert fresh == {"type": "fleet", "rows": []}


@over_a_socket
async def test_giving_the_teammate_a_role_on_beta_adds_it_to_their_fleet_and_keeps_alpha_open(
    layer, admin_user, teammate, alpha, beta
):
    app = consumers_for(teammate)
    async with (
        socket(app, "/ws/mirrors/ALPHA/") as on_alpha,
        socket(app, "/ws/fleet/") as on_fleet,
    ):
        for open_socket in (on_alpha, on_fleet):
            assert (await open_socket.connect(timeout=TIMEOUT_S))[0]
            await receive(open_socket)

        await set_mirror_role(admin_user, teammate, beta, "viewer")

        again = await receive(on_alpha)
        fresh = await receive(on_fleet)
        # from now on the fleet socket passes BETA's rows on too
        beta_row = {"type": "fleet_row", "row": await as_sent(fleet_row, beta)}
        await from_the_collector(beta_row, beta)
        assert await receive(on_fleet) == beta_row

    assert again["type"] == "status" and again["status"]["mirror"] == "ALPHA"
    assert fresh["type"] == "fleet"
    assert sorted(row["mirror"] for row in fresh["rows"]) == ["ALPHA", "BETA"]
