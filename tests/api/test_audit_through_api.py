"""Every change made through the API leaves an AuditEvent naming the caller.

The portal's own records (hosts, a database's startup flag, a mirror's arbiter and VIP, tokens,
users) are changed at once, and their event holds the object as it was before and as it is
after. A mirror's rows are what its members answer, so a change to them is an operation: its
event is `job.start`, naming the caller and the job (kind and params), and the members' answer
is recorded later by the job (`job.finish`, not covered here: no worker runs). Forgetting a
mirror is the one mirror change the portal makes alone (`mirror.forget`).
"""

import pytest

from accounts.models import ApiToken, AuditEvent
from members.models import DatabaseCopy, Member, Mirror, MirroredDatabase, PendingDNUpdate
from tasks.models import Job
from tests.api.test_operations import OPERATIONS, fill
from tests.api.test_operations import ids_of as operation_ids

V1 = "/api/v1"
MEMBER_FIELDS = [f.name for f in Member._meta.concrete_fields if f.name != "updated_at"]

# (method, path template, body, action, object_type, field checked, value before, value after)
CHANGES = [
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
        "put",
        "/databases/{database}/",
        {"mirror": "{mirror}", "name": "sales", "mount_required_at_startup": True},
        "database.update",
        "mirroreddatabase",
        "mount_required_at_startup",
        False,
        True,
    ),
    (
        "post",
        "/mirrors/{mirror}/settings/",
        {"arbiter_host": "arbiter.example", "arbiter_port": 2300},
        "mirror.update",
        "mirror",
        "arbiter_host",
        "",
        "arbiter.example",
    ),
    (
        "post",
        "/mirrors/{mirror}/forget/",
        {"confirm": "alpha"},
        "mirror.forget",
        "mirror",
        "name",
        "ALPHA",
        None,
    ),
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


def ids_of(world) -> dict:
    ids = operation_ids(world) | {"someone": world.someone.pk, "token": world.token_of("admin").pk}
    # the DR async a promotion is asked for, the stopped member ValidatedMember is cleared on
    return ids | {"dr": world.dr.pk, "stopped": world.stopped.pk}


def newest_event_id():
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


@pytest.mark.parametrize(
    "method,path,body,action,object_type,field,before,after",
    CHANGES,
    ids=[f"{c[0]} {c[1]} -> {c[3]}" for c in CHANGES],
)
def test_a_direct_change_through_the_api_is_audited_with_before_and_after(
    world, client_for, admin_user, method, path, body, action, object_type, field, before, after
):
    ids = ids_of(world)
    last_before = newest_event_id()
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


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_an_operation_is_audited_as_the_start_of_its_job_by_the_caller(
    world, client_for, users, op
):
    ids = ids_of(world)
    last_before = newest_event_id()
    caller = users[op.role]

    response = client_for(op.role).post(V1 + fill(op.path, ids), fill(op.body, ids), format="json")

    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    new_events = AuditEvent.objects.filter(id__gt=last_before)
    event = new_events.get(action="job.start")
    assert event.actor == caller and event.actor_name == caller.username
    assert (event.object_type, event.object_id) == ("job", str(job.pk))
    assert event.after["kind"] == op.kind and event.after["requested_by"] == caller.pk
    assert event.after["params"] == job.params == fill(op.params, ids)
    assert event.after["mirror"] == job.mirror_id and event.after["member"] == job.member_id
    # Nothing else is written: what the members answer, the job records once it has run.
    assert set(new_events.values_list("action", flat=True)) == {"job.start"}


def rows_of_the_mirror() -> dict:
    # updated_at aside: a decision touches its member's row to take its lock (members.actions)
    return {
        "mirror": list(Mirror.objects.values()),
        "members": list(Member.objects.order_by("pk").values(*MEMBER_FIELDS)),
        "databases": list(MirroredDatabase.objects.order_by("pk").values()),
        "copies": list(DatabaseCopy.objects.order_by("pk").values()),
        "dn_updates": list(PendingDNUpdate.objects.order_by("pk").values()),
    }


def test_an_operation_changes_none_of_the_mirrors_rows(world, client_for):
    ids = ids_of(world)  # first: it makes the DR async a promotion is asked for
    before = rows_of_the_mirror()
    client = client_for("admin")

    for op in OPERATIONS:
        response = client.post(V1 + fill(op.path, ids), fill(op.body, ids), format="json")
        # decisions on one member are serialized (409 in_progress); every other one starts
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "in_progress", op
        else:
            assert response.status_code == 202, (op, response.content)

    assert rows_of_the_mirror() == before


def test_a_retried_job_names_the_job_it_retries(world, client_for, operator):
    last_before = newest_event_id()

    response = client_for("operator").post(V1 + f"/jobs/{world.failed_job.pk}/retry/")

    assert response.status_code == 202
    event = AuditEvent.objects.get(id__gt=last_before)
    assert event.action == "job.retry" and event.actor == operator
    assert event.after["retry_of"] == world.failed_job.pk


def test_cancelling_a_job_is_audited(world, client_for, operator):
    last_before = newest_event_id()

    response = client_for("operator").post(V1 + f"/jobs/{world.job.pk}/cancel/")

    assert response.status_code == 200
    event = AuditEvent.objects.get(id__gt=last_before)
    assert (event.action, event.actor, event.object_id) == (
        "job.cancel",
        operator,
        str(world.job.pk),
    )
    assert event.after == {"state": "cancelled"}


def test_a_refused_operation_is_not_audited(world, client_for):
    last_before = newest_event_id()

    refused = client_for("admin").post(
        V1 + f"/mirrors/{world.mirror.pk}/remove/", {"confirm": "BETA"}, format="json"
    )

    assert refused.status_code == 400
    assert not AuditEvent.objects.filter(id__gt=last_before).exists()
    assert not Job.objects.filter(kind="remove_mirror").exists()


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
    client.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/", {"arbiter_host": "arb.example"}, format="json"
    )
    update = AuditEvent.objects.filter(action="mirror.update").get()
    started = AuditEvent.objects.filter(action="job.start", id__gt=update.pk).get()

    def listed(**query):
        response = client.get(V1 + "/audit-events/", query)
        assert response.status_code == 200, response.content
        return {e["id"] for e in response.json()["results"]}

    assert listed(action="mirror.update") == {update.pk}
    assert listed(object_type="mirror", object_id=str(world.mirror.pk), action="mirror.update") == {
        update.pk
    }
    assert listed(object_type="job", action="job.start", actor=users["admin"].pk) >= {started.pk}
    assert update.pk in listed(actor=users["admin"].pk)
    assert listed(actor=users["viewer"].pk) == set(
        AuditEvent.objects.filter(actor=users["viewer"]).values_list("pk", flat=True)
    )
    since = update.at.isoformat()
    assert listed(since=since, action="mirror.update") == {update.pk}
    registered = set(AuditEvent.objects.filter(action="host.create").values_list("pk", flat=True))
    assert registered and listed(until=since, action="host.create") == registered
    assert listed(since="2999-01-01T00:00:00Z") == set()
