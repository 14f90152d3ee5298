"""Errors come in one JSON shape with machine-readable codes per field, and no input, however
malformed, gets a 5xx."""

import json

import pytest

from tests import factories
from tests.api.conftest import RESOURCES

V1 = "/api/v1"


def field_codes(response, field):
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "fields"} <= set(body["error"])
    return [e["code"] for e in body["error"]["fields"][field]]


def test_an_invalid_mirror_name_is_the_catalogs_code_on_field_name(world, api):
    response = api.post(V1 + "/mirrors/", {"name": "no spaces!"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert field_codes(response, "name") == ["invalid_mirror_name"]
    assert "letters or digits" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body,field,code",
    [
        ({"name": "A" * 16}, "name", "invalid_mirror_name"),
        ({"name": "alpha"}, "name", "unique"),  # stored uppercase: ALPHA exists
        ({"name": "GAMMA", "arbiter_port": 70000}, "arbiter_port", "invalid_port"),
        ({"name": "GAMMA", "qos_timeout_ms": 5}, "qos_timeout_ms", "invalid_qos_timeout"),
        ({"name": "GAMMA", "vip_address": "10.0.0.9"}, "vip_address", "incomplete_vip"),
        (
            {"name": "GAMMA", "failover_compression": "gzip"},
            "failover_compression",
            "invalid_compression_mode",
        ),
        ({"name": "GAMMA", "requires_tls": "maybe"}, "requires_tls", "invalid"),
        ({"name": "GAMMA", "arbiter_host": "bad host!"}, "arbiter_host", "invalid_address"),
        ({}, "name", "required"),
    ],
)
def test_each_mirror_rule_reports_its_own_code(world, api, body, field, code):
    response = api.post(V1 + "/mirrors/", body, format="json")

    assert response.status_code == 400
    assert code in field_codes(response, field)


def test_a_mirror_name_never_changes_but_repeating_it_is_fine(world, api):
    path = V1 + f"/mirrors/{world.mirror.pk}/"

    refused = api.patch(path, {"name": "OTHER"}, format="json")
    repeated = api.put(path, {"name": "alpha", "qos_timeout_ms": 9000}, format="json")

    assert refused.status_code == 400
    assert field_codes(refused, "name") == ["immutable"]
    assert repeated.status_code == 200 and repeated.json()["qos_timeout_ms"] == 9000
    world.mirror.refresh_from_db()
    assert world.mirror.name == "ALPHA"


def test_a_limit_breach_gives_the_rules_code(world, api):
    # ALPHA already has two failover members (one authorized, one pending).
    response = api.post(
        V1 + "/members/",
        {
            "mirror": world.mirror.pk,
            "host": world.spare_host.pk,
            "name": "ALPHA3",
            "member_type": "failover",
            "superserver_address": "10.2.2.2",
            "superserver_port": 1972,
        },
        format="json",
    )

    assert response.status_code == 400
    assert field_codes(response, "non_field_errors") == ["too_many_failover_members"]


def test_a_members_mirror_cannot_change(world, api):
    other = factories.mirror(name="OMEGA")

    response = api.patch(V1 + f"/members/{world.member.pk}/", {"mirror": other.pk}, format="json")

    assert response.status_code == 400
    assert field_codes(response, "mirror") == ["immutable"]


def test_a_host_with_members_cannot_be_deleted(world, api):
    response = api.delete(V1 + f"/hosts/{world.host.pk}/")

    assert response.status_code == 400
    assert field_codes(response, "non_field_errors") == ["host_in_use"]


def test_the_host_credential_is_write_only(world, api):
    created = api.post(
        V1 + "/hosts/",
        {"name": "h9", "address": "10.9.9.9", "credential": "agent-password"},
        format="json",
    )

    assert created.status_code == 201
    assert "credential" not in created.json()
    assert "agent-password" not in api.get(V1 + "/hosts/").content.decode()
    assert "agent-password" not in api.get(V1 + f"/hosts/{created.json()['id']}/").content.decode()


def test_deciding_a_dn_update_twice_is_refused(world, api):
    path = V1 + f"/dn-updates/{world.dn_update.pk}/"
    assert api.post(path + "authorize/").status_code == 200

    again = api.post(path + "reject/")

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_pending"
    world.member.refresh_from_db()
    assert world.member.x509_dn == "CN=alpha1,O=Example"


def test_an_admin_cannot_delete_their_own_account(world, api, admin_user):
    response = api.delete(V1 + f"/users/{admin_user.pk}/")

    assert response.status_code == 400
    assert field_codes(response, "non_field_errors") == ["self_delete"]


def test_a_users_name_and_password_do_not_change_through_update(world, api):
    path = V1 + f"/users/{world.someone.pk}/"

    renamed = api.patch(path, {"username": "someone-else"}, format="json")
    repassworded = api.patch(path, {"password": "another long phrase"}, format="json")

    assert field_codes(renamed, "username") == ["immutable"]
    assert field_codes(repassworded, "password") == ["immutable"]


def test_unknown_urls_under_the_api_get_the_error_shape(world, api):
    response = api.get(V1 + "/no-such-thing/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# Bodies no endpoint can accept...
UNREADABLE = [
    ("invalid JSON", b'{"name": ', "application/json"),
    ("not UTF-8", b'{"name": "\xff\xfe"}', "application/json"),
    ("a lone surrogate", b'{"name": "\\ud800"}', "application/json"),
    ("nested too deep", b"[" * 100_000, "application/json"),
    ("NaN", b'{"name": NaN}', "application/json"),
    ("a list, not an object", b'[{"name": "X"}]', "application/json"),
    ("a bare string", b'"ALPHA"', "application/json"),
    ("form encoding", b"name=X", "application/x-www-form-urlencoded"),
    ("XML", b"<mirror/>", "application/xml"),
]
# ...and bodies with wrong values, which an endpoint that ignores those fields may accept.
BAD_VALUES = [
    ("null", b"null", "application/json"),
    ("nested junk", b'{"name": {"a": [1, {"b": null}]}, "arbiter_port": [[]]}', "application/json"),
    (
        "huge integers",
        json.dumps({"name": "X", "qos_timeout_ms": 10**400}).encode(),
        "application/json",
    ),
    ("a huge float", b'{"name": "X", "vip_mask": 1e308}', "application/json"),
    ("a NUL character", b'{"name": "A\\u0000B"}', "application/json"),
]
BAD_BODIES = [(*b, True) for b in UNREADABLE] + [(*b, False) for b in BAD_VALUES]


@pytest.mark.parametrize(
    "label,body,content_type,unreadable", BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
@pytest.mark.parametrize(
    "method,path",
    [
        ("post", "/mirrors/"),
        ("put", "/mirrors/{mirror}/"),
        ("patch", "/members/{member}/"),
        ("post", "/members/"),
        ("post", "/hosts/"),
        ("post", "/dn-updates/"),
        ("post", "/database-copies/"),
        ("post", "/tokens/"),
        ("post", "/users/"),
        ("patch", "/users/{someone}/"),
    ],
)
def test_malformed_bodies_never_get_a_5xx(
    world, api, method, path, label, body, content_type, unreadable
):
    url = V1 + path.format(mirror=world.mirror.pk, member=world.member.pk, someone=world.someone.pk)

    response = getattr(api, method)(url, body, content_type=content_type)

    assert response.status_code < 500, (label, response.status_code)
    if unreadable:
        assert 400 <= response.status_code < 500, (label, response.status_code)
    if response.status_code >= 400:
        assert "code" in response.json()["error"]


BAD_QUERIES = [
    "mirror=99999999999999999999999999",
    "mirror=-1",
    "mirror=1.5",
    "mirror=abc",
    "host=%00",
    "name=%00",
    "mirror_name=%ff%fe",
    "member_type=nope",
    "limit=99999999999999999999999999&offset=99999999999999999999999999",
    "limit=-1&offset=-5",
    "limit=abc",
    "ordering=-no_such_field,name",
    "ordering=%00",
    "since=not-a-date",
    "since=0001-01-01T00:00:00%2B14:00",
    "until=9999-12-31T23:59:59-14:00",
    "until=4756-02-16T10%3A53%3A09.62-19%3A03",
    "actor=99999999999999999999999",
    "requires_tls=maybe",
    "state=nope",
    "unknown_filter=1",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_malformed_query_strings_never_get_a_5xx(world, api, query):
    for name in RESOURCES:
        response = api.get(f"{V1}/{name}/?{query}")

        assert response.status_code in (200, 400), (name, response.status_code)
        if response.status_code == 400:
            assert response.json()["error"]["fields"]


@pytest.mark.parametrize("pk", ["99999999999999999999999999", "0", "-1", "abc", "%00"])
def test_malformed_ids_get_404(world, api, pk):
    for name in RESOURCES:
        response = api.get(f"{V1}/{name}/{pk}/")

        assert response.status_code == 404, (name, pk)
        assert response.json()["error"]["code"] == "not_found"


def test_the_api_keeps_serving_after_bad_requests(world, api):
    api.post(V1 + "/mirrors/", b"[" * 100_000, content_type="application/json")
    api.post(V1 + "/mirrors/", b'{"name": "\\ud800"}', content_type="application/json")

    assert api.get(V1 + "/mirrors/").json()["count"] == 1
    assert api.post(V1 + "/mirrors/", {"name": "beta"}, format="json").status_code == 201


@pytest.mark.parametrize("name", RESOURCES)
def test_options_head_and_odd_accept_headers_never_get_a_5xx(world, api, name):
    url = f"{V1}/{name}/"

    assert api.options(url).status_code == 200
    assert api.head(url).status_code == 200
    refused = api.get(url, HTTP_ACCEPT="text/csv")
    assert refused.status_code == 406
    assert refused.json()["error"]["code"] == "not_acceptable"
    assert api.get(url, HTTP_ACCEPT="*/*;q=abc, application/json;;").status_code < 500


def test_an_anonymous_options_request_is_asked_to_authenticate(world, client_for):
    assert client_for(None).options(V1 + "/mirrors/").status_code == 401


@pytest.mark.parametrize(
    "method,path,body,code",
    [
        ("post", "/users/", {"username": "newbie", "password": "a long pass phrase"}, "required"),
        ("post", "/users/", {"username": "newbie", "role": None}, "invalid_choice"),
        ("patch", "/users/{someone}/", {"role": None}, "invalid_choice"),
        ("patch", "/users/{someone}/", {"role": "root"}, "invalid_choice"),
    ],
)
def test_every_user_has_one_of_the_three_roles(world, api, method, path, body, code):
    url = V1 + path.format(someone=world.someone.pk)

    response = getattr(api, method)(url, body, format="json")

    assert response.status_code == 400
    assert field_codes(response, "role") == [code]


def test_a_weak_password_is_refused_with_djangos_codes(world, api):
    response = api.post(
        V1 + "/users/",
        {"username": "newbie", "password": "password", "role": "viewer"},
        format="json",
    )

    assert response.status_code == 400
    assert "password_too_common" in field_codes(response, "password")


def test_a_bad_host_header_gets_the_json_error_shape(world, client_for):
    response = client_for("viewer").get(V1 + "/mirrors/", HTTP_HOST="M]':N")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"
