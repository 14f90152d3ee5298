"""Member and database operations through the agent, against a real mirror: real member
processes, a real agent process, HTTP on loopback (engine/agent/ops.py)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import lmdb
import pytest
import yaml

from engine.agent.ops import OPS_ROUTES
from engine.client.agent import AgentError
from engine.storage.store import Store
from tests.engine.agent_fixtures import (  # noqa: F401
    instance_entries,
    pki_fixture,
    start_agent_fixture,
    started_agent,
)
from tests.engine.cluster_fixtures import (  # noqa: F401
    make_cluster_fixture,
    started_cluster,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def mirror(make_cluster, start_agent):
    """A (primary), B (backup), C (DR async), one agent knowing all three."""
    cluster = make_cluster(types=("failover", "failover", "dr"))
    cluster.wait_backup_active()
    agent = start_agent(instances=instance_entries(cluster))
    with agent.client(credential=agent.credential) as client:
        yield cluster, agent, client


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory):
    """The same mirror and agent, started once for the tests that leave them as they found
    them (refusals, or operations they undo and wait for); a test that adds a database,
    kills or stops an instance, or leaves a database dismounted takes `mirror`."""
    root = tmp_path_factory.mktemp("shared")
    for cluster in started_cluster(root / "mirror", types=("failover", "failover", "dr")):
        for agent in started_agent(root / "agent", instances=instance_entries(cluster)):
            yield cluster, agent


@pytest.fixture
def shared_mirror(shared_site):
    """`mirror`'s (cluster, agent, client), shared: B the Active backup, C Connected."""
    cluster, agent = shared_site
    cluster.wait_backup_active()
    cluster.wait_status("C", "status", "Connected")
    with agent.client(credential=agent.credential) as client:
        yield cluster, agent, client


def db_statuses(client, instance: str) -> dict[str, str]:
    return {r["name"]: r["status"] for r in client.databases(instance)["databases"]}


def wait_db(client, instance: str, db: str, status: str) -> None:
    wait_for(
        lambda: db_statuses(client, instance).get(db) == status,
        20,
        f"{db} on {instance} to be {status}",
    )


def refusal(call, *args, **kw) -> AgentError:
    with pytest.raises(AgentError) as err:
        call(*args, **kw)
    return err.value


def test_database_created_on_the_primary_through_the_agent_appears_on_every_member(mirror):
    cluster, _, client = mirror
    out = client.create_database("A", "newdb")
    assert out["database"] == "NEWDB" and out["status"] == "Normal" and out["already"] is False
    assert client.create_database("A", "NEWDB")["already"] is True  # a retry changes nothing
    with cluster.client() as c:
        c.set("NEWDB", "G", (1,), "one")
    wait_db(client, "B", "NEWDB", "Dejournaling")
    wait_db(client, "C", "NEWDB", "Dejournaling")
    assert db_statuses(client, "A") == {"USER": "Normal", "APP": "Normal", "NEWDB": "Normal"}
    assert client.databases("B")["missing_mirrored_databases"] == []
    cluster.wait_converged("B")
    with cluster.client("C") as c:
        wait_for(lambda: c.get("NEWDB", "G", (1,)) == "one", 15, "NEWDB data on C")


def test_dismount_mount_and_catch_up_on_a_backup(shared_mirror):
    cluster, _, client = shared_mirror
    out = client.dismount("B", "USER")
    assert out["status"] == "Database Dismounted" and out["already"] is False
    assert client.dismount("B", "user")["already"] is True
    with cluster.client() as c:
        c.set("USER", "G", ("while dismounted",), 1)
    assert client.mount("B", "USER")["status"] == "Needs Catchup"
    assert client.mount("B", "USER")["already"] is True
    done = client.catchup("B", "USER", wait=True)
    assert done["started"] == ["USER"]
    assert db_statuses(client, "B")["USER"] == "Dejournaling"
    assert client.catchup("B", "USER")["already"] == ["USER"]
    # several at once, and mount with its catch-up
    for db in ("USER", "APP"):
        client.dismount("B", db)
    client.mount("B", "APP")
    client.mount("B", "USER", catchup=True)
    client.catchup("B", ["USER", "APP"], wait=True)
    assert db_statuses(client, "B") == {"USER": "Dejournaling", "APP": "Dejournaling"}
    cluster.wait_converged("B")


def restore_copy(cluster, db: str, source: str, target: str) -> None:
    """A consistent copy of a live database (what a backup and restore gives)."""
    src = cluster.cfg.member(source).data_dir / "db" / db
    dst = cluster.cfg.member(target).data_dir / "db" / db
    dst.mkdir(parents=True)
    env = lmdb.open(str(src), readonly=True, max_dbs=2, lock=True)
    try:
        env.copy(str(dst), compact=True)
    finally:
        env.close()


def test_a_restored_copy_is_activated_and_caught_up_and_a_too_old_one_is_refused(mirror):
    cluster, _, client = mirror
    client.create_database("A", "LEGACY", mirrored=False)
    assert client.add_database("A", "LEGACY")["status"] == "Normal"
    assert client.add_database("A", "LEGACY")["already"] is True
    with cluster.client() as c:
        c.set("LEGACY", "G", (1,), "before the copy")
    for member in "BC":
        wait_for(
            lambda m=member: client.databases(m)["missing_mirrored_databases"] == ["LEGACY"],
            15,
            f"LEGACY missing on {member}",
        )
    # a local database on C made before LEGACY joined the mirror is too old to activate
    assert client.create_database("C", "LEGACY", mirrored=False)["status"] == "local"
    assert client.add_database("C", "LEGACY")["status"] == "Needs Activation"
    err = refusal(client.activate, "C", "LEGACY")
    assert err.status == 409 and err.code == "refused"
    assert "older than" in err.message
    # B: a copy of the primary's, then writes only the journal holds
    restore_copy(cluster, "LEGACY", "A", "B")
    with cluster.client() as c:
        c.set("LEGACY", "G", (2,), "after the copy")
    assert client.add_database("B", "LEGACY")["status"] == "Needs Activation"
    assert client.activate("B", "LEGACY")["status"] == "Needs Catchup"
    assert client.activate("B", "LEGACY")["already"] is True
    assert client.catchup("B", "LEGACY", wait=True)["started"] == ["LEGACY"]
    assert db_statuses(client, "B")["LEGACY"] == "Dejournaling"
    assert client.databases("B")["missing_mirrored_databases"] == []
    want = cluster.digests("A", ["LEGACY"])
    wait_for(lambda: cluster.digests("B", ["LEGACY"]) == want, 20, "LEGACY on B converges")
    err = refusal(client.catchup, "A", "USER")
    assert err.status == 409 and "not available on the primary" in err.message


def test_a_database_added_with_its_data_is_downloaded_to_a_member_through_the_agent(mirror):
    cluster, _, client = mirror
    legacy = Store.open(str(cluster.cfg.member("A").data_dir / "db" / "LEGACY"))
    for i in range(200):  # a local database with data of its own
        legacy.set("G", (i,), f"local {i}")
    legacy.close()
    assert client.add_database("A", "LEGACY")["status"] == "Normal"
    wait_for(
        lambda: client.databases("C")["missing_mirrored_databases"] == ["LEGACY"],
        15,
        "LEGACY missing on C",
    )
    first = client.download("C", "LEGACY")
    assert first["database"] == "LEGACY" and first["status"] == "Downloading"
    assert client.download("C", "LEGACY")["already"] is True  # a retry starts nothing new
    with cluster.client() as c:
        c.set("LEGACY", "G", ("during",), "x")
    wait_db(client, "C", "LEGACY", "Dejournaling")
    want = cluster.digests("A", ["LEGACY"])
    wait_for(lambda: cluster.digests("C", ["LEGACY"]) == want, 20, "LEGACY on C converges")
    err = refusal(client.download, "A", "LEGACY")
    assert err.status == 409 and "not available on the primary" in err.message


def test_refusals_are_409_with_the_instance_reason(shared_mirror):
    _, _, client = shared_mirror
    cases = [
        (client.stop_dejournaling, ("B",), "guide §5.9"),
        (client.clear_failover_db, ("C", "USER"), "never allowed on a DR async"),
        (client.activate, ("B", "NOSUCH"), "not a mirrored database"),
        (client.add_database, ("A", "NOSUCH"), "no local database"),
        (client.stop_mirroring, ("A",), "not available on the primary"),
        (client.pause_database, ("A", "USER"), "does not dejournal"),
    ]
    for call, args, reason in cases:
        err = refusal(call, *args)
        assert err.status == 409, (call.__name__, err)
        assert reason in err.message, (call.__name__, err.message)
    assert client.health()["agent"] == "engine-agent"  # still serving


def test_stop_and_start_mirroring_on_backup_and_async(shared_mirror):
    cluster, _, client = shared_mirror
    for member, running in (("B", "Backup"), ("C", "Connected")):
        assert client.stop_mirroring(member)["status"] == "Stopped"
        assert client.stop_mirroring(member)["already"] is True
        assert client.databases(member)["status"] == "Stopped"
        assert client.start_mirroring(member)["already"] is False
        assert client.start_mirroring(member)["already"] is True
        wait_for(lambda m=member, r=running: client.databases(m)["status"] == r, 20, running)
    cluster.wait_backup_active()
    cluster.wait_converged("C")


def test_dejournaling_stop_start_and_pause_resume_on_an_async(shared_mirror):
    cluster, _, client = shared_mirror
    out = client.stop_dejournaling("C")
    assert out["dejournaling"] == "Warning! Dejournaling is stopped."
    assert client.stop_dejournaling("C")["dejournaling"] == out["dejournaling"]
    assert db_statuses(client, "C")["USER"] == "Dejournaling Stopped"
    client.start_dejournaling("C")
    client.start_dejournaling("C")  # a retry
    wait_db(client, "C", "USER", "Dejournaling")
    out = client.pause_database("C", "USER")
    assert out["database"] == "USER" and out["status"] == "Dejournaling Stopped"
    assert client.pause_database("C", "USER")["status"] == "Dejournaling Stopped"
    assert db_statuses(client, "C")["APP"] == "Dejournaling"
    out = client.resume_database("C", "USER")
    assert out["status"] == "Dejournaling"
    assert client.resume_database("C", "USER")["status"] == "Dejournaling"
    cluster.wait_converged("C")


def test_bad_requests_are_400_with_a_reason_and_nothing_changes(shared_mirror):
    _, _, client = shared_mirror
    base = "/v1/instances/B"
    bad = [
        ("POST", f"{base}/databases", b"{not json", "not valid JSON"),
        ("POST", f"{base}/databases", b"[1]", "JSON object"),
        ("POST", f"{base}/databases", b"{}", "'name'"),
        ("POST", f"{base}/databases", b'{"name": "X", "mode": "copy"}', "'mode'"),
        ("POST", f"{base}/databases", b'{"name": 7}', "'name' must be a string"),
        ("POST", f"{base}/databases", b'{"name": "1BAD"}', "invalid database name"),
        ("POST", f"{base}/databases", b'{"name": "IRISSYS"}', "system databases"),
        ("POST", f"{base}/databases/USER/mount", b'{"catchup": "yes"}', "boolean"),
        ("POST", f"{base}/databases/USER/dismount", b'{"force": true}', "unknown fields"),
        ("POST", f"{base}/databases/catchup", b'{"databases": []}', "non-empty"),
        ("POST", f"{base}/databases/catchup", b'{"databases": ["USER", "user"]}', "more than"),
        ("POST", f"{base}/databases/bad%20name/activate", None, "invalid database name"),
    ]
    for method, path, body, reason in bad:
        status, _, data = client.request(method, path, body=body)
        assert status == 400, (path, body, data)
        assert reason in data.decode(), (path, body, data)
    assert db_statuses(client, "B") == {"USER": "Dejournaling", "APP": "Dejournaling"}
    assert refusal(client.activate, "NOPE", "USER").status == 404


def test_a_down_instance_is_503_and_the_others_still_answer(mirror):
    cluster, _, client = mirror
    cluster.kill9("C")
    for call, args in (
        (client.databases, ("C",)),
        (client.dismount, ("C", "USER")),
        (client.stop_dejournaling, ("C",)),
    ):
        err = refusal(call, *args)
        assert err.status == 503 and err.code == "instance_unavailable"
        assert "C" in err.message and "not answering" in err.message
    assert db_statuses(client, "B")["USER"] == "Dejournaling"


def test_a_hung_instance_is_503_without_waiting_for_the_operation_timeout(mirror):
    cluster, _, client = mirror
    cluster.pause("C")
    try:
        err = refusal(client.dismount, "C", "USER")
        assert err.status == 503 and "no answer" in err.message
    finally:
        cluster.resume("C")
    assert client.dismount("C", "USER")["status"] == "Database Dismounted"


def test_operations_need_authentication(make_cluster, start_agent, pki):
    cluster = make_cluster(types=("failover",))
    agent = start_agent(pki=pki, instances=instance_entries(cluster))
    for who, status in ((None, 401), ("stranger", 403)):
        with agent.client(who) as c:
            assert refusal(c.databases, "A").status == status
            assert refusal(c.create_database, "A", "NEWDB").status == status
    with agent.client() as c:
        assert db_statuses(c, "A") == {"USER": "Normal", "APP": "Normal"}
    bearer = start_agent(instances=instance_entries(cluster))
    with bearer.client(credential="w" * 24) as c:
        assert refusal(c.stop_mirroring, "A").status == 401


def test_failover_db_flag_is_cleared_on_a_read_only_reporting_async_only(make_cluster, start_agent):
    cluster = make_cluster(types=("failover", "ro_reporting"), databases=("USER",))
    agent = start_agent(instances=instance_entries(cluster))
    with agent.client(credential=agent.credential) as client:
        wait_db(client, "B", "USER", "Dejournaling")
        out = client.clear_failover_db("B", "USER")
        assert out["failover_db"] is False and out["already"] is False
        assert client.clear_failover_db("B", "USER")["already"] is True
        row = client.databases("B")["databases"][0]
        assert row["name"] == "USER" and row["failover_db"] is False
        err = refusal(client.clear_failover_db, "A", "USER")
        assert err.status == 409 and "reporting" in err.message


def matches_the_description(route: str, answer: dict) -> dict:
    """The answer, after checking it against the route's 200 schema in engine/agent_api.yaml."""
    spec = yaml.safe_load((Path(__file__).parents[2] / "engine" / "agent_api.yaml").read_text())
    schema = spec["paths"][route]["post"]["responses"]["200"]["content"]["application/json"]
    full = {**schema["schema"], "components": spec["components"]}
    jsonschema.Draft202012Validator(full).validate(answer)
    return answer


def test_failover_db_flags_of_several_or_all_databases_are_cleared_through_the_agent(
    make_cluster, start_agent
):
    cluster = make_cluster(
        types=("failover", "dr", "ro_reporting"), databases=("USER", "APP", "SALES")
    )
    agent = start_agent(instances=instance_entries(cluster))
    route = "/v1/instances/{name}/databases/clear-failover-db"

    def flags() -> dict[str, bool]:
        rows = client.databases("C")["databases"]
        return {r["name"]: r.get("failover_db", True) for r in rows}

    with agent.client(credential=agent.credential) as client:
        wait_db(client, "C", "SALES", "Dejournaling")
        for instance, reason in (("B", "never allowed on a DR async"), ("A", "reporting")):
            err = refusal(client.clear_failover_db, instance, all_databases=True)
            assert err.status == 409 and reason in err.message
        err = refusal(client.clear_failover_db, "C", ["USER", "NOPE"])
        assert err.status == 409 and "not a mirrored database" in err.message
        bad = [
            (b"{}", "either"),
            (b'{"all": false}', "either"),
            (b'{"all": true, "databases": ["USER"]}', "either"),
            (b'{"databases": []}', "non-empty"),
            (b'{"databases": ["USER", "user"]}', "more than once"),
            (b'{"databases": ["9X"]}', "invalid database name"),
            (b'{"databases": "USER"}', "must be a list"),
        ]
        for body, reason in bad:
            status, _, data = client.request("POST", route.replace("{name}", "C"), body=body)
            assert status == 400 and reason in data.decode(), (body, data)
        assert flags() == {"USER": True, "APP": True, "SALES": True}

        out = matches_the_description(route, client.clear_failover_db("C", ["user", "APP"]))
        assert out["operation"] == "clear-failover-db"
        assert [(r["database"], r["already"]) for r in out["databases"]] == [
            ("USER", False),
            ("APP", False),
        ]
        assert flags() == {"USER": False, "APP": False, "SALES": True}
        out = matches_the_description(route, client.clear_failover_db("C", all_databases=True))
        assert {r["database"]: r["already"] for r in out["databases"]} == {
            "USER": True,
            "APP": True,
            "SALES": False,
        }
        assert flags() == {"USER": False, "APP": False, "SALES": False}
        assert client.clear_failover_db("C", "SALES")["already"] is True  # the single form
    with pytest.raises(ValueError):
        client.clear_failover_db("C")  # neither names nor all: nothing is sent


def test_malformed_bodies_on_every_operation_are_400_and_change_nothing(shared_mirror):
    _, agent, client = shared_mirror
    bodies = [b"null", b"[]", b'"stop"', b"1e999", b"\xff\xfe{", b'{"x": 1}', b"[" * 30000]
    for method, path, _ in OPS_ROUTES:
        if method != "POST":
            continue
        path = path.replace("{name}", "B").replace("{db}", "USER")
        for body in bodies:
            status, _, data = client.request(method, path, body=body)
            assert status == 400, (path, body[:20], data)
    assert agent.alive()
    listing = client.databases("B")
    assert listing["status"] == "Backup"
    assert {r["name"]: r["status"] for r in listing["databases"]} == {
        "USER": "Dejournaling",
        "APP": "Dejournaling",
    }
