"""engine/agent_api.yaml describes the agent's API exactly: the same routes as the agent,
and real answers of a running agent validate against its schemas."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.agent.config import parse_agent_config
from engine.agent.server import ROUTES, make_app
from tests.engine.agent_fixtures import (  # noqa: F401
    follow_fixture,
    instance_entries,
    pki_fixture,
    start_agent_fixture,
)
from tests.engine.cluster_fixtures import make_cluster_fixture  # noqa: F401

SPEC_PATH = Path(__file__).resolve().parents[2] / "engine" / "agent_api.yaml"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def spec_routes(spec: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_description_lists_exactly_the_agent_routes(spec, tmp_path):
    assert spec["openapi"].startswith("3.")
    declared = {(method, path) for method, path, _ in ROUTES}
    assert spec_routes(spec) == declared
    app = make_app(parse_agent_config({"agent": {"auth": {"credential": "c" * 20}}}, tmp_path))
    registered = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method in {m.upper() for m in METHODS}
    }
    assert registered == declared


def test_every_path_parameter_is_described_and_every_operation_documents_401(spec):
    for path, item in spec["paths"].items():
        in_path = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        params = [
            spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            for p in item.get("parameters", [])
        ]
        assert {p["name"] for p in params if p["in"] == "path"} == in_path, path
        for method in METHODS & set(item):
            assert "401" in item[method]["responses"], (method, path)
            assert item[method]["operationId"]


def validator(spec: dict, schema_name: str):
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.timeout(60)
def test_live_answers_validate_against_the_schemas(spec, pki, start_agent, make_cluster, tmp_path):
    cluster = make_cluster(types=("failover",), databases=("USER",))
    entries = instance_entries(cluster)
    entries.append({"name": "GHOST", "superserver": "127.0.0.1:1", "data_dir": str(tmp_path)})
    agent = start_agent(pki=pki, instances=entries)
    with agent.client() as c:
        validator(spec, "Health").validate(c.health())
        rows = c.instances()
        assert {r["name"]: r["state"] for r in rows} == {"A": "up", "GHOST": "down"}
        for row in rows:
            validator(spec, "Instance").validate(row)
        # the schemas do constrain: a state the API never sends is rejected
        assert not validator(spec, "Instance").is_valid({**rows[0], "state": "sleeping"})
        validator(spec, "JournalFiles").validate(c.call("GET", "/v1/journal/TEST/files"))
        validator(spec, "ForceDown").validate(c.force_down("A"))
        validator(spec, "ForceDown").validate(c.force_down("GHOST"))
        status, _, body = c.request("GET", "/v1/nowhere")
    assert status == 404
    validator(spec, "Error").validate(yaml.safe_load(body))


@pytest.mark.timeout(60)
def test_status_stream_events_validate_against_the_schemas(
    spec, start_agent, make_cluster, follow, tmp_path
):
    cluster = make_cluster(types=("failover", "dr"), databases=("USER",))
    entries = instance_entries(cluster)
    entries.append({"name": "GHOST", "superserver": "127.0.0.1:1", "data_dir": str(tmp_path)})
    agent = start_agent(instances=entries)
    f = follow(agent, retry_s=5)
    snapshot = f.next()
    validator(spec, "StatusSnapshot").validate(snapshot)
    assert snapshot["instances"]["GHOST"]["status"] == "Down"
    assert not validator(spec, "StatusSnapshot").is_valid({**snapshot, "seq": 0})
    with cluster.client() as c:
        c.set("USER", "X", (1,), "one")
    change = f.until(lambda e: e["type"] == "instance" and e["name"] == "A", what="A changes")
    validator(spec, "StatusInstanceChange").validate(change)
    agent.stop()
    goodbye = f.until(lambda e: e["type"] == "goodbye", what="the goodbye")
    validator(spec, "StatusGoodbye").validate(goodbye)
    assert goodbye["code"] == "shutdown"


@pytest.mark.timeout(90)
def test_member_and_database_operation_answers_validate_against_the_schemas(
    spec, start_agent, make_cluster
):
    cluster = make_cluster(types=("failover", "dr"), databases=("USER",))
    agent = start_agent(instances=instance_entries(cluster))
    with agent.client(credential=agent.credential) as c:
        listing = c.databases("B")
        validator(spec, "DatabaseList").validate(listing)
        assert not validator(spec, "DatabaseList").is_valid(
            {**listing, "databases": [{"name": "USER", "status": "Fine", "applied": None}]}
        )
        validator(spec, "DatabaseResult").validate(c.create_database("A", "NEWDB"))
        answers = {
            "DatabaseResult": [c.dismount("B", "USER"), c.activate("B", "USER")],
            "MountResult": [c.mount("B", "USER"), c.mount("B", "USER", catchup=True)],
            "CatchupResult": [c.catchup("B", "USER", wait=True), c.catchup("B", ["USER"])],
            "DejournalResult": [
                c.pause_database("B", "USER"),
                c.resume_database("B", "USER"),
                c.stop_dejournaling("B"),
                c.start_dejournaling("B"),
            ],
            "MirroringResult": [c.stop_mirroring("B"), c.start_mirroring("B")],
        }
        for schema, bodies in answers.items():
            for body in bodies:
                validator(spec, schema).validate(body)
        status, _, body = c.request("POST", "/v1/instances/A/databases/USER/pause")
    assert status == 409
    validator(spec, "Error").validate(yaml.safe_load(body))
