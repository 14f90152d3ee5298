"""A mirror's live status and its chart samples over REST: /api/v1/mirrors/{name or id}/status/
and /samples/, read by viewers, beside the members API's /mirrors/{id}/ routes."""

from datetime import timedelta

import pytest
from django.urls import resolve
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import create_token
from members.api.views import MirrorViewSet
from monitor.api.views import (
    LiveMemberSerializer,
    MirrorSamplesView,
    MirrorStatusSerializer,
    MirrorStatusView,
)
from monitor.models import Alert, Lease, Sample
from tests import factories
from tests.conftest import api_client_for, make_user
from tests.factories import member_state as live

pytestmark = pytest.mark.api

V1 = "/api/v1"


@pytest.fixture
def alpha(db):
    """ALPHA: primary ALPHA1, backup ALPHA2, DR async ALPHADR, all streamed by the collector."""
    mirror = factories.mirror(name="ALPHA", requires_tls=False)
    primary = factories.member(mirror, name="ALPHA1")
    backup = factories.member(mirror, name="ALPHA2")
    dr = factories.member(mirror, name="ALPHADR", member_type="dr")
    live(
        primary,
        "Primary",
        journal_transfer="N/A",
        dejournaling="N/A",
        record={"failover_mode": "Agent Controlled", "state": "up"},
    )
    live(
        backup,
        "Backup",
        journal_transfer="Active",
        dejournaling="Caught up",
        transfer_lag_s=0.0,
        dejournal_lag_s=0.0,
        record={"databases": [{"name": "SALES", "status": "Normal"}], "state": "up"},
    )
    live(
        dr,
        "Connected",
        journal_transfer="12s behind",
        dejournaling="3s behind",
        transfer_lag_s=12.0,
        dejournal_lag_s=3.0,
        record={
            "incoming_journal_figures": {"network_kb_s": 40.0, "journal_kb_s": 120.0},
            "state": "up",
        },
    )
    return mirror


@pytest.fixture
def viewer_api(viewer):
    return api_client_for(viewer)


# --- status -------------------------------------------------------------------------------------
def test_a_viewer_reads_a_mirrors_live_status_by_its_name_in_any_case(alpha, viewer_api):
    response = viewer_api.get(V1 + "/mirrors/alpha/status/")

    assert response.status_code == 200
    body = response.json()
    assert body["mirror"] == "ALPHA"
    assert [m["name"] for m in body["members"]] == ["ALPHA1", "ALPHA2", "ALPHADR"]
    assert [m["status"] for m in body["members"]] == ["Primary", "Backup", "Connected"]
    assert body["failover_mode"] == "Agent Controlled"
    assert [m["name"] for m in body["failover_members"]] == ["ALPHA1", "ALPHA2"]


def test_the_status_carries_each_members_live_lag_and_record(alpha, viewer_api):
    members = {
        m["name"]: m for m in viewer_api.get(V1 + "/mirrors/ALPHA/status/").json()["members"]
    }

    dr = members["ALPHADR"]
    assert dr["journal_transfer"] == "12s behind"
    assert (dr["transfer_lag_s"], dr["dejournal_lag_s"]) == (12.0, 3.0)
    assert dr["agent_reachable"] is True
    assert dr["record"]["incoming_journal_figures"]["journal_kb_s"] == 120.0
    assert members["ALPHA2"]["record"]["databases"] == [{"name": "SALES", "status": "Normal"}]


def test_the_status_has_exactly_the_documented_shape(alpha, viewer_api):
    body = viewer_api.get(V1 + "/mirrors/ALPHA/status/").json()

    assert set(body) == set(MirrorStatusSerializer().fields)
    for member in body["members"]:
        assert set(member) == set(LiveMemberSerializer().fields)


def test_the_status_shows_open_alerts_and_the_collectors_lease(alpha, viewer_api):
    now = timezone.now()
    Alert.objects.create(
        mirror=alpha, rule=Alert.ASYNC_LAG, key="async_lag:ALPHA:ALPHADR", text="lag", opened_at=now
    )
    Lease.objects.create(
        name="collector",
        holder="web-1",
        epoch=2,
        expires_at=now + timedelta(seconds=3),
        acquired_at=now - timedelta(minutes=5),
    )

    body = viewer_api.get(V1 + "/mirrors/ALPHA/status/").json()

    assert [a["rule"] for a in body["alerts"]] == ["async_lag"]
    assert body["collector"]["live"] is True and body["collector"]["holder"] == "web-1"


def test_a_member_the_collector_has_not_seen_yet_has_no_live_figures(viewer_api):
    mirror = factories.mirror(name="BETA", requires_tls=False)
    factories.member(mirror, name="BETA1")

    (member,) = viewer_api.get(V1 + "/mirrors/BETA/status/").json()["members"]

    assert member["agent_reachable"] is None and member["transfer_lag_s"] is None
    assert member["seen_at"] is None and member["record"] == {}


def test_the_status_is_found_by_the_mirrors_id_too(alpha, viewer_api):
    response = viewer_api.get(V1 + f"/mirrors/{alpha.pk}/status/")

    assert response.status_code == 200 and response.json()["mirror"] == "ALPHA"


def test_an_unknown_mirror_is_a_404_in_the_apis_error_shape(alpha, viewer_api):
    for key in ("NOSUCH", "99999", "x" * 300):
        response = viewer_api.get(V1 + f"/mirrors/{key}/status/")

        assert response.status_code == 404, key
        assert response.json()["error"]["code"] == "not_found"
    assert "NOSUCH" in viewer_api.get(V1 + "/mirrors/NOSUCH/status/").json()["error"]["message"]


def test_an_anonymous_caller_is_asked_for_a_token_and_a_roleless_user_is_refused(alpha):
    _, secret = create_token(make_user("no-role", None), name="script")
    roleless = APIClient()
    roleless.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    anonymous = APIClient().get(V1 + "/mirrors/ALPHA/status/")

    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert roleless.get(V1 + "/mirrors/ALPHA/status/").status_code == 403
    assert APIClient().get(V1 + "/mirrors/ALPHA/samples/").status_code == 401


def test_a_viewers_token_reads_the_status(alpha, viewer):
    _, secret = create_token(viewer, name="dashboard")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert client.get(V1 + "/mirrors/ALPHA/status/").status_code == 200


def test_the_status_is_read_only(alpha, api):
    assert api.post(V1 + "/mirrors/ALPHA/status/", {}, format="json").status_code == 405
    assert api.delete(V1 + "/mirrors/ALPHA/samples/").status_code == 405


def test_the_monitor_routes_live_beside_the_members_apis_mirror_routes(alpha, viewer_api):
    assert resolve(V1 + "/mirrors/ALPHA/status/").func.view_class is MirrorStatusView
    assert resolve(V1 + "/mirrors/ALPHA/samples/").func.view_class is MirrorSamplesView
    assert resolve(V1 + f"/mirrors/{alpha.pk}/").func.cls is MirrorViewSet
    assert resolve(V1 + f"/mirrors/{alpha.pk}/refresh/").func.cls is MirrorViewSet
    assert viewer_api.get(V1 + f"/mirrors/{alpha.pk}/").json()["name"] == "ALPHA"


# --- samples ------------------------------------------------------------------------------------
def sample(member, seconds_ago, **values):
    return Sample.objects.create(
        member=member, at=timezone.now() - timedelta(seconds=seconds_ago), **values
    )


def test_samples_come_as_columns_per_member_oldest_first(alpha, viewer_api):
    dr = alpha.members.get(name="ALPHADR")
    first = sample(dr, 20, transfer_lag_s=4.0, dejournal_lag_s=1.0, journal_kb_s=100.0)
    second = sample(dr, 10, transfer_lag_s=6.0, dejournal_lag_s=2.0, network_kb_s=30.0)

    response = viewer_api.get(V1 + "/mirrors/alpha/samples/")

    assert response.status_code == 200
    body = response.json()
    assert body["mirror"] == "ALPHA"
    assert set(body["members"]) == {"ALPHA1", "ALPHA2", "ALPHADR"}
    columns = body["members"]["ALPHADR"]
    assert columns == {
        "at": [round(first.at.timestamp(), 3), round(second.at.timestamp(), 3)],
        "transfer_lag_s": [4.0, 6.0],
        "dejournal_lag_s": [1.0, 2.0],
        "journal_kb_s": [100.0, None],
        "network_kb_s": [None, 30.0],
    }
    assert body["members"]["ALPHA1"] == {
        "at": [],
        "transfer_lag_s": [],
        "dejournal_lag_s": [],
        "journal_kb_s": [],
        "network_kb_s": [],
    }


def test_samples_older_than_the_hour_kept_are_left_out_even_when_asked_for(alpha, viewer_api):
    dr = alpha.members.get(name="ALPHADR")
    sample(dr, 2 * 3600, transfer_lag_s=99.0)
    sample(dr, 60, transfer_lag_s=5.0)
    long_ago = (timezone.now() - timedelta(days=1)).isoformat()

    default = viewer_api.get(V1 + "/mirrors/ALPHA/samples/").json()
    asked = viewer_api.get(V1 + "/mirrors/ALPHA/samples/", {"since": long_ago}).json()

    assert default["members"]["ALPHADR"]["transfer_lag_s"] == [5.0]
    assert asked["members"]["ALPHADR"]["transfer_lag_s"] == [5.0]


def test_since_gives_only_the_samples_taken_after_it(alpha, viewer_api):
    dr = alpha.members.get(name="ALPHADR")
    held = sample(dr, 30, transfer_lag_s=1.0)
    sample(dr, 5, transfer_lag_s=2.0)

    body = viewer_api.get(V1 + "/mirrors/ALPHA/samples/", {"since": held.at.isoformat()}).json()

    assert body["members"]["ALPHADR"]["transfer_lag_s"] == [2.0]
    assert body["since"] == pytest.approx(held.at.timestamp(), abs=0.001)


def test_another_mirrors_samples_stay_out(alpha, viewer_api):
    other = factories.mirror(name="GAMMA", requires_tls=False)
    sample(factories.member(other, name="GAMMA1"), 10, transfer_lag_s=7.0)

    body = viewer_api.get(V1 + "/mirrors/ALPHA/samples/").json()

    assert "GAMMA1" not in body["members"]


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01T00:00:00Z", "0001-01-01T00:00+05:00"])
def test_a_bad_since_is_a_400_that_says_why(alpha, viewer_api, since):
    response = viewer_api.get(V1 + "/mirrors/ALPHA/samples/", {"since": since})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and "since" in error["fields"]
    assert error["message"]


def test_samples_of_an_unknown_mirror_are_a_404(viewer_api, db):
    assert viewer_api.get(V1 + "/mirrors/NOSUCH/samples/").status_code == 404
