"""Requests the API can answer never get a 500 (issue #9 item 7): an action asked for HTML with
a body that is not JSON is refused before anything changes, and filters bound their length."""

import pytest

from members.models import Member

V1 = "/api/v1"


def test_an_action_asked_for_html_with_a_non_json_body_changes_nothing(world, api):
    response = api.post(
        V1 + f"/pending-members/{world.pending.pk}/authorize/",
        data="authorize=please",
        content_type="application/x-www-form-urlencoded",
        HTTP_ACCEPT="text/html",
    )

    assert response.status_code == 406  # refused before the view runs
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_acceptable"
    assert Member.objects.get(pk=world.pending.pk).authorization == world.pending.authorization


def test_a_browser_gets_json_from_the_api(world, api):
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = api.get(V1 + "/mirrors/", HTTP_ACCEPT=browser_accept)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["results"][0]["name"] == "ALPHA"


@pytest.mark.parametrize("resource,param", [("mirrors", "name"), ("hosts", "address")])
def test_a_filter_value_longer_than_any_name_is_a_400(world, api, resource, param):
    response = api.get(V1 + f"/{resource}/", {param: "x" * 50_001})

    assert response.status_code == 400
    assert response.json()["error"]["fields"][param][0]["code"] == "max_length"
