"""Errors come in one JSON shape with machine-readable codes per field, and no input, however
malformed, gets a 5xx.

A mirror's rules are those of the operations that change it: creating one (POST /mirrors/),
changing its settings, joining it. A refused request starts no job."""

import json

import pytest

from members import services
from tasks.models import Job
from tests.api.conftest import RESOURCES

V1 = "/api/v1"


def field_codes(response, field):
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "fields"} <= set(body["error"])
    return [e["code"] for e in body["error"]["fields"][field]]


def new_mirror(world, **fields):
    """A body for POST /mirrors/: a new mirror on the spare host's instance IRIS."""
    body = {"host": world.spare_host.pk, "instance": "IRIS", "private": "10.9.9.9:2188"}
    return body | {"name": "GAMMA"} | fields


def test_an_invalid_mirror_name_is_the_catalogs_code_on_field_name(world, api):
    response = api.post(V1 + "/mirrors/", new_mirror(world, name="no spaces!"), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert field_codes(response, "name") == ["invalid_mirror_name"]
    assert "letters or digits" in response.json()["error"]["message"]


MIRROR_RULES = [
    ({"name": "A" * 16}, "name", "invalid_mirror_name"),
    ({"name": "alpha"}, "name", "unique"),  # stored uppercase: ALPHA exists
    ({"arbiter_port": 70000}, "arbiter_port", "invalid_port"),
    ({"qos_timeout_ms": 5}, "qos_timeout_ms", "invalid_qos_timeout"),
    ({"vip_address": "10.0.0.9"}, "vip_address", "incomplete_vip"),
    (
        {"vip_address": "vip.example", "vip_mask": 24, "vip_interface": "eth0"},
        "vip_address",
        "invalid_vip",
    ),
    (
        {"vip_address": "10.0.0.9", "vip_mask": 33, "vip_interface": "eth0"},
        "vip_mask",
        "invalid_vip_mask",
    ),
    ({"failover_compression": "gzip"}, "failover_compression", "invalid_compression_mode"),
    ({"async_compression_type": "rar"}, "async_compression_type", "invalid_compression_type"),
    ({"requires_tls": "maybe"}, "requires_tls", "invalid"),
    ({"arbiter_host": "bad host!"}, "arbiter_host", "invalid_address"),
    ({"private": "10.9.9.9"}, "private", "invalid"),  # host:port
    ({"private": "10.9.9.9:0"}, "private", "invalid_port"),
    ({"private": "bad host!:2188"}, "private", "invalid_address"),
    ({"host": 999999}, "host", "does_not_exist"),
]


@pytest.mark.parametrize("fields,field,code", MIRROR_RULES, ids=[r[2] for r in MIRROR_RULES])
def test_each_mirror_rule_reports_its_own_code(world, api, fields, field, code):
    response = api.post(V1 + "/mirrors/", new_mirror(world, **fields), format="json")

    assert response.status_code == 400
    assert code in field_codes(response, field)
    assert not Job.objects.filter(kind="create_mirror").exists()


@pytest.mark.parametrize("field", ["host", "instance", "name", "private"])
def test_a_new_mirror_needs_a_host_an_instance_a_name_and_a_private_address(world, api, field):
    body = new_mirror(world)
    del body[field]

    response = api.post(V1 + "/mirrors/", body, format="json")

    assert response.status_code == 400
    assert field_codes(response, field) == ["required"]


SETTING_RULES = [
    ({"qos_timeout_ms": 5}, "qos_timeout_ms", "invalid_qos_timeout"),
    ({"qos_timeout_ms": 600_001}, "qos_timeout_ms", "invalid_qos_timeout"),
    ({"failover_compression": "gzip"}, "failover_compression", "invalid_compression_mode"),
    ({"parallel_dejournaling": "some"}, "parallel_dejournaling", "invalid_parallel_dejournaling"),
    ({"vip_address": "10.0.0.9"}, "vip_address", "incomplete_vip"),
    ({"arbiter_port": 0}, "arbiter_port", "invalid_port"),
    ({"arbiter_host": "bad host!"}, "arbiter_host", "invalid_address"),
    ({"skip_verify": "perhaps"}, "skip_verify", "invalid"),
]


@pytest.mark.parametrize("fields,field,code", SETTING_RULES, ids=[r[2] for r in SETTING_RULES])
def test_changing_a_setting_is_checked_by_the_same_rule(world, api, fields, field, code):
    before = (world.mirror.arbiter_host, world.mirror.arbiter_port)

    response = api.post(V1 + f"/mirrors/{world.mirror.pk}/settings/", fields, format="json")

    assert response.status_code == 400
    assert code in field_codes(response, field)
    assert not Job.objects.filter(kind="edit_mirror").exists()
    world.mirror.refresh_from_db()
    assert (world.mirror.arbiter_host, world.mirror.arbiter_port) == before  # nothing saved


def test_a_mirror_is_never_edited_or_deleted_directly(world, api):
    path = V1 + f"/mirrors/{world.mirror.pk}/"
    before = api.get(path).json()

    answers = [
        api.put(path, {"name": "ALPHA", "qos_timeout_ms": 9000}, format="json"),
        api.patch(path, {"qos_timeout_ms": 9000}, format="json"),
        api.delete(path),
    ]

    assert [a.status_code for a in answers] == [405, 405, 405]
    assert {a.json()["error"]["code"] for a in answers} == {"method_not_allowed"}
    assert api.get(path).json() == before


def join(api, world, **fields):
    return api.post(V1 + f"/mirrors/{world.mirror.pk}/join/", fields, format="json")


def test_a_limit_breach_gives_the_rules_code(world, api):
    # ALPHA already has two failover members (one authorized, one pending).
    response = join(
        api,
        world,
        host=world.spare_host.pk,
        instance="ALPHA3",
        member_type="failover",
        private="10.2.2.2:2188",
    )

    assert response.status_code == 400
    assert field_codes(response, "non_field_errors") == ["too_many_failover_members"]
    assert not Job.objects.filter(kind="join_mirror").exists()


def test_a_member_type_that_does_not_exist_lists_the_valid_ones(world, api):
    response = join(api, world, host=world.spare_host.pk, instance="X", member_type="arbiter")

    assert response.status_code == 400
    assert field_codes(response, "member_type") == ["invalid_choice"]
    message = response.json()["error"]["fields"]["member_type"][0]["message"]
    for valid in ("failover", "dr", "ro_reporting", "rw_reporting"):
        assert valid in message


@pytest.mark.parametrize(
    "fields,field,code",
    [
        ({"member_type": "failover"}, "private", "required"),  # a failover member needs one
        ({"member_type": "dr", "instance": "ALPHA1"}, "member", "unique"),
        ({"member_type": "dr", "member": "no spaces"}, "member", "invalid_member_name"),
        ({"member_type": "dr", "private": "nowhere"}, "private", "invalid"),
        ({"member_type": "dr", "host": 999999}, "host", "does_not_exist"),
        ({"member_type": "dr", "instance": ""}, "instance", "blank"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_join_rule_reports_its_own_code(world, api, fields, field, code):
    body = {"host": world.spare_host.pk, "instance": "ALPHADR"} | fields

    response = join(api, world, **body)

    assert response.status_code == 400
    assert code in field_codes(response, field)


def test_an_async_on_the_arbiters_host_is_refused(world, api):
    services.update_mirror(None, world.mirror, arbiter_host=world.spare_host.address)

    response = join(api, world, host=world.spare_host.pk, instance="ALPHADR", member_type="dr")

    assert response.status_code == 400
    assert field_codes(response, "host") == ["arbiter_on_member_host"]


def test_members_are_read_only_rows(world, api):
    path = V1 + f"/members/{world.member.pk}/"

    patched = api.patch(path, {"superserver_port": 1999}, format="json")
    deleted = api.delete(path)

    assert (patched.status_code, deleted.status_code) == (405, 405)
    world.member.refresh_from_db()
    assert world.member.superserver_port == 1972


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


def test_deciding_a_dn_update_while_a_decision_is_under_way_is_refused(world, api):
    path = V1 + f"/dn-updates/{world.dn_update.pk}/"
    assert api.post(path + "authorize/").status_code == 202

    again = api.post(path + "reject/")

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "in_progress"
    assert Job.objects.filter(member=world.member).count() == 1
    world.member.refresh_from_db()
    assert world.member.x509_dn == ""  # the job, once it has run, records the primary's answer


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
        ("post", "/mirrors/{mirror}/settings/"),
        ("post", "/mirrors/{mirror}/join/"),
        ("post", "/mirrors/{mirror}/remove/"),
        ("post", "/mirrors/{mirror}/forget/"),
        ("post", "/hosts/"),
        ("post", "/hosts/{host}/import/"),
        ("post", "/instances/{instance}/tls/"),
        ("post", "/members/{member}/addresses/"),
        ("post", "/members/{member}/superserver-port/"),
        ("post", "/members/{member}/catchup/"),
        ("post", "/members/{member}/add-database/"),
        ("post", "/databases/"),
        ("patch", "/databases/{database}/"),
        ("post", "/database-copies/{copy}/mount/"),
        ("post", "/tokens/"),
        ("post", "/users/"),
        ("patch", "/users/{someone}/"),
    ],
)
def test_malformed_bodies_never_get_a_5xx(
    world, api, method, path, label, body, content_type, unreadable
):
    ids = {name: getattr(world, name).pk for name in ("mirror", "host", "instance", "member")}
    ids |= {"database": world.database.pk, "copy": world.copy.pk, "someone": world.someone.pk}
    url = V1 + path.format(**ids)

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
    assert api.post(V1 + "/mirrors/", new_mirror(world), format="json").status_code == 202


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
