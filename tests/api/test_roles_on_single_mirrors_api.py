"""The API for someone whose only role is on one mirror (docs/access.md).

The same endpoints and methods as tests/api/test_permission_matrix.py, called by a *teammate*
(viewer, operator or admin of ALPHA, the seeded world's mirror, and of nothing else) and by an
*outsider* (the same role on another mirror, BETA, only). The teammate gets what a portal-wide
role gets on ALPHA's rows; the outsider finds none of them (404, empty lists, an unknown mirror
in a body); both are refused what only the portal as a whole has (hosts, instances, users, the
audit trail, creating a mirror) and may use their own tokens and the schema.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, MirrorRole
from accounts.roles import NO_ROLE
from accounts.services import create_token, create_user, delete_user, set_mirror_role
from accounts.signals import roles_changed
from members.models import Mirror
from monitor.models import Event
from tasks.models import Job
from tasks.services import finish_job, start_job
from tests import factories
from tests.api.conftest import RANK, bearer
from tests.api.test_permission_matrix import ROWS, V1, Row

User = get_user_model()
PORTAL_WIDE = ("/hosts/", "/instances/", "/audit-events/", "/users/")
OWN = ("/tokens/",)
# a mirror's collections: listed for anyone who sees a mirror, holding only what they see
LISTS = ("mirrors", "drifts", "members", "pending-members", "dn-updates", "databases")
LISTS += ("database-copies", "jobs", "alerts", "events", "mirror-roles")


def template(row: Row) -> str:
    return row.path.__doc__


def is_portal_wide(row: Row) -> bool:
    path = template(row)
    creates_a_mirror = row.method == "post" and path == V1 + "/mirrors/"
    return creates_a_mirror or any(path.startswith(V1 + p) for p in PORTAL_WIDE)


def is_own_or_schema(row: Row) -> bool:
    path = template(row)
    return path.startswith("/api/") and not path.startswith(V1) or path.startswith(V1 + "/tokens/")


def expected(row: Row, role: str, where: str) -> int:
    """What a caller holding `role` on one mirror only gets: `where` is "teammate" (ALPHA, the
    rows' mirror) or "outsider" (BETA)."""
    if is_portal_wide(row):
        return 403
    if RANK[role] < RANK[row.needs]:  # too weak on every mirror they hold a role on
        return 403
    if "{token}" in template(row) and row.ok != 405:
        return 404  # the world's token is someone else's
    if is_own_or_schema(row) or row.ok == 405:
        return row.ok
    path = template(row)
    if "{job}" in path:  # the world's host check: a job of no mirror, for portal-wide roles
        return 404
    if path in (V1 + "/databases/", V1 + "/mirror-roles/") and row.method == "post":
        return row.ok if where == "teammate" else 400  # BETA's caller names ALPHA in the body
    if path.count("/") == len(V1.split("/")) + 1:  # a collection: /api/v1/<name>/
        return row.ok
    return row.ok if where == "teammate" else 404


@pytest.fixture
def one_mirror_caller(world):
    """`one_mirror_caller(role, where)`: a client for a user with no portal-wide role and
    `role` on ALPHA (teammate) or on BETA (outsider)."""
    beta = factories.mirror(name="BETA")

    def make(role: str, where: str):
        user = create_user(None, username=f"{where}-{role}", password=None, role=NO_ROLE)
        set_mirror_role(None, user, world.mirror if where == "teammate" else beta, role)
        token, secret = create_token(user, name="script")
        return user, bearer(secret)

    return make


@pytest.mark.parametrize("where", ["teammate", "outsider"])
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_role_on_one_mirror_opens_that_mirror_and_nothing_else(
    world, one_mirror_caller, row, role, where
):
    user, client = one_mirror_caller(role, where)
    kwargs = {"format": "json"} if row.body else {}
    body = row.body(world) if row.body else None

    response = getattr(client, row.method)(row.path(world, role), body, **kwargs)

    assert response.status_code == expected(row, role, where), response.content[:500]
    if response.status_code == 202:  # an operation: queued, asked for by this caller
        assert response.json()["requested_by"] == user.pk


@pytest.mark.parametrize("collection", LISTS)
def test_lists_hold_the_teammates_mirror_and_nothing_of_the_outsiders(
    world, one_mirror_caller, collection
):
    _, teammate = one_mirror_caller("admin", "teammate")
    _, outsider = one_mirror_caller("admin", "outsider")
    set_mirror_role(None, world.someone, world.mirror, "viewer")  # a row for mirror-roles
    Event.objects.create(
        mirror=world.mirror, mirror_name="ALPHA", kind=Event.STATUS, text="seen", at=timezone.now()
    )

    seen = teammate.get(f"{V1}/{collection}/").json()["results"]
    unseen = outsider.get(f"{V1}/{collection}/").json()["results"]

    def mirrors_of(rows):
        return {row.get("mirror_name") or row.get("name") for row in rows}

    assert seen, f"the teammate sees ALPHA's {collection}"
    assert "BETA" not in mirrors_of(seen)
    if collection in ("mirrors", "mirror-roles"):  # BETA itself, and the outsider's role on it
        assert mirrors_of(unseen) == {"BETA"}
    else:
        assert unseen == [], f"the outsider sees none of ALPHA's {collection}"


def test_the_live_status_and_samples_of_another_mirror_are_not_found(world, one_mirror_caller):
    _, teammate = one_mirror_caller("viewer", "teammate")
    _, outsider = one_mirror_caller("viewer", "outsider")

    for path in ("status", "samples"):
        assert teammate.get(f"{V1}/mirrors/ALPHA/{path}/").status_code == 200
        assert outsider.get(f"{V1}/mirrors/ALPHA/{path}/").status_code == 404
        assert outsider.get(f"{V1}/mirrors/{world.mirror.pk}/{path}/").status_code == 404
        assert outsider.get(f"{V1}/mirrors/BETA/{path}/").status_code == 200


def test_a_mirrors_admin_gives_and_takes_roles_on_it_and_each_change_is_audited(
    world, one_mirror_caller
):
    _, teammate = one_mirror_caller("admin", "teammate")

    given = teammate.post(
        f"{V1}/mirror-roles/",
        {"user": "sam-someone", "mirror": world.mirror.pk, "role": "operator"},
        format="json",
    )
    assert given.status_code == 201, given.content
    held = MirrorRole.objects.get(user=world.someone, mirror=world.mirror)
    assert held.role == "operator"
    changed = teammate.patch(f"{V1}/mirror-roles/{held.pk}/", {"role": "viewer"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    assert teammate.delete(f"{V1}/mirror-roles/{held.pk}/").status_code == 204
    assert not MirrorRole.objects.filter(user=world.someone).exists()
    trail = list(
        AuditEvent.objects.filter(object_id=str(world.someone.pk), action__startswith="mirror_role")
        .order_by("id")
        .values_list("action", "actor_name")
    )
    assert trail == [
        ("mirror_role.add", "teammate-admin"),
        ("mirror_role.change", "teammate-admin"),
        ("mirror_role.remove", "teammate-admin"),
    ]


def test_an_admin_of_one_mirror_cannot_give_a_role_on_another(world, one_mirror_caller):
    _, outsider = one_mirror_caller("admin", "outsider")
    _, operator = one_mirror_caller("operator", "teammate")

    refused = outsider.post(
        f"{V1}/mirror-roles/",
        {"user": "sam-someone", "mirror": world.mirror.pk, "role": "admin"},
        format="json",
    )
    weak = operator.post(
        f"{V1}/mirror-roles/",
        {"user": "sam-someone", "mirror": world.mirror.pk, "role": "admin"},
        format="json",
    )

    assert refused.status_code == 400 and "mirror" in str(refused.json())
    assert weak.status_code == 403
    assert not MirrorRole.objects.filter(user=world.someone).exists()


def test_an_admin_of_one_mirror_is_only_a_viewer_of_the_other_he_sees(world, one_mirror_caller):
    user, client = one_mirror_caller("admin", "outsider")  # admin of BETA
    set_mirror_role(None, user, world.mirror, "viewer")  # and a viewer of ALPHA
    beta = Mirror.objects.get(name="BETA")

    assert client.get(f"{V1}/mirrors/{world.mirror.pk}/").status_code == 200
    assert client.post(f"{V1}/mirrors/{world.mirror.pk}/refresh/").status_code == 403
    assert client.post(f"{V1}/members/{world.member.pk}/stop-mirroring/").status_code == 403
    assert client.post(f"{V1}/database-copies/{world.copy.pk}/pause/").status_code == 403
    assert client.post(f"{V1}/alerts/{world.alert.pk}/acknowledge/").status_code == 403
    body = {"mirror": world.mirror.pk, "name": "orders"}
    assert client.post(f"{V1}/databases/", body, format="json").status_code == 403
    assert client.post(f"{V1}/mirrors/{beta.pk}/refresh/").status_code == 202


def test_a_portal_wide_viewer_who_operates_one_mirror_operates_that_one_only(
    world, one_mirror_caller
):
    user, client = one_mirror_caller("operator", "outsider")  # operator of BETA
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])  # a viewer everywhere
    beta = Mirror.objects.get(name="BETA")

    assert client.get(f"{V1}/hosts/").status_code == 200
    assert client.post(f"{V1}/mirrors/{world.mirror.pk}/refresh/").status_code == 403
    assert client.post(f"{V1}/mirrors/{beta.pk}/refresh/").status_code == 202


# --- What an instance shared with another mirror, and retries, ask for ------------------------
@pytest.fixture
def shared_reporting(world):
    """REPORT1, one instance on the world's host, a reporting async of ALPHA and of BETA
    (guide §2: an async may receive from several mirrors)."""
    beta = Mirror.objects.get_or_create(name="BETA")[0]
    shared = {"host": world.host, "member_type": "ro_reporting", "superserver_port": 1980}
    ours = factories.member(world.mirror, name="REPORT1", authorization="authorized", **shared)
    factories.member(beta, name="REPORT1", **shared)
    return ours


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "stop-instance/", None),
        ("post", "superserver-port/", {"port": 1999}),
        ("get", "app-credentials/", None),
        ("post", "app-credentials/", {"name": "billing"}),
        ("post", "app-credentials/revoke/", {"name": "billing", "confirm": "ALPHA"}),
        ("post", "rebuild/preview/", None),
    ],
)
def test_what_acts_on_an_instance_shared_with_another_mirror_needs_a_role_there_too(
    world, one_mirror_caller, shared_reporting, method, path, body
):
    user, client = one_mirror_caller("admin", "teammate")  # admin of ALPHA alone
    url = f"{V1}/members/{shared_reporting.pk}/{path}"

    refused = getattr(client, method)(url, body, format="json")
    set_mirror_role(None, user, Mirror.objects.get(name="BETA"), "admin")
    user.__dict__.pop("_mirror_roles", None)
    allowed = getattr(client, method)(url, body, format="json")

    assert refused.status_code == 403, refused.content
    assert "other mirrors too" in refused.json()["error"]["message"]
    assert allowed.status_code in (200, 202), allowed.content


def test_retrying_a_job_needs_the_role_its_request_needed(world, one_mirror_caller):
    _, operator = one_mirror_caller("operator", "teammate")
    removal = start_job(None, "remove_mirror", world.mirror, mirror=world.mirror)
    finish_job(removal, error="ALPHA1 did not answer.")

    assert operator.post(f"{V1}/jobs/{removal.pk}/retry/").status_code == 403
    assert operator.post(f"{V1}/jobs/{world.failed_job.pk}/retry/").status_code == 202  # refresh
    assert not Job.objects.filter(retry_of=removal).exists()


def test_joining_names_no_mirror_the_caller_cannot_see(world, one_mirror_caller):
    user, client = one_mirror_caller("admin", "teammate")
    beta = Mirror.objects.get(name="BETA")
    factories.member(beta, name="BFAIL", host=world.spare_host, member_type="failover")
    factories.instance(world.spare_host, name="BFAIL", mirror_name="BETA", member_name="BFAIL")

    refused = client.post(
        f"{V1}/mirrors/{world.mirror.pk}/join/",
        {"host": world.spare_host.pk, "instance": "BFAIL", "member_type": "dr"},
        format="json",
    )
    page = Client()
    page.force_login(user)
    form = page.get("/mirrors/ALPHA/join/").text

    assert refused.status_code == 400
    assert "BETA" not in refused.content.decode() and "another mirror" in refused.content.decode()
    assert "BFAIL (member of another mirror)" in form and "BETA" not in form


def test_deleting_a_user_tells_their_open_sockets(
    world, one_mirror_caller, django_capture_on_commit_callbacks
):
    user, _ = one_mirror_caller("viewer", "teammate")
    told = []
    roles_changed.connect(
        lambda sender, user_id, **_: told.append(user_id), weak=False, dispatch_uid="t"
    )
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delete_user(world.tokens["admin"][0].user, User.objects.get(pk=user.pk))
    finally:
        roles_changed.disconnect(dispatch_uid="t")
    assert told == [user.pk]
