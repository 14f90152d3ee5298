"""Every endpoint and method against anonymous / viewer / operator / admin.

Each row names the weakest role that may do it and the exact status it then gets; weaker roles
get 403, anonymous callers 401 (the API asks them for a Bearer token). Methods an endpoint does
not offer give 405 to whoever passes the role check first. A mirror's rows (mirrors, members,
DN updates, database copies) are never written directly: a change is an operation, a POST that
answers 202 with its job, queued for the caller. Operators run operations; admins change
configuration and decide on members.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from accounts.models import AuditEvent
from accounts.services import create_token
from members.models import Member
from tests import factories
from tests.api.conftest import RANK, bearer
from tests.conftest import make_user

V1 = "/api/v1"


@dataclass
class Row:
    method: str
    path: Callable  # (world, role) -> path
    needs: str  # the weakest role allowed
    ok: int  # the status an allowed role gets
    body: Callable | None = None  # world -> JSON body

    def __str__(self):
        return f"{self.method} {self.path.__doc__ or ''}"


def at(template: str):
    """A path builder: `{mirror}` and friends become the seeded objects' ids."""

    def build(world, role):
        ids = {
            name: getattr(world, name).pk
            for name in ("mirror", "host", "spare_host", "member", "pending", "database")
            + ("spare_database", "copy", "dn_update", "instance", "drift", "job", "failed_job")
            + ("someone", "alert", "mirror_role")
        }
        token = world.token_of(role)
        ids["token"] = token.pk if token else world.token_of("viewer").pk
        ids["event"] = AuditEvent.objects.values_list("pk", flat=True).first()
        return template.format(**ids)

    build.__doc__ = template
    return build


def dr_async(template: str):
    """A path builder for a DR async of the mirror (made on first use), the one member type
    that is promoted (guide §5.5); `{dr}` is its id."""

    def build(world, role):
        dr = Member.objects.filter(mirror=world.mirror, name="ALPHADR").first()
        if dr is None:
            dr = factories.member(
                world.mirror,
                name="ALPHADR",
                member_type="dr",
                mirror_private_address="10.0.0.9",
                authorization=Member.AUTHORIZED,
            )
        return (V1 + template).format(dr=dr.pk)

    build.__doc__ = V1 + template
    return build


def made(template: str, name: str):
    """A path builder for a member the world makes on first use (tests/api/conftest.py): `{dr}`
    its DR async, `{stopped}` a former failover member whose instance is down."""

    def build(world, role):
        return (V1 + template).format(**{name: getattr(world, name).pk})

    build.__doc__ = V1 + template
    return build


def operation(template, needs, body=None, ok=202):
    """A POST that starts a job: answered 202 with the job, queued."""
    return Row("post", at(V1 + template), needs, ok, body)


def copy_of(world):
    return {"database": world.spare_database.pk, "member": world.member.pk}


ROWS = [
    # mirrors: read; created as a job; changed only through operations
    Row("get", at(V1 + "/mirrors/"), "viewer", 200),
    Row("get", at(V1 + "/mirrors/{mirror}/"), "viewer", 200),
    operation(
        "/mirrors/",
        "admin",
        lambda w: (
            {"host": w.spare_host.pk, "instance": "IRIS", "name": "beta"}
            | {"private": "10.9.9.9:2188"}
        ),
    ),
    operation("/mirrors/{mirror}/refresh/", "operator"),
    operation("/mirrors/{mirror}/review/", "operator"),
    operation("/mirrors/{mirror}/settings/", "admin", lambda w: {"qos_timeout_ms": 9000}),
    operation("/mirrors/{mirror}/adopt-settings/", "admin"),
    operation("/mirrors/{mirror}/reapply-settings/", "admin"),
    operation(
        "/mirrors/{mirror}/join/",
        "admin",
        lambda w: {"host": w.spare_host.pk, "instance": "ALPHADR", "member_type": "dr"},
    ),
    operation("/mirrors/{mirror}/remove/", "admin", lambda w: {"confirm": "ALPHA"}),
    operation("/mirrors/{mirror}/forget/", "admin", lambda w: {"confirm": "alpha"}, ok=204),
    # hosts: the portal's own records, edited directly; checking and importing are jobs
    Row("get", at(V1 + "/hosts/"), "viewer", 200),
    Row("post", at(V1 + "/hosts/"), "admin", 201, lambda w: {"name": "h9", "address": "10.9.9.9"}),
    Row("get", at(V1 + "/hosts/{host}/"), "viewer", 200),
    Row(
        "put",
        at(V1 + "/hosts/{host}/"),
        "admin",
        200,
        lambda w: {"name": w.host.name, "address": w.host.address, "agent_port": 2200},
    ),
    Row("patch", at(V1 + "/hosts/{host}/"), "admin", 200, lambda w: {"agent_port": 2201}),
    Row("delete", at(V1 + "/hosts/{spare_host}/"), "admin", 204),
    operation("/hosts/{host}/check/", "operator"),
    operation("/hosts/{host}/import/", "admin", lambda w: {"instance": "IRIS"}),
    # instances and drifts: what the agents and primaries answered
    Row("get", at(V1 + "/instances/"), "viewer", 200),
    Row("get", at(V1 + "/instances/{instance}/"), "viewer", 200),
    operation(
        "/instances/{instance}/tls/",
        "admin",
        lambda w: {"cert": "/tls/iris.pem", "key": "/tls/iris.key", "ca": "/tls/ca.pem"},
    ),
    Row("get", at(V1 + "/drifts/"), "viewer", 200),
    Row("get", at(V1 + "/drifts/{drift}/"), "viewer", 200),
    # members: read-only rows; every change is an operation
    Row("get", at(V1 + "/members/"), "viewer", 200),
    Row("get", at(V1 + "/members/{member}/"), "viewer", 200),
    operation(
        "/members/{member}/addresses/", "admin", lambda w: {"superserver": "alpha1.example:1973"}
    ),
    operation("/members/{member}/superserver-port/", "admin", lambda w: {"port": 1973}),
    operation("/members/{member}/remove/", "admin", lambda w: {"confirm": "ALPHA"}),
    operation("/members/{member}/leave/", "admin", lambda w: {"remove_db_attribute": True}),
    operation("/members/{member}/stop-mirroring/", "operator"),
    operation("/members/{member}/start-mirroring/", "operator"),
    operation("/members/{member}/stop-dejournaling/", "operator"),
    operation("/members/{member}/start-dejournaling/", "operator"),
    operation("/members/{member}/stop-instance/", "operator"),
    operation("/members/{member}/set-no-failover/", "operator"),
    operation("/members/{member}/clear-no-failover/", "operator"),
    operation("/members/{member}/force-primary/preview/", "admin"),
    operation("/members/{member}/force-primary/", "admin", lambda w: {"confirm": "alpha"}),
    operation("/members/{member}/rebuild/preview/", "admin"),
    operation("/members/{member}/rebuild/", "admin", lambda w: {"confirm": "alpha"}),
    Row("post", dr_async("/members/{dr}/promote/"), "admin", 202, lambda w: {"confirm": "alpha"}),
    operation("/members/{member}/demote/", "admin", lambda w: {"confirm": "alpha"}),
    Row("post", made("/members/{dr}/promote-to-primary/preview/", "dr"), "admin", 202),
    Row(
        "post",
        made("/members/{dr}/promote-to-primary/", "dr"),
        "admin",
        202,
        lambda w: {"confirm": "alpha"},
    ),
    Row("post", made("/members/{stopped}/clear-validated-member/", "stopped"), "admin", 202),
    operation("/members/{member}/catchup/", "operator", lambda w: {"databases": ["sales"]}),
    operation("/members/{member}/clear-failover-db/", "operator", lambda w: {}),
    operation("/members/{member}/add-database/", "operator", lambda w: {"name": "spare"}),
    # application credentials of the member's instance: read by anyone, managed by operators; a
    # secret is shown only for a credential job of the caller's (none here: 404)
    Row("get", at(V1 + "/members/{member}/app-credentials/"), "viewer", 200),
    operation("/members/{member}/app-credentials/", "operator", lambda w: {"name": "billing"}),
    operation("/members/{member}/app-credentials/read/", "operator"),
    operation(
        "/members/{member}/app-credentials/revoke/",
        "operator",
        lambda w: {"name": "billing", "confirm": "ALPHA"},
    ),
    Row(
        "post",
        at(V1 + "/members/{member}/app-credentials/reveal/"),
        "operator",
        404,
        lambda w: {"job": w.job.pk},
    ),
    # pending members: an admin decides
    Row("get", at(V1 + "/pending-members/"), "viewer", 200),
    Row("get", at(V1 + "/pending-members/{pending}/"), "viewer", 200),
    operation("/pending-members/{pending}/authorize/", "admin"),
    operation("/pending-members/{pending}/reject/", "admin", lambda w: {"confirm": "alpha"}),
    Row("patch", at(V1 + "/pending-members/{pending}/"), "admin", 405, lambda w: {}),
    # DN updates: read from the primary, decided by an admin
    Row("get", at(V1 + "/dn-updates/"), "viewer", 200),
    Row("get", at(V1 + "/dn-updates/{dn_update}/"), "viewer", 200),
    operation("/dn-updates/{dn_update}/authorize/", "admin"),
    operation("/dn-updates/{dn_update}/reject/", "admin"),
    Row(
        "post",
        at(V1 + "/dn-updates/"),
        "admin",
        405,
        lambda w: {"member": w.member.pk, "new_dn": "CN=alpha1b,O=Example"},
    ),
    Row("put", at(V1 + "/dn-updates/{dn_update}/"), "admin", 405, lambda w: {}),
    # mirrored databases: created as a job; the startup flag is the portal's own
    Row("get", at(V1 + "/databases/"), "viewer", 200),
    Row("get", at(V1 + "/databases/{database}/"), "viewer", 200),
    operation("/databases/", "operator", lambda w: {"mirror": w.mirror.pk, "name": "orders"}),
    Row(
        "put",
        at(V1 + "/databases/{database}/"),
        "admin",
        200,
        lambda w: {"mirror": w.mirror.pk, "name": "sales", "mount_required_at_startup": True},
    ),
    Row(
        "patch",
        at(V1 + "/databases/{database}/"),
        "admin",
        200,
        lambda w: {"mount_required_at_startup": True},
    ),
    # database copies: read-only rows, operators run the operations on them
    Row("get", at(V1 + "/database-copies/"), "viewer", 200),
    Row("get", at(V1 + "/database-copies/{copy}/"), "viewer", 200),
    operation("/database-copies/{copy}/download/", "operator"),
    operation("/database-copies/{copy}/activate/", "operator"),
    operation("/database-copies/{copy}/mount/", "operator", lambda w: {"catchup": True}),
    operation("/database-copies/{copy}/dismount/", "operator"),
    operation("/database-copies/{copy}/remove/", "operator", lambda w: {"confirm": "ALPHA"}),
    operation("/database-copies/{copy}/pause/", "operator"),
    operation("/database-copies/{copy}/resume/", "operator"),
    Row("post", at(V1 + "/database-copies/"), "admin", 405, copy_of),
    # jobs: read by anyone, retried and cancelled by operators, started only by operations
    Row("get", at(V1 + "/jobs/"), "viewer", 200),
    Row("get", at(V1 + "/jobs/{job}/"), "viewer", 200),
    operation("/jobs/{failed_job}/retry/", "operator"),
    operation("/jobs/{job}/cancel/", "operator", ok=200),
    Row("post", at(V1 + "/jobs/"), "admin", 405, lambda w: {"kind": "check_host"}),
    Row("delete", at(V1 + "/jobs/{job}/"), "admin", 405),
    # alerts: read by anyone, acknowledged by operators, opened and resolved only by the collector
    Row("get", at(V1 + "/alerts/"), "viewer", 200),
    Row("get", at(V1 + "/alerts/{alert}/"), "viewer", 200),
    operation("/alerts/{alert}/acknowledge/", "operator", ok=200),
    Row("post", at(V1 + "/alerts/"), "admin", 405, lambda w: {"rule": "drift"}),
    Row("delete", at(V1 + "/alerts/{alert}/"), "admin", 405),
    # roles on single mirrors: each mirror's admins
    Row("get", at(V1 + "/mirror-roles/"), "admin", 200),
    Row("get", at(V1 + "/mirror-roles/{mirror_role}/"), "admin", 200),
    Row(
        "post",
        at(V1 + "/mirror-roles/"),
        "admin",
        201,
        lambda w: {"user": "sam-someone", "mirror": w.mirror.pk, "role": "viewer"},
    ),
    Row(
        "patch", at(V1 + "/mirror-roles/{mirror_role}/"), "admin", 200, lambda w: {"role": "admin"}
    ),
    Row("delete", at(V1 + "/mirror-roles/{mirror_role}/"), "admin", 204),
    # audit trail
    Row("get", at(V1 + "/audit-events/"), "viewer", 200),
    Row("get", at(V1 + "/audit-events/{event}/"), "viewer", 200),
    Row("delete", at(V1 + "/audit-events/{event}/"), "admin", 405),
    # the caller's own tokens: any role
    Row("get", at(V1 + "/tokens/"), "viewer", 200),
    Row("post", at(V1 + "/tokens/"), "viewer", 201, lambda w: {"name": "deploy"}),
    Row("get", at(V1 + "/tokens/{token}/"), "viewer", 200),
    Row("post", at(V1 + "/tokens/{token}/revoke/"), "viewer", 200),
    Row("delete", at(V1 + "/tokens/{token}/"), "viewer", 204),
    Row("put", at(V1 + "/tokens/{token}/"), "viewer", 405, lambda w: {"name": "x"}),
    # users: admins only, reads included
    Row("get", at(V1 + "/users/"), "admin", 200),
    Row(
        "post",
        at(V1 + "/users/"),
        "admin",
        201,
        lambda w: {"username": "newbie", "password": "a long pass phrase", "role": "viewer"},
    ),
    Row("get", at(V1 + "/users/{someone}/"), "admin", 200),
    Row(
        "put",
        at(V1 + "/users/{someone}/"),
        "admin",
        200,
        lambda w: {"username": "sam-someone", "role": "operator", "is_active": True},
    ),
    Row("patch", at(V1 + "/users/{someone}/"), "admin", 200, lambda w: {"is_active": False}),
    Row("delete", at(V1 + "/users/{someone}/"), "admin", 204),
    # schema and docs
    Row("get", at("/api/schema/"), "viewer", 200),
    Row("get", at("/api/docs/"), "viewer", 200),
]


# Methods an endpoint does not offer: 405 for whoever passes the role check for that method
# (reads need viewer, writes admin; tokens are anyone's, users only admins'). A mirror's rows
# are what its members answered, so none of them is written directly.
NOT_OFFERED = [
    ("put", "/mirrors/{mirror}/"),
    ("patch", "/mirrors/{mirror}/"),
    ("delete", "/mirrors/{mirror}/"),
    ("get", "/mirrors/{mirror}/refresh/"),
    ("get", "/mirrors/{mirror}/review/"),
    ("get", "/mirrors/{mirror}/settings/"),
    ("put", "/mirrors/{mirror}/settings/"),
    ("delete", "/mirrors/{mirror}/forget/"),
    ("get", "/hosts/{host}/check/"),
    ("delete", "/hosts/{host}/check/"),
    ("get", "/hosts/{host}/import/"),
    ("post", "/instances/"),
    ("put", "/instances/{instance}/"),
    ("patch", "/instances/{instance}/"),
    ("delete", "/instances/{instance}/"),
    ("get", "/instances/{instance}/tls/"),
    ("post", "/drifts/"),
    ("patch", "/drifts/{drift}/"),
    ("delete", "/drifts/{drift}/"),
    ("post", "/members/"),
    ("put", "/members/{member}/"),
    ("patch", "/members/{member}/"),
    ("delete", "/members/{member}/"),
    ("delete", "/members/{pending}/"),
    ("get", "/members/{member}/remove/"),
    ("put", "/members/{member}/addresses/"),
    ("post", "/pending-members/"),
    ("put", "/pending-members/{pending}/"),
    ("delete", "/pending-members/{pending}/"),
    ("get", "/pending-members/{pending}/authorize/"),
    ("patch", "/dn-updates/{dn_update}/"),
    ("delete", "/dn-updates/{dn_update}/"),
    ("get", "/dn-updates/{dn_update}/reject/"),
    ("delete", "/databases/{database}/"),
    ("put", "/database-copies/{copy}/"),
    ("patch", "/database-copies/{copy}/"),
    ("delete", "/database-copies/{copy}/"),
    ("get", "/database-copies/{copy}/mount/"),
    ("put", "/jobs/{job}/"),
    ("patch", "/jobs/{job}/"),
    ("get", "/jobs/{job}/retry/"),
    ("get", "/jobs/{job}/cancel/"),
    ("post", "/audit-events/"),
    ("put", "/audit-events/{event}/"),
    ("patch", "/audit-events/{event}/"),
    ("patch", "/tokens/{token}/"),
    ("get", "/tokens/{token}/revoke/"),
    ("post", "/users/{someone}/"),
    ("put", "/mirror-roles/{mirror_role}/"),
    ("post", "/mirror-roles/{mirror_role}/"),
]
ROWS += [
    Row(
        method,
        at(V1 + path),
        "admin"
        if path.startswith(("/users/", "/mirror-roles/"))
        else "viewer"
        if method == "get" or path.startswith("/tokens/")
        else "admin",
        405,
    )
    for method, path in NOT_OFFERED
]


def expected_status(row: Row, role: str | None) -> int:
    if role is None:
        return 401
    return row.ok if RANK[role] >= RANK[row.needs] else 403


@pytest.mark.parametrize("role", [None, "viewer", "operator", "admin"], ids=str)
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_each_role_gets_exactly_the_expected_status(world, client_for, row, role):
    client = client_for(role)
    kwargs = {"format": "json"} if row.body else {}
    body = row.body(world) if row.body else None

    response = getattr(client, row.method)(row.path(world, role), body, **kwargs)

    assert response.status_code == expected_status(row, role), response.content[:500]
    if response.status_code >= 400 and response["Content-Type"] == "application/json":
        assert "code" in response.json()["error"]
    if response.status_code == 202:  # an operation: its job, queued, asked for by the caller
        job = response.json()
        assert job["state"] == "queued" and job["requested_by"] == world.token_of(role).user_id


def offered_routes() -> set[tuple[str, str]]:
    """(method, path) for every route the API's routers serve, ids written {id}."""
    from accounts.api.urls import router as accounts
    from members.api.urls import router as members
    from monitor.api.urls import router as monitor
    from tasks.api.urls import router as tasks

    offered = set()
    for router in (members, tasks, accounts, monitor):
        for prefix, viewset, _ in router.registry:
            for route in router.get_routes(viewset):
                url = route.url.format(prefix=prefix, lookup="{id}", trailing_slash="/")
                for method in router.get_method_map(viewset, route.mapping):
                    offered.add((method, V1 + "/" + url.strip("^$")))
    return offered


def test_every_route_the_api_serves_has_its_row():
    """A new endpoint or action cannot slip in without its weakest role pinned here."""

    def route(row):
        return row.method, re.sub(r"\{\w+\}", "{id}", row.path.__doc__)

    offered = offered_routes()
    allowed = {route(row) for row in ROWS if row.ok != 405 and row.path.__doc__.startswith(V1)}
    refused = {route(row) for row in ROWS if row.ok == 405}

    assert len(offered) > 60
    assert sorted(offered - allowed) == []  # served, but no row says who may
    assert sorted(allowed - offered) == []  # a row for something not served
    assert sorted(refused & offered) == []  # a 405 row for something served


def test_a_user_without_any_role_is_refused_everywhere_but_gets_no_401(world):
    nobody = make_user("no-role", None)
    _, secret = create_token(nobody, name="x")
    client = bearer(secret)

    for path in ("/api/v1/mirrors/", "/api/v1/tokens/", "/api/v1/users/", "/api/schema/"):
        assert client.get(path).status_code == 403, path
