"""Every endpoint and method against anonymous / viewer / operator / admin.

Each row names the weakest role that may do it and the exact status it then gets; weaker roles
get 403, anonymous callers 401 (the API asks them for a Bearer token). Methods an endpoint does
not offer give 405 to whoever passes the role check first.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from accounts.models import AuditEvent
from accounts.services import create_token
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
            + ("spare_database", "copy", "dn_update", "job", "someone")
        }
        token = world.token_of(role)
        ids["token"] = token.pk if token else world.token_of("viewer").pk
        ids["event"] = AuditEvent.objects.values_list("pk", flat=True).first()
        return template.format(**ids)

    build.__doc__ = template
    return build


def member_body(world):
    return {
        "mirror": world.mirror.pk,
        "host": world.spare_host.pk,
        "name": "ALPHA-DR",
        "member_type": "dr",
        "superserver_address": "10.1.1.1",
        "superserver_port": 1972,
    }


def member_put(world):
    m = world.member
    return {
        "mirror": m.mirror_id,
        "host": m.host_id,
        "name": m.name,
        "member_type": m.member_type,
        "superserver_address": m.superserver_address,
        "superserver_port": 1980,
    }


ROWS = [
    # mirrors
    Row("get", at(V1 + "/mirrors/"), "viewer", 200),
    Row("post", at(V1 + "/mirrors/"), "admin", 201, lambda w: {"name": "beta"}),
    Row("get", at(V1 + "/mirrors/{mirror}/"), "viewer", 200),
    Row("put", at(V1 + "/mirrors/{mirror}/"), "admin", 200, lambda w: {"name": "ALPHA"}),
    Row("patch", at(V1 + "/mirrors/{mirror}/"), "admin", 200, lambda w: {"qos_timeout_ms": 9000}),
    Row("delete", at(V1 + "/mirrors/{mirror}/"), "admin", 204),
    # hosts
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
    Row("post", at(V1 + "/hosts/{host}/check/"), "operator", 202),
    # members
    Row("get", at(V1 + "/members/"), "viewer", 200),
    Row("post", at(V1 + "/members/"), "admin", 201, member_body),
    Row("get", at(V1 + "/members/{member}/"), "viewer", 200),
    Row("put", at(V1 + "/members/{member}/"), "admin", 200, member_put),
    Row("patch", at(V1 + "/members/{member}/"), "admin", 200, lambda w: {"superserver_port": 1973}),
    Row("delete", at(V1 + "/members/{pending}/"), "admin", 204),
    # pending members
    Row("get", at(V1 + "/pending-members/"), "viewer", 200),
    Row("get", at(V1 + "/pending-members/{pending}/"), "viewer", 200),
    Row("post", at(V1 + "/pending-members/{pending}/authorize/"), "admin", 200),
    Row("post", at(V1 + "/pending-members/{pending}/reject/"), "admin", 204),
    Row("patch", at(V1 + "/pending-members/{pending}/"), "admin", 405, lambda w: {}),
    # DN updates
    Row("get", at(V1 + "/dn-updates/"), "viewer", 200),
    Row(
        "post",
        at(V1 + "/dn-updates/"),
        "admin",
        201,
        lambda w: {"member": w.member.pk, "new_dn": "CN=alpha1b,O=Example"},
    ),
    Row("get", at(V1 + "/dn-updates/{dn_update}/"), "viewer", 200),
    Row("post", at(V1 + "/dn-updates/{dn_update}/authorize/"), "admin", 200),
    Row("post", at(V1 + "/dn-updates/{dn_update}/reject/"), "admin", 200),
    Row("put", at(V1 + "/dn-updates/{dn_update}/"), "admin", 405, lambda w: {}),
    # mirrored databases and copies
    Row("get", at(V1 + "/databases/"), "viewer", 200),
    Row(
        "post",
        at(V1 + "/databases/"),
        "admin",
        201,
        lambda w: {"mirror": w.mirror.pk, "name": "ORDERS"},
    ),
    Row("get", at(V1 + "/databases/{database}/"), "viewer", 200),
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
    Row("delete", at(V1 + "/databases/{database}/"), "admin", 204),
    Row("get", at(V1 + "/database-copies/"), "viewer", 200),
    Row(
        "post",
        at(V1 + "/database-copies/"),
        "admin",
        201,
        lambda w: {"database": w.spare_database.pk, "member": w.member.pk},
    ),
    Row("get", at(V1 + "/database-copies/{copy}/"), "viewer", 200),
    Row("delete", at(V1 + "/database-copies/{copy}/"), "admin", 204),
    # jobs
    Row("get", at(V1 + "/jobs/"), "viewer", 200),
    Row("get", at(V1 + "/jobs/{job}/"), "viewer", 200),
    Row("post", at(V1 + "/jobs/"), "admin", 405, lambda w: {"kind": "check_host"}),
    Row("delete", at(V1 + "/jobs/{job}/"), "admin", 405),
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
# (reads need viewer, writes admin; tokens are anyone's, users only admins').
NOT_OFFERED = [
    ("post", "/pending-members/"),
    ("put", "/pending-members/{pending}/"),
    ("delete", "/pending-members/{pending}/"),
    ("get", "/pending-members/{pending}/authorize/"),
    ("patch", "/dn-updates/{dn_update}/"),
    ("delete", "/dn-updates/{dn_update}/"),
    ("get", "/dn-updates/{dn_update}/reject/"),
    ("put", "/database-copies/{copy}/"),
    ("patch", "/database-copies/{copy}/"),
    ("put", "/jobs/{job}/"),
    ("patch", "/jobs/{job}/"),
    ("post", "/audit-events/"),
    ("put", "/audit-events/{event}/"),
    ("patch", "/audit-events/{event}/"),
    ("patch", "/tokens/{token}/"),
    ("get", "/tokens/{token}/revoke/"),
    ("get", "/hosts/{host}/check/"),
    ("delete", "/hosts/{host}/check/"),
    ("post", "/users/{someone}/"),
]
ROWS += [
    Row(
        method,
        at(V1 + path),
        "admin"
        if path.startswith("/users/")
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


def test_a_user_without_any_role_is_refused_everywhere_but_gets_no_401(world):
    nobody = make_user("no-role", None)
    _, secret = create_token(nobody, name="x")
    client = bearer(secret)

    for path in ("/api/v1/mirrors/", "/api/v1/tokens/", "/api/v1/users/", "/api/schema/"):
        assert client.get(path).status_code == 403, path
