"""The mirrors' history over REST: /api/v1/events/, newest first, paginated, filtered by mirror,
member, kind, time and job; a bad filter is a 400 that names it."""

from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from monitor.models import Event
from monitor.services import add_event
from tasks.services import start_job
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.api

EVENTS = "/api/v1/events/"


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def history(db, now):
    """ALPHA's backup went Down an hour ago and came back ten minutes ago; BETA1 started."""
    alpha = factories.mirror(name="ALPHA", requires_tls=False)
    beta = factories.mirror(name="BETA", requires_tls=False)
    return {
        "down": add_event(
            alpha,
            Event.STATUS,
            "ALPHA2 Backup → Down",
            member_name="ALPHA2",
            before="Backup",
            after="Down",
            at=now - timedelta(hours=1),
        ),
        "agent": add_event(
            alpha,
            Event.AGENT,
            "agent of ALPHA2 unreachable",
            member_name="ALPHA2",
            at=now - timedelta(minutes=59),
        ),
        "back": add_event(
            alpha,
            Event.STATUS,
            "ALPHA2 Down → Backup",
            member_name="ALPHA2",
            before="Down",
            after="Backup",
            at=now - timedelta(minutes=10),
        ),
        "beta": add_event(
            beta,
            Event.STATUS,
            "BETA1 became Primary",
            member_name="BETA1",
            after="Primary",
            at=now - timedelta(minutes=5),
        ),
    }


@pytest.fixture
def client(viewer):
    return api_client_for(viewer)


def texts(response):
    assert response.status_code == 200, response.content[:500]
    return [e["text"] for e in response.json()["results"]]


def test_a_viewer_reads_the_history_newest_first_and_paginated(history, client):
    response = client.get(EVENTS, {"limit": 2})

    body = response.json()
    assert body["count"] == 4 and body["next"]
    assert texts(response) == ["BETA1 became Primary", "ALPHA2 Down → Backup"]
    first = body["results"][0]
    assert first["mirror_name"] == "BETA" and first["kind"] == "status"
    assert first["after"] == "Primary" and first["job"] is None and first["job_url"] is None


def test_events_are_filtered_by_mirror_name_in_any_case(history, client):
    assert texts(client.get(EVENTS, {"mirror": "beta"})) == ["BETA1 became Primary"]


def test_events_are_filtered_by_member_and_kind(history, client):
    response = client.get(EVENTS, {"member": "alpha2", "kind": "status"})

    assert texts(response) == ["ALPHA2 Down → Backup", "ALPHA2 Backup → Down"]
    assert texts(client.get(EVENTS, {"kind": "agent"})) == ["agent of ALPHA2 unreachable"]


def test_events_are_filtered_by_a_time_window_both_ends_included(history, client, now):
    since = (now - timedelta(minutes=59)).isoformat()
    until = (now - timedelta(minutes=10)).isoformat()

    response = client.get(EVENTS, {"since": since, "until": until})

    assert texts(response) == ["ALPHA2 Down → Backup", "agent of ALPHA2 unreachable"]


def test_a_window_written_with_z_or_an_offset_means_the_same_instant(history, client, now):
    utc = (now - timedelta(minutes=7)).astimezone(UTC)
    as_z = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    as_offset = utc.astimezone(timezone.get_fixed_timezone(120)).isoformat()

    assert texts(client.get(EVENTS, {"since": as_z})) == ["BETA1 became Primary"]
    assert texts(client.get(EVENTS, {"since": as_offset})) == ["BETA1 became Primary"]


def test_an_offset_postgresql_cannot_hold_is_read_as_the_same_instant_in_utc(history, client, now):
    # Python takes offsets up to ±23:59, PostgreSQL only to ±15:59: schemathesis found the 500
    utc = (now - timedelta(minutes=7)).astimezone(UTC)
    far_west = utc.astimezone(timezone.get_fixed_timezone(-(16 * 60 + 3))).isoformat()

    response = client.get(EVENTS, {"since": far_west})

    assert response.status_code == 200
    assert texts(response) == ["BETA1 became Primary"]


def test_events_are_filtered_by_job(history, client, admin_user):
    mirror = history["beta"].mirror
    job = start_job(admin_user, "refresh_mirror", mirror, mirror=mirror)
    add_event(mirror, Event.JOB, f"refresh_mirror #{job.pk} started", job=job)

    response = client.get(EVENTS, {"job": job.pk})

    assert texts(response) == [f"refresh_mirror #{job.pk} started"]
    assert response.json()["results"][0]["job_url"].endswith(f"/jobs/{job.pk}/")


@pytest.mark.parametrize(
    "params,field",
    [
        ({"since": "an hour ago"}, "since"),
        ({"until": "2024-02-30T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00+05:00"}, "since"),
        ({"kind": "gossip"}, "kind"),
        ({"job": "999999"}, "job"),
        ({"mirror": "x" * 5000}, "mirror"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_field(history, client, params, field):
    response = client.get(EVENTS, params)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == [field]
    assert error["message"]


def test_the_history_is_refused_to_anonymous_callers(history):
    response = APIClient().get(EVENTS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_the_history_is_read_only(history, api):
    assert api.post(EVENTS, {"text": "made up"}, format="json").status_code == 405
    assert api.delete(EVENTS).status_code == 405


def test_reading_the_history_costs_the_same_for_many_events(
    history, client, django_assert_max_num_queries
):
    mirror = history["beta"].mirror
    for i in range(30):
        add_event(mirror, Event.DATABASE, f"SALES{i} Normal", member_name="BETA1")

    with django_assert_max_num_queries(3):  # the caller's role, count, page
        assert len(texts(client.get(EVENTS))) == 34
