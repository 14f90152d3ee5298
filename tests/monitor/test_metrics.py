"""/metrics for Prometheus: the live rows read at scrape time, for a viewer's token or session
only, in a handful of queries whatever the number of members."""

import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import create_token
from monitor.models import Alert, Lease
from tasks.models import Job
from tests import factories
from tests.conftest import make_user
from tests.factories import member_state as live

pytestmark = pytest.mark.api


@pytest.fixture
def alpha(db):
    """ALPHA: primary ALPHA1; backup ALPHA2 just went Down; DR ALPHADR 12 s behind."""
    mirror = factories.mirror(name="ALPHA", requires_tls=False)
    primary = factories.member(mirror, name="ALPHA1")
    backup = factories.member(mirror, name="ALPHA2")
    dr = factories.member(mirror, name="ALPHADR", member_type="dr")
    live(
        primary,
        "Primary",
        record={
            "databases": [
                {"name": "SALES", "status": "Normal"},
                {"name": "HR", "status": "Normal"},
            ],
            "state": "up",
        },
    )
    live(backup, "Down", agent_reachable=False, record={"state": "down"})
    live(
        dr,
        "Connected",
        transfer_lag_s=12.0,
        dejournal_lag_s=3.5,
        record={
            "incoming_journal_figures": {"network_kb_s": 40.0, "journal_kb_s": 120.5},
            "databases": [
                {"name": "SALES", "status": "Caught Up"},
                {"name": "HR", "status": "Dejournaling"},
            ],
            "state": "up",
        },
    )
    return mirror


@pytest.fixture
def scraper(viewer):
    """A client holding a viewer's API token, as Prometheus' scrape config sends it."""
    _, secret = create_token(viewer, name="prometheus")
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def scrape(client, **headers) -> dict:
    """{(metric name, frozenset of labels): value} of one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:500]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def of(member, type_="failover", mirror="ALPHA", **extra):
    return frozenset({"mirror": mirror, "member": member, "type": type_, **extra}.items())


def test_a_member_made_down_shows_as_down_and_its_agent_unreachable(alpha, scraper):
    series = scrape(scraper)

    assert series[("mirror_member_status", of("ALPHA2", status="Down"))] == 1
    assert series[("mirror_member_status", of("ALPHA2", status="Backup"))] == 0
    assert series[("mirror_member_status", of("ALPHA1", status="Primary"))] == 1
    assert series[("mirror_member_agent_reachable", of("ALPHA2"))] == 0
    assert series[("mirror_member_agent_reachable", of("ALPHA1"))] == 1


def test_lags_and_incoming_rates_are_in_seconds_and_bytes(alpha, scraper):
    series = scrape(scraper)
    dr = of("ALPHADR", "dr")

    assert series[("mirror_member_status", of("ALPHADR", "dr", status="Connected"))] == 1
    assert series[("mirror_member_transfer_lag_seconds", dr)] == 12.0
    assert series[("mirror_member_dejournal_lag_seconds", dr)] == 3.5
    assert series[("mirror_member_incoming_network_bytes_per_second", dr)] == 40.0 * 1024
    assert series[("mirror_member_incoming_journal_bytes_per_second", dr)] == 120.5 * 1024
    # no lag is known for the primary: no series rather than a made-up 0
    assert ("mirror_member_transfer_lag_seconds", of("ALPHA1")) not in series


def test_database_copies_are_counted_by_status_per_member(alpha, scraper):
    series = scrape(scraper)

    def copies(member, status):
        labels = frozenset({"mirror": "ALPHA", "member": member, "status": status}.items())
        return series.get(("mirror_database_copies", labels))

    assert copies("ALPHA1", "Normal") == 2
    assert (copies("ALPHADR", "Caught Up"), copies("ALPHADR", "Dejournaling")) == (1, 1)
    assert copies("ALPHA2", "Normal") is None


def test_the_collectors_health_follows_its_lease(alpha, scraper, settings):
    now = timezone.now()
    lease = Lease.objects.create(
        name="collector",
        holder="web-1",
        epoch=7,
        expires_at=now + timedelta(seconds=settings.MONITOR_LEASE_S - 2),
        acquired_at=now - timedelta(hours=1),
    )

    held = scrape(scraper)
    lease.expires_at = now - timedelta(seconds=30)
    lease.save()
    lapsed = scrape(scraper)

    assert held[("mirror_portal_collector_up", frozenset())] == 1
    assert held[("mirror_portal_collector_lease_epoch", frozenset())] == 7
    assert held[("mirror_portal_collector_lease_age_seconds", frozenset())] == pytest.approx(
        2, abs=1
    )
    assert lapsed[("mirror_portal_collector_up", frozenset())] == 0
    assert lapsed[("mirror_portal_collector_lease_age_seconds", frozenset())] >= 30


def test_without_a_lease_the_collector_is_down(alpha, scraper):
    series = scrape(scraper)

    assert series[("mirror_portal_collector_up", frozenset())] == 0
    assert ("mirror_portal_collector_lease_epoch", frozenset()) not in series


def test_jobs_by_state_and_open_alerts_by_rule_with_zeros_for_the_rest(alpha, scraper):
    Job.objects.create(kind="refresh_mirror", state=Job.FAILED)
    Job.objects.create(kind="refresh_mirror", state=Job.FAILED)
    Job.objects.create(kind="check_host", state=Job.RUNNING)
    now = timezone.now()
    Alert.objects.create(
        mirror=alpha,
        rule=Alert.MEMBER_DOWN,
        key="member_down:ALPHA:ALPHA2",
        text="Down",
        opened_at=now,
    )
    Alert.objects.create(
        mirror=alpha,
        rule=Alert.MEMBER_DOWN,
        key="member_down:ALPHA:ALPHA2",
        text="Down earlier",
        opened_at=now - timedelta(days=1),
        resolved_at=now - timedelta(hours=20),
    )

    series = scrape(scraper)

    def jobs(state):
        return series[("mirror_portal_jobs", frozenset({"state": state}.items()))]

    def alerts(rule):
        return series[("mirror_portal_alerts_open", frozenset({"rule": rule}.items()))]

    assert (jobs("failed"), jobs("running"), jobs("queued")) == (2, 1, 0)
    assert (alerts("member_down"), alerts("async_lag")) == (1, 0)


def test_a_scraper_that_asks_for_openmetrics_gets_it(alpha, scraper):
    response = scraper.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_a_plain_scrape_is_prometheus_text(alpha, scraper):
    response = scraper.get("/metrics")

    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert (
        'mirror_member_status{member="ALPHA2",mirror="ALPHA",status="Down",type="failover"} 1.0'
        in (response.content.decode())
    )


def test_a_viewer_logged_in_on_the_site_reads_the_metrics_too(alpha, viewer):
    client = Client()
    client.force_login(viewer)

    assert ("mirror_portal_collector_up", frozenset()) in scrape(client)


def test_metrics_are_refused_without_credentials_and_the_refusal_is_logged(alpha, caplog):
    with caplog.at_level(logging.WARNING, logger="monitor.metrics"):
        response = Client().get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"mirror_member_status" not in response.content
    assert "No credentials" in caplog.text and "refused" in caplog.text


def test_a_wrong_or_revoked_token_is_refused_with_its_reason_logged(alpha, viewer, caplog):
    token, secret = create_token(viewer, name="old")
    token.revoked_at = timezone.now()
    token.save()

    with caplog.at_level(logging.WARNING, logger="monitor.metrics"):
        wrong = Client(HTTP_AUTHORIZATION="Bearer mp_not-a-token").get("/metrics")
        revoked = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/metrics")

    assert (wrong.status_code, revoked.status_code) == (401, 401)
    assert caplog.text.count("not valid or has been revoked") == 2
    assert secret not in caplog.text


def test_a_user_without_a_role_is_forbidden(alpha, caplog):
    _, secret = create_token(make_user("no-role", None), name="scraper")

    with caplog.at_level(logging.WARNING, logger="monitor.metrics"):
        response = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/metrics")

    assert response.status_code == 403
    assert "no-role" in caplog.text and "no viewer role" in caplog.text


def test_metrics_only_answer_reads(alpha, scraper):
    assert scraper.post("/metrics").status_code == 405


def test_a_scrape_costs_a_handful_of_queries_whatever_the_number_of_members(
    alpha, scraper, django_assert_max_num_queries
):
    scrape(scraper)  # the token's last use is written once a minute: not part of the bound
    for _ in range(10):
        mirror = factories.mirror(requires_tls=False)
        for member_type in ("failover", "failover", "dr"):
            member = factories.member(mirror, member_type=member_type)
            live(member, "Connected", transfer_lag_s=1.0, record={"databases": []})
    Lease.objects.create(
        name="collector",
        holder="web-1",
        epoch=1,
        expires_at=timezone.now() + timedelta(seconds=3),
        acquired_at=timezone.now(),
    )

    # the token, the caller's role, members with their live state, lease, jobs, alerts
    with django_assert_max_num_queries(6):
        series = scrape(scraper)

    statuses = [key for key in series if key[0] == "mirror_member_status" and series[key] == 1]
    assert len(statuses) == 33
