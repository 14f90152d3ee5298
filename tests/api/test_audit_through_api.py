"""Every change made through the API leaves an AuditEvent naming the caller, with the object as
it was before and as it is after."""

import pytest

from accounts.models import ApiToken, AuditEvent

V1 = "/api/v1"

# (method, path template, body, action, object_type, field checked, value before, value after)
CHANGES = [
    ("post", "/mirrors/", {"name": "beta"}, "mirror.create", "mirror", "name", None, "BETA"),
    (
        "patch",
        "/mirrors/{mirror}/",
        {"qos_timeout_ms": 9000},
        "mirror.update",
        "mirror",
        "qos_timeout_ms",
        8000,
        9000,
    ),
    ("delete", "/mirrors/{mirror}/", None, "mirror.delete", "mirror", "name", "ALPHA", None),
    (
        "post",
        "/hosts/",
        {"name": "h9", "address": "10.9.9.9", "credential": "s3cret"},
        "host.create",
        "host",
        "address",
        None,
        "10.9.9.9",
    ),
    (
        "patch",
        "/hosts/{host}/",
        {"agent_port": 2200},
        "host.update",
        "host",
        "agent_port",
        2188,
        2200,
    ),
    ("delete", "/hosts/{spare_host}/", None, "host.delete", "host", "name", "spare-host", None),
    (
        "post",
        "/members/",
        {
            "mirror": "{mirror}",
            "host": "{spare_host}",
            "name": "alpha-dr",
            "member_type": "dr",
            "superserver_address": "10.1.1.1",
            "superserver_port": 1972,
        },
        "member.add",
        "member",
        "name",
        None,
        "ALPHA-DR",
    ),
    (
        "patch",
        "/members/{member}/",
        {"superserver_port": 1999},
        "member.update",
        "member",
        "superserver_port",
        1972,
        1999,
    ),
    ("delete", "/members/{pending}/", None, "member.remove", "member", "name", "ALPHA2", None),
    (
        "post",
        "/pending-members/{pending}/authorize/",
        None,
        "member.authorize",
        "member",
        "authorization",
        "pending",
        "authorized",
    ),
    (
        "post",
        "/pending-members/{pending}/reject/",
        None,
        "member.reject",
        "member",
        "name",
        "ALPHA2",
        None,
    ),
    (
        "post",
        "/dn-updates/",
        {"member": "{member}", "new_dn": "CN=x,O=Example"},
        "dn_update.request",
        "pendingdnupdate",
        "new_dn",
        None,
        "CN=x,O=Example",
    ),
    (
        "post",
        "/dn-updates/{dn_update}/authorize/",
        None,
        "dn_update.authorize",
        "pendingdnupdate",
        "state",
        "pending",
        "authorized",
    ),
    (
        "post",
        "/dn-updates/{dn_update}/reject/",
        None,
        "dn_update.reject",
        "pendingdnupdate",
        "state",
        "pending",
        "rejected",
    ),
    (
        "post",
        "/databases/",
        {"mirror": "{mirror}", "name": "orders"},
        "database.create",
        "mirroreddatabase",
        "name",
        None,
        "ORDERS",
    ),
    (
        "patch",
        "/databases/{database}/",
        {"mount_required_at_startup": True},
        "database.update",
        "mirroreddatabase",
        "mount_required_at_startup",
        False,
        True,
    ),
    (
        "delete",
        "/databases/{database}/",
        None,
        "database.remove",
        "mirroreddatabase",
        "name",
        "SALES",
        None,
    ),
    (
        "post",
        "/database-copies/",
        {"database": "{spare_database}", "member": "{member}"},
        "database_copy.add",
        "databasecopy",
        "status",
        None,
        "Needs Activation",
    ),
    (
        "delete",
        "/database-copies/{copy}/",
        None,
        "database_copy.remove",
        "databasecopy",
        "status",
        "Normal",
        None,
    ),
    ("post", "/hosts/{host}/check/", None, "job.start", "job", "kind", None, "check_host"),
    ("post", "/tokens/", {"name": "deploy"}, "token.create", "apitoken", "name", None, "deploy"),
    (
        "post",
        "/tokens/{token}/revoke/",
        None,
        "token.revoke",
        "apitoken",
        "revoked_at",
        None,
        "<set>",
    ),
    ("delete", "/tokens/{token}/", None, "token.revoke", "apitoken", "revoked_at", None, "<set>"),
    (
        "post",
        "/users/",
        {"username": "newbie", "password": "a long pass phrase", "role": "operator"},
        "user.create",
        "user",
        "role",
        None,
        "operator",
    ),
    (
        "patch",
        "/users/{someone}/",
        {"role": "admin"},
        "user.update",
        "user",
        "role",
        "viewer",
        "admin",
    ),
    (
        "patch",
        "/users/{someone}/",
        {"is_active": False},
        "user.update",
        "user",
        "is_active",
        True,
        False,
    ),
    ("delete", "/users/{someone}/", None, "user.delete", "user", "username", "sam-someone", None),
]


def fill(value, ids):
    if isinstance(value, str) and value.startswith("{"):
        return ids[value.strip("{}")]
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    "method,path,body,action,object_type,field,before,after",
    CHANGES,
    ids=[f"{c[0]} {c[1]} -> {c[3]}" for c in CHANGES],
)
def test_a_change_through_the_api_is_audited_with_before_and_after(
    world, client_for, admin_user, method, path, body, action, object_type, field, before, after
):
    names = ("mirror", "host", "spare_host", "member", "pending", "database", "spare_database")
    ids = {name: getattr(world, name).pk for name in names}
    ids |= {
        "dn_update": world.dn_update.pk,
        "copy": world.copy.pk,
        "someone": world.someone.pk,
        "token": world.token_of("admin").pk,
    }
    last_before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    client = client_for("admin")

    response = getattr(client, method)(V1 + fill(path, ids), fill(body, ids), format="json")

    assert response.status_code < 300, response.content
    event = AuditEvent.objects.filter(id__gt=last_before, action=action).get()
    assert event.actor == admin_user and event.actor_name == admin_user.username
    assert event.object_type == object_type and event.object_id
    assert event.at is not None
    for snapshot, expected in ((event.before, before), (event.after, after)):
        if expected is None:
            assert snapshot is None or snapshot.get(field) in (None, "")
        elif expected == "<set>":
            assert snapshot[field]
        else:
            assert snapshot[field] == expected


def test_audit_events_never_contain_secrets(world, client_for):
    client = client_for("admin")
    client.post(
        V1 + "/hosts/",
        {"name": "h9", "address": "10.9.9.9", "credential": "agent-password"},
        format="json",
    )
    created = client.post(V1 + "/tokens/", {"name": "ci"}, format="json").json()

    dump = str(list(AuditEvent.objects.values("before", "after")))
    assert "agent-password" not in dump
    assert created["secret"] not in dump
    assert ApiToken.objects.get(pk=created["id"]).key_hash not in dump


def test_audit_events_filter_by_actor_action_object_and_date(world, client_for, users):
    client = client_for("admin")
    client.patch(V1 + f"/mirrors/{world.mirror.pk}/", {"qos_timeout_ms": 9000}, format="json")
    newest = AuditEvent.objects.order_by("-id").first()

    def listed(**query):
        response = client.get(V1 + "/audit-events/", query)
        assert response.status_code == 200, response.content
        return {e["id"] for e in response.json()["results"]}

    assert listed(action="mirror.update") == {newest.pk}
    assert listed(object_type="mirror", object_id=str(world.mirror.pk), action="mirror.update") == {
        newest.pk
    }
    assert newest.pk in listed(actor=users["admin"].pk)
    assert listed(actor=users["viewer"].pk) == set(
        AuditEvent.objects.filter(actor=users["viewer"]).values_list("pk", flat=True)
    )
    since = newest.at.isoformat()
    assert listed(since=since, action="mirror.update") == {newest.pk}
    assert listed(until=since, action="mirror.create") == set(
        AuditEvent.objects.filter(action="mirror.create").values_list("pk", flat=True)
    )
    assert listed(since="2999-01-01T00:00:00Z") == set()
