"""The OpenAPI schema generates without a single warning and describes what the API does."""

import io

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
    assert f"{V1}/hosts/{{id}}/check/" in paths
    assert "202" in doc["paths"][f"{V1}/hosts/{{id}}/check/"]["post"]["responses"]


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
