"""The OpenAPI schema generates without a single warning and describes what the API does."""

import io
import re

import pytest
import yaml
from django.core.management import call_command

from tests.api.conftest import RESOURCES, bearer

V1 = "/api/v1"


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "schema.yaml"
    stderr = io.StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out), stderr=stderr)
    return yaml.safe_load(out.read_text()), stderr.getvalue()


def test_schema_generation_gives_no_warnings(schema):
    _, stderr = schema

    assert "Warning" not in stderr and "Error" not in stderr, stderr


def test_every_resource_is_in_the_schema(schema):
    doc, _ = schema
    paths = set(doc["paths"])

    for resource in RESOURCES:
        assert f"{V1}/{resource}/" in paths
        assert f"{V1}/{resource}/{{id}}/" in paths


# Operations, with the body each takes (None: no body). Each answers 202 with the queued job.
OPERATIONS = {
    "/hosts/{id}/check/": None,
    "/hosts/{id}/import/": "ImportMirrorRequest",
    "/instances/{id}/tls/": "InstanceTLSRequest",
    "/mirrors/": "CreateMirrorRequest",
    "/mirrors/{id}/refresh/": None,
    "/mirrors/{id}/settings/": "EditMirrorRequest",
    "/mirrors/{id}/adopt-settings/": None,
    "/mirrors/{id}/reapply-settings/": None,
    "/mirrors/{id}/join/": "JoinMirrorRequest",
    "/mirrors/{id}/remove/": "RemoveMirrorRequest",
    "/members/{id}/addresses/": "MemberAddressRequest",
    "/members/{id}/superserver-port/": "SuperserverPortRequest",
    "/members/{id}/remove/": "ConfirmRequest",
    "/members/{id}/leave/": "LeaveMirrorRequest",
    "/members/{id}/stop-mirroring/": None,
    "/members/{id}/start-mirroring/": None,
    "/members/{id}/stop-dejournaling/": None,
    "/members/{id}/start-dejournaling/": None,
    "/members/{id}/stop-instance/": None,
    "/members/{id}/set-no-failover/": None,
    "/members/{id}/clear-no-failover/": None,
    "/members/{id}/force-primary/preview/": None,
    "/members/{id}/force-primary/": "ConfirmRequest",
    "/members/{id}/promote/": "ConfirmRequest",
    "/members/{id}/demote/": "ConfirmRequest",
    "/members/{id}/promote-to-primary/preview/": "PartnerRequest",
    "/members/{id}/promote-to-primary/": "PromoteToPrimaryRequest",
    "/members/{id}/clear-validated-member/": None,
    "/members/{id}/catchup/": "DatabaseNamesRequest",
    "/members/{id}/clear-failover-db/": "DatabaseNamesRequest",
    "/members/{id}/add-database/": "DatabaseNameRequest",
    "/pending-members/{id}/authorize/": None,
    "/pending-members/{id}/reject/": "ConfirmRequest",
    "/dn-updates/{id}/authorize/": None,
    "/dn-updates/{id}/reject/": None,
    "/databases/": "CreateDatabaseRequest",
    "/database-copies/{id}/download/": None,
    "/database-copies/{id}/activate/": None,
    "/database-copies/{id}/mount/": "MountRequest",
    "/database-copies/{id}/dismount/": None,
    "/database-copies/{id}/remove/": "ConfirmRequest",
    "/database-copies/{id}/pause/": None,
    "/database-copies/{id}/resume/": None,
    "/jobs/{id}/retry/": None,
}


@pytest.mark.parametrize("path", OPERATIONS)
def test_each_operation_is_documented_as_202_with_its_job_and_its_body(schema, path):
    doc, _ = schema
    post = doc["paths"][V1 + path]["post"]

    assert set(post["responses"]) & {"200", "201", "202", "204"} == {"202"}, post["responses"]
    job = post["responses"]["202"]["content"]["application/json"]["schema"]
    assert job["$ref"] == "#/components/schemas/Job"
    body = OPERATIONS[path]
    if body is None:
        assert "requestBody" not in post, post["requestBody"]
    else:
        content = post["requestBody"]["content"]["application/json"]["schema"]
        assert content["$ref"] == f"#/components/schemas/{body}"


def test_a_forgotten_mirror_is_documented_as_204(schema):
    doc, _ = schema
    forget = doc["paths"][f"{V1}/mirrors/{{id}}/forget/"]["post"]

    assert set(forget["responses"]) & {"200", "201", "202", "204"} == {"204"}
    body = forget["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == "#/components/schemas/ConfirmRequest"


def test_a_mirrors_rows_are_documented_read_only(schema):
    doc, _ = schema
    paths = doc["paths"]

    assert set(paths[f"{V1}/mirrors/{{id}}/"]) & {"put", "patch", "delete"} == set()
    for resource in ("members", "dn-updates", "database-copies", "instances", "drifts"):
        assert "post" not in paths[f"{V1}/{resource}/"], resource
        assert set(paths[f"{V1}/{resource}/{{id}}/"]) & {"put", "patch", "delete"} == set()
    assert "delete" not in paths[f"{V1}/databases/{{id}}/"]


def test_the_schema_documents_bearer_tokens_and_the_error_shape(schema):
    doc, _ = schema
    components = doc["components"]

    assert components["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    mirror_create = doc["paths"][f"{V1}/mirrors/"]["post"]["responses"]
    assert mirror_create["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert set(components["schemas"]["ErrorBody"]["properties"]) == {"code", "message", "fields"}


def test_secrets_are_write_only_or_shown_once_in_the_schema(schema):
    schemas = schema[0]["components"]["schemas"]

    assert "credential" not in schemas["Host"]["properties"]
    assert "credential" in schemas["HostRequest"]["properties"]
    assert "secret" in schemas["NewToken"]["properties"]
    assert "secret" not in schemas["Token"]["properties"]
    assert not any("key_hash" in s.get("properties", {}) for s in schemas.values())


def test_schema_and_docs_are_served_to_a_viewer(world, client_for):
    client = client_for("viewer")

    served = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/docs/")

    assert served.status_code == 200
    assert served.json()["info"]["title"] == "Mirror Portal API"
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert bearer("mp_wrong").get("/api/schema/").status_code == 401


def test_the_docs_page_loads_swagger_ui_from_our_own_static_files(world, client_for):
    from django.contrib.staticfiles import finders

    html = client_for("viewer").get("/api/docs/").content.decode()

    assets = re.findall(r'(?:src|href)="([^"]+swagger-ui[^"]*)"', html)
    assert assets, html[:500]
    for url in assets:  # nothing from another site: the page works offline
        assert url.startswith("/static/drf_spectacular_sidecar/"), url
        assert finders.find(url.removeprefix("/static/")), f"{url} is not among our static files"
    assert "cdn" not in html.lower()
