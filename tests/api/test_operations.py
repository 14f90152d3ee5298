"""Every change to a mirror is an operation: the request is checked with the shared rules and
answered 202 with its job, which a worker runs later against the members' agents.

No worker runs here, so each test sees the request's side only: the job row (kind, params, the
mirror and member it concerns, who asked), the refusals (400 with the rule's code, 409 when the
state does not allow it), and that nothing of the mirror's rows changed yet. What the job does
on real members is covered by the end-to-end tests (tests/e2e).
"""

from dataclasses import dataclass

import pytest

from accounts.models import AuditEvent
from members import services
from members.models import Member, Mirror, MirroredDatabase
from tasks.models import Job
from tasks.services import finish_job, mark_running
from tests import factories

V1 = "/api/v1"


@dataclass
class Op:
    role: str  # the weakest role allowed (tests/api/test_permission_matrix.py)
    path: str
    body: dict | None
    kind: str
    params: dict
    target: str  # "<target_type>:<world attribute>"
    mirror: bool = False  # the job is linked to world.mirror
    member: str = ""  # ...and to this member of the world

    def __str__(self):
        return f"{self.path} -> {self.kind}"


def ids_of(world, op=None) -> dict:
    """The world's ids by name; `op` (an Op or a path template) may name members the world
    makes only for the operation on them (tests/api/conftest.py)."""
    names = ("mirror", "host", "spare_host", "member", "pending", "database", "spare_database")
    names += ("dn_update", "copy", "instance", "job", "failed_job")
    path = getattr(op, "path", op) or ""
    names += tuple(made for made in ("dr", "stopped") if "{" + made + "}" in path)
    return {name: getattr(world, name).pk for name in names}


def fill(value, ids):
    """`{name}` in a template, a body or params becomes the world's id of that name."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value.strip("{}")]
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


CONFIRMED = {"confirm": "ALPHA"}  # the mirror's name: destructive calls need it
TLS_FILES = {"cert": "/tls/iris.pem", "key": "/tls/iris.key", "ca": "/tls/ca.pem"}
OPERATIONS = [
    # hosts and instances
    Op("operator", "/hosts/{host}/check/", None, "check_host", {}, "host:host"),
    Op(
        "admin",
        "/hosts/{host}/import/",
        {"instance": " iris ", "mirror": "alpha"},
        "import_mirror",
        {"host": "{host}", "instance": "IRIS", "mirror": "ALPHA"},
        "host:host",
    ),
    Op(
        "admin",
        "/hosts/{host}/import/",
        {"instance": "iris"},
        "import_mirror",
        {"host": "{host}", "instance": "IRIS"},
        "host:host",
    ),
    Op(
        "admin",
        "/instances/{instance}/tls/",
        TLS_FILES,
        "set_instance_tls",
        TLS_FILES,
        "instance:instance",
    ),
    # mirrors
    Op(
        "admin",
        "/mirrors/",
        {
            "host": "{spare_host}",
            "instance": "iris",
            "name": "beta",
            "private": "10.9.9.9:2188",
            "requires_tls": False,
            "qos_timeout_ms": 9000,
            "failover_compression": "Compressed",
            "arbiter_host": "arbiter.example",
            "arbiter_port": 2300,
            "vip_address": "10.9.9.50",
            "vip_mask": 24,
            "vip_interface": "eth0",
        },
        "create_mirror",
        {
            "host": "{spare_host}",
            "instance": "IRIS",
            "name": "BETA",
            "private": "10.9.9.9:2188",
            # the engine's settings by the engine's names, for the primary
            "settings": {
                "tls": False,
                "qos_timeout_ms": 9000,
                "failover_compression": "Compressed",
            },
            # the portal's own, recorded with the mirror once the primary has it
            "portal_settings": {
                "arbiter_host": "arbiter.example",
                "arbiter_port": 2300,
                "vip_address": "10.9.9.50",
                "vip_mask": 24,
                "vip_interface": "eth0",
            },
            # and the arbiter for the primary, which hands it to every member
            "arbiter": "arbiter.example:2300",
        },
        "host:spare_host",
    ),
    Op("operator", "/mirrors/{mirror}/refresh/", None, "refresh_mirror", {}, "mirror:mirror", True),
    Op("operator", "/mirrors/{mirror}/review/", None, "review_mirror", {}, "mirror:mirror", True),
    Op(
        "admin",
        "/mirrors/{mirror}/settings/",
        {"qos_timeout_ms": 9000, "async_compression_type": "zstd", "skip_verify": True},
        "edit_mirror",
        {
            "settings": {"qos_timeout_ms": 9000, "async_compression_type": "zstd"},
            "skip_verify": True,
        },
        "mirror:mirror",
        True,
    ),
    Op(
        "admin",
        "/mirrors/{mirror}/adopt-settings/",
        None,
        "adopt_settings",
        {},
        "mirror:mirror",
        True,
    ),
    Op(
        "admin",
        "/mirrors/{mirror}/reapply-settings/",
        None,
        "reapply_settings",
        {},
        "mirror:mirror",
        True,
    ),
    Op(
        "admin",
        "/mirrors/{mirror}/join/",
        {"host": "{spare_host}", "instance": "alphadr", "member_type": "dr"},
        "join_mirror",
        {"host": "{spare_host}", "instance": "ALPHADR", "type": "dr"},
        "mirror:mirror",
        True,
    ),
    Op(
        "admin",
        "/mirrors/{mirror}/join/",
        {
            "host": "{spare_host}",
            "instance": "iris",
            "member_type": "ro_reporting",
            "member": "alpha-reports",
        },
        "join_mirror",
        {
            "host": "{spare_host}",
            "instance": "IRIS",
            "type": "ro_reporting",
            "member": "ALPHA-REPORTS",
        },
        "mirror:mirror",
        True,
    ),
    Op(
        "admin",
        "/mirrors/{mirror}/remove/",
        {"confirm": "alpha", "remove_tls": True},
        "remove_mirror",
        {"remove_db_attribute": False, "remove_tls": True},
        "mirror:mirror",
        True,
    ),
    # members
    Op(
        "admin",
        "/members/{member}/addresses/",
        {"superserver": "alpha1.example:1973", "private": "10.0.0.1:2188"},
        "update_member_address",
        {"superserver": "alpha1.example:1973", "private": "10.0.0.1:2188"},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/superserver-port/",
        {"port": 1973},
        "set_superserver_port",
        {"port": 1973},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/remove/",
        {"confirm": "alpha"},  # the mirror's name, any case
        "remove_member",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/leave/",
        {"remove_db_attribute": True},
        "leave_mirror",
        {"remove_db_attribute": True},
        "member:member",
        True,
        "member",
    ),
    *[
        Op(
            "operator",
            f"/members/{{member}}/{verb}/",
            None,
            kind,
            {},
            "member:member",
            True,
            "member",
        )
        for verb, kind in [
            ("stop-mirroring", "stop_mirroring"),
            ("start-mirroring", "start_mirroring"),
            ("stop-dejournaling", "stop_dejournaling"),
            ("start-dejournaling", "start_dejournaling"),
        ]
    ],
    # failover: a graceful stop and no failover by operators, forcing a primary by admins
    *[
        Op(
            "operator",
            f"/members/{{member}}/{verb}/",
            None,
            kind,
            {},
            "member:member",
            True,
            "member",
        )
        for verb, kind in [
            ("stop-instance", "stop_instance"),
            ("set-no-failover", "set_no_failover"),
            ("clear-no-failover", "clear_no_failover"),
        ]
    ],
    Op(
        "admin",
        "/members/{member}/force-primary/preview/",
        None,
        "preview_force_primary",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/force-primary/",
        {"confirm": "alpha"},
        "force_primary",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/rebuild/preview/",
        None,
        "preview_rebuild_member",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/rebuild/",
        {"confirm": "alpha"},
        "rebuild_member",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{member}/demote/",
        {"confirm": "alpha"},
        "demote_member",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/members/{dr}/promote/",
        {"confirm": "alpha"},
        "promote_member",
        {},
        "member:dr",
        True,
        "dr",
    ),
    # disaster recovery, no primary running: a DR async promoted to primary in two steps, with
    # a partner (one of the failover members) or none; ValidatedMember cleared on a stopped
    # former failover member; all for admins
    Op(
        "admin",
        "/members/{dr}/promote-to-primary/preview/",
        None,
        "preview_promote_to_primary",
        {"partner": None},
        "member:dr",
        True,
        "dr",
    ),
    Op(
        "admin",
        "/members/{dr}/promote-to-primary/preview/",
        {"partner": " alpha1 "},
        "preview_promote_to_primary",
        {"partner": "ALPHA1"},
        "member:dr",
        True,
        "dr",
    ),
    Op(
        "admin",
        "/members/{dr}/promote-to-primary/",
        {"confirm": "alpha"},
        "promote_to_primary",
        {"partner": None},
        "member:dr",
        True,
        "dr",
    ),
    Op(
        "admin",
        "/members/{dr}/promote-to-primary/",
        {"confirm": "alpha", "partner": "alpha1"},
        "promote_to_primary",
        {"partner": "ALPHA1"},
        "member:dr",
        True,
        "dr",
    ),
    Op(
        "admin",
        "/members/{stopped}/clear-validated-member/",
        None,
        "clear_validated_member",
        {},
        "member:stopped",
        True,
        "stopped",
    ),
    Op(
        "operator",
        "/members/{member}/catchup/",
        {"databases": ["sales", "SALES"]},
        "catchup_databases",
        {"databases": ["SALES"]},
        "member:member",
        True,
        "member",
    ),
    Op(
        "operator",
        "/members/{member}/clear-failover-db/",
        {},
        "clear_failover_db",
        {"databases": []},  # all of them
        "member:member",
        True,
        "member",
    ),
    Op(
        "operator",
        "/members/{member}/clear-failover-db/",
        {"databases": ["sales"]},
        "clear_failover_db",
        {"databases": ["SALES"]},
        "member:member",
        True,
        "member",
    ),
    Op(
        "operator",
        "/members/{member}/add-database/",
        {"name": "spare"},
        "add_database_copy",
        {"name": "SPARE"},
        "member:member",
        True,
        "member",
    ),
    # decisions
    Op(
        "admin",
        "/pending-members/{pending}/authorize/",
        None,
        "authorize_member",
        {},
        "member:pending",
        True,
        "pending",
    ),
    Op(
        "admin",
        "/pending-members/{pending}/reject/",
        {"confirm": "ALPHA"},
        "reject_member",
        {},
        "member:pending",
        True,
        "pending",
    ),
    Op(
        "admin",
        "/dn-updates/{dn_update}/authorize/",
        None,
        "authorize_dn_update",
        {"update": "{dn_update}"},
        "member:member",
        True,
        "member",
    ),
    Op(
        "admin",
        "/dn-updates/{dn_update}/reject/",
        None,
        "reject_dn_update",
        {"update": "{dn_update}"},
        "member:member",
        True,
        "member",
    ),
    # databases and their copies
    Op(
        "operator",
        "/databases/",
        {"mirror": "{mirror}", "name": "orders"},
        "create_database",
        {"name": "ORDERS", "how": "create", "members": None},  # every other member
        "mirror:mirror",
        True,
    ),
    Op(
        "operator",
        "/databases/",
        {"mirror": "{mirror}", "name": "orders", "how": "add", "members": ["alpha2"]},
        "create_database",
        {"name": "ORDERS", "how": "add", "members": ["ALPHA2"]},
        "mirror:mirror",
        True,
    ),
    Op(
        "operator",
        "/databases/",
        {"mirror": "{mirror}", "name": "orders", "members": []},
        "create_database",
        {"name": "ORDERS", "how": "create", "members": []},  # no other member yet
        "mirror:mirror",
        True,
    ),
    *[
        Op(
            "operator",
            f"/database-copies/{{copy}}/{verb}/",
            None,
            kind,
            {},
            "databasecopy:copy",
            True,
            "member",
        )
        for verb, kind in [
            ("download", "download_database"),
            ("activate", "activate_database"),
            ("dismount", "dismount_database"),
            ("pause", "pause_dejournaling"),
            ("resume", "resume_dejournaling"),
        ]
    ],
    # application credentials of a member's instance
    Op(
        "operator",
        "/members/{member}/app-credentials/",
        {"name": "billing"},
        "create_app_credential",
        {"name": "billing"},
        "member:member",
        True,
        "member",
    ),
    Op(
        "operator",
        "/members/{member}/app-credentials/read/",
        None,
        "list_app_credentials",
        {},
        "member:member",
        True,
        "member",
    ),
    Op(
        "operator",
        "/members/{member}/app-credentials/revoke/",
        {"name": "billing", "confirm": "Alpha"},
        "revoke_app_credential",
        {"name": "billing"},
        "member:member",
        True,
        "member",
    ),
    Op(
        "operator",
        "/database-copies/{copy}/remove/",
        {"confirm": "Alpha"},
        "remove_database",
        {},
        "databasecopy:copy",
        True,
        "member",
    ),
    Op(
        "operator",
        "/database-copies/{copy}/mount/",
        {"catchup": True},
        "mount_database",
        {"catchup": True},
        "databasecopy:copy",
        True,
        "member",
    ),
    Op(
        "operator",
        "/database-copies/{copy}/mount/",
        None,
        "mount_database",
        {"catchup": False},
        "databasecopy:copy",
        True,
        "member",
    ),
]


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_each_operation_answers_202_with_its_queued_job(world, client_for, users, op):
    ids = ids_of(world, op)

    response = client_for(op.role).post(V1 + fill(op.path, ids), fill(op.body, ids), format="json")

    assert response.status_code == 202, response.content
    answer = response.json()
    job = Job.objects.get(pk=answer["id"])
    assert (job.kind, job.state) == (op.kind, Job.QUEUED)
    assert job.params == fill(op.params, ids)
    target_type, target = op.target.split(":")
    assert (job.target_type, job.target_id) == (target_type, str(getattr(world, target).pk))
    assert job.mirror_id == (world.mirror.pk if op.mirror else None)
    assert job.member_id == (getattr(world, op.member).pk if op.member else None)
    assert job.requested_by == users[op.role]
    # The answer is the job as GET /jobs/{id}/ shows it.
    assert answer == client_for("viewer").get(V1 + f"/jobs/{job.pk}/").json()
    assert answer["kind"] == op.kind and answer["state"] == "queued"
    assert answer["requested_by_name"] == users[op.role].username
    assert AuditEvent.objects.filter(action="job.start", object_id=str(job.pk)).count() == 1


def test_every_job_kind_an_api_operation_starts_is_in_the_table():
    from tasks.jobs import HANDLERS

    assert {op.kind for op in OPERATIONS} == set(HANDLERS)


# --- Mirrors ------------------------------------------------------------------------------
def test_a_new_mirror_is_not_recorded_before_its_primary_answers(world, api):
    body = {"host": world.spare_host.pk, "instance": "IRIS", "name": "beta"}

    response = api.post(V1 + "/mirrors/", body | {"private": "10.9.9.9:2188"}, format="json")

    assert response.status_code == 202
    assert not Mirror.objects.filter(name="BETA").exists()
    assert api.get(V1 + "/mirrors/").json()["count"] == 1


def test_a_second_request_for_a_name_already_registered_is_refused(world, api):
    body = {"host": world.spare_host.pk, "instance": "IRIS", "private": "10.9.9.9:2188"}

    response = api.post(V1 + "/mirrors/", body | {"name": "Alpha"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"][0]["code"] == "unique"


def test_the_portals_own_settings_are_saved_at_once_the_engines_go_to_the_primary(world, api):
    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/",
        {"arbiter_host": "arbiter.example", "arbiter_port": 2300, "qos_timeout_ms": 9000},
        format="json",
    )

    assert response.status_code == 202
    assert response.json()["params"] == {
        "settings": {"qos_timeout_ms": 9000},
        "skip_verify": False,
        "arbiter": "arbiter.example:2300",  # the engine keeps it too: the primary gets it
    }
    world.mirror.refresh_from_db()
    assert (world.mirror.arbiter_host, world.mirror.arbiter_port) == ("arbiter.example", 2300)
    assert world.mirror.qos_timeout_ms == 8000  # until the primary has it
    update = AuditEvent.objects.get(action="mirror.update")
    assert update.after["arbiter_host"] == "arbiter.example"
    assert "qos_timeout_ms" not in {k for k in update.after if update.before[k] != update.after[k]}


def test_a_refused_engine_setting_saves_no_portal_setting_either(world, api):
    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/",
        {"arbiter_host": "arbiter.example", "failover_compression": "gzip"},
        format="json",
    )

    assert response.status_code == 400
    world.mirror.refresh_from_db()
    assert world.mirror.arbiter_host == ""
    assert not Job.objects.filter(kind="edit_mirror").exists()


def test_the_arbiter_cannot_be_moved_to_a_failover_members_host(world, api):
    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/",
        {"arbiter_host": world.host.address},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["arbiter_host"][0]["code"] == "arbiter_on_member_host"
    assert not Job.objects.filter(kind="edit_mirror").exists()


def test_one_part_of_a_mirrors_virtual_ip_can_change_alone(world, api):
    """The VIP is all or nothing once edited: a new mask for a mirror that has a VIP is fine."""
    services.update_mirror(
        None, world.mirror, vip_address="10.0.0.50", vip_mask=24, vip_interface="eth0"
    )

    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/", {"vip_mask": 16}, format="json"
    )

    assert response.status_code == 202, response.content
    world.mirror.refresh_from_db()
    assert (world.mirror.vip_address, world.mirror.vip_mask) == ("10.0.0.50", 16)


def test_a_virtual_ip_is_removed_as_a_whole(world, api):
    services.update_mirror(
        None, world.mirror, vip_address="10.0.0.50", vip_mask=24, vip_interface="eth0"
    )

    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/",
        {"vip_address": None, "vip_mask": None, "vip_interface": ""},
        format="json",
    )

    assert response.status_code == 202
    world.mirror.refresh_from_db()
    assert (world.mirror.vip_address, world.mirror.vip_mask, world.mirror.vip_interface) == (
        None,
        None,
        "",
    )


def test_a_setting_choice_error_lists_the_valid_values(world, api):
    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/", {"failover_compression": 5}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]["fields"]["failover_compression"][0]
    assert error["code"] == "invalid_choice"
    for valid in ("System Selected", "Uncompressed", "Compressed"):
        assert valid in error["message"]


@pytest.mark.parametrize("action", ["remove", "forget"])
def test_removing_or_forgetting_a_mirror_needs_its_name_typed(world, api, action):
    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/{action}/", {"confirm": "ALPH"}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]["fields"]["confirm"][0]
    assert error["code"] == "not_confirmed" and "ALPHA" in error["message"]
    assert Mirror.objects.filter(pk=world.mirror.pk).exists()
    assert not Job.objects.filter(kind="remove_mirror").exists()


# Every destructive call, and the body it takes besides the confirmation.
DESTRUCTIVE = {
    "remove mirror": ("/mirrors/{mirror}/remove/", {"remove_tls": True}),
    "forget mirror": ("/mirrors/{mirror}/forget/", {}),
    "turn TLS off": ("/mirrors/{mirror}/settings/", {"requires_tls": False}),
    "remove member": ("/members/{member}/remove/", {}),
    "reject member": ("/pending-members/{pending}/reject/", {}),
    "force a primary": ("/members/{member}/force-primary/", {}),
    "promote a DR async to primary": ("/members/{dr}/promote-to-primary/", {}),
    "remove database copy": ("/database-copies/{copy}/remove/", {}),
}


@pytest.mark.parametrize("confirm", [None, "", "  ", "ALPH", "BETA", "ALPHA1"])
@pytest.mark.parametrize("call", DESTRUCTIVE)
def test_a_destructive_call_without_the_mirrors_name_is_refused_and_starts_nothing(
    world, api, call, confirm
):
    path, body = DESTRUCTIVE[call]
    if confirm is not None:
        body = body | {"confirm": confirm}
    jobs_before = Job.objects.count()

    response = api.post(V1 + fill(path, ids_of(world, path)), body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["fields"]["confirm"] == [
        {"code": "not_confirmed", "message": "Type the mirror's name, ALPHA, to confirm."}
    ]
    assert error["message"] == "Type the mirror's name, ALPHA, to confirm."
    assert Job.objects.count() == jobs_before
    assert Mirror.objects.filter(pk=world.mirror.pk, requires_tls=True).exists()
    assert Member.objects.filter(pk=world.pending.pk).exists()


def test_turning_tls_off_with_the_mirrors_name_asks_the_primary(world, api):
    response = api.post(
        V1 + f"/mirrors/{world.mirror.pk}/settings/",
        {"requires_tls": False, "confirm": "alpha"},
        format="json",
    )

    assert response.status_code == 202, response.content
    assert response.json()["params"] == {"settings": {"tls": False}, "skip_verify": False}


def test_other_settings_and_turning_tls_on_need_no_confirmation(world, api):
    Mirror.objects.filter(pk=world.mirror.pk).update(requires_tls=False)
    path = V1 + f"/mirrors/{world.mirror.pk}/settings/"

    on = api.post(path, {"requires_tls": True}, format="json")
    tls_already_off = api.post(path, {"requires_tls": False}, format="json")

    assert (on.status_code, tls_already_off.status_code) == (202, 202)


def test_forgetting_a_mirror_unregisters_it_from_the_portal_only(world, api, admin_user):
    path = V1 + f"/mirrors/{world.mirror.pk}/"

    response = api.post(path + "forget/", {"confirm": "alpha"}, format="json")

    assert response.status_code == 204 and response.content == b""
    assert api.get(path).status_code == 404
    assert not Mirror.objects.filter(pk=world.mirror.pk).exists()
    assert not Member.objects.filter(mirror_id=world.mirror.pk).exists()
    assert not MirroredDatabase.objects.filter(mirror_id=world.mirror.pk).exists()
    # nothing was asked of the members, and the mirror's past jobs stay
    assert not Job.objects.filter(kind="remove_mirror").exists()
    assert Job.objects.filter(pk=world.failed_job.pk, mirror=None).exists()
    event = AuditEvent.objects.get(action="mirror.forget")
    assert event.actor == admin_user and event.object_id == str(world.mirror.pk)
    assert event.before["name"] == "ALPHA" and event.before["reason"]


# --- Members and pending members ----------------------------------------------------------
def test_a_member_not_pending_cannot_be_authorized_or_rejected(world, api):
    for decision in ("authorize", "reject"):
        response = api.post(
            V1 + f"/pending-members/{world.member.pk}/{decision}/", CONFIRMED, format="json"
        )

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "not_pending"
    assert not Job.objects.filter(member=world.member).exists()


def test_a_pending_member_that_is_gone_is_not_found(world, api):
    response = api.post(V1 + "/pending-members/999999/authorize/")

    assert response.status_code == 404


def dn_update_of_pending(world):
    return factories.dn_update(world.pending, "CN=alpha2b,O=Example")


@pytest.mark.parametrize(
    "second",
    [
        "/pending-members/{pending}/authorize/",
        "/pending-members/{pending}/reject/",
        "/members/{pending}/remove/",
        "/dn-updates/{pending_dn}/authorize/",
        "/dn-updates/{pending_dn}/reject/",
    ],
)
@pytest.mark.parametrize("first", ["authorize", "reject"])
def test_no_second_decision_while_one_is_under_way(world, api, first, second):
    ids = {"pending": world.pending.pk, "pending_dn": dn_update_of_pending(world).pk}
    path = V1 + f"/pending-members/{world.pending.pk}/{first}/"
    assert api.post(path, CONFIRMED, format="json").status_code == 202

    response = api.post(V1 + second.format(**ids), CONFIRMED, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "in_progress"
    assert Job.objects.filter(member=world.pending).count() == 1


def test_a_running_decision_blocks_another_too(world, api):
    api.post(V1 + f"/pending-members/{world.pending.pk}/authorize/")
    assert mark_running(Job.objects.get(kind="authorize_member"))

    response = api.post(
        V1 + f"/pending-members/{world.pending.pk}/reject/", CONFIRMED, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "in_progress"


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_once_a_decision_has_ended_without_deciding_another_may_start(world, api, end):
    path = V1 + f"/pending-members/{world.pending.pk}/authorize/"
    first = Job.objects.get(pk=api.post(path).json()["id"])
    if end == "failed":
        finish_job(first, error="The primary did not answer.")
    else:
        assert api.post(V1 + f"/jobs/{first.pk}/cancel/").status_code == 200

    again = api.post(path)

    assert again.status_code == 202
    assert Job.objects.filter(kind="authorize_member", member=world.pending).count() == 2


def test_an_operation_that_is_not_a_decision_does_not_block_one(world, api):
    assert api.post(V1 + f"/members/{world.pending.pk}/stop-mirroring/").status_code == 202

    assert api.post(V1 + f"/pending-members/{world.pending.pk}/authorize/").status_code == 202


def test_decisions_on_one_member_do_not_block_another_members(world, api):
    other = factories.member(world.mirror, name="ALPHADR", member_type="dr", x509_dn="CN=dr")
    assert api.post(V1 + f"/pending-members/{world.pending.pk}/authorize/").status_code == 202

    reject = api.post(V1 + f"/pending-members/{other.pk}/reject/", CONFIRMED, format="json")
    assert reject.status_code == 202


def test_on_a_tls_mirror_a_member_without_a_dn_cannot_be_authorized(world, api):
    anonymous = factories.member(world.mirror, name="ALPHADR", member_type="dr")
    assert world.mirror.requires_tls and anonymous.authorization == Member.PENDING

    response = api.post(V1 + f"/pending-members/{anonymous.pk}/authorize/")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["non_field_errors"][0]["code"] == "no_dn"
    assert not Job.objects.filter(member=anonymous).exists()
    # ...but it can be rejected
    reject = api.post(V1 + f"/pending-members/{anonymous.pk}/reject/", CONFIRMED, format="json")
    assert reject.status_code == 202


def test_a_dn_update_already_decided_is_refused(world, api):
    world.dn_update.state = world.dn_update.AUTHORIZED
    world.dn_update.save()

    response = api.post(V1 + f"/dn-updates/{world.dn_update.pk}/reject/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_pending"


def test_dn_updates_are_never_typed_in(world, api):
    response = api.post(
        V1 + "/dn-updates/", {"member": world.member.pk, "new_dn": "CN=x"}, format="json"
    )

    assert response.status_code == 405
    assert world.member.dn_updates.count() == 1


@pytest.mark.parametrize(
    "path,body,field,code",
    [
        ("addresses/", {}, "non_field_errors", "required"),
        ("addresses/", {"superserver": "alpha1.example"}, "superserver", "invalid"),
        ("addresses/", {"private": "10.0.0.1:65536"}, "private", "invalid_port"),
        ("addresses/", {"superserver": "{pending_address}"}, "superserver_port", "address_in_use"),
        ("superserver-port/", {"port": 70000}, "port", "invalid_port"),
        ("superserver-port/", {}, "port", "required"),
        ("catchup/", {"databases": ["orders"]}, "databases", "unknown_database"),
        ("catchup/", {}, "databases", "required"),
        ("add-database/", {"name": "irissys"}, "name", "system_database"),
        ("add-database/", {"name": "9lives"}, "name", "invalid_database_name"),
    ],
)
def test_each_member_operation_rule_reports_its_own_code(world, api, path, body, field, code):
    pending_address = f"{world.pending.superserver_address}:{world.pending.superserver_port}"
    body = {
        k: v.format(pending_address=pending_address) if isinstance(v, str) else v
        for k, v in body.items()
    }

    response = api.post(V1 + f"/members/{world.member.pk}/{path}", body, format="json")

    assert response.status_code == 400
    assert [e["code"] for e in response.json()["error"]["fields"][field]] == [code]
    assert not Job.objects.filter(member=world.member).exists()


# --- Databases, hosts, instances ----------------------------------------------------------
@pytest.mark.parametrize(
    "body,field,code",
    [
        ({"name": "9lives"}, "name", "invalid_database_name"),
        ({"name": "IRISLIB"}, "name", "system_database"),
        ({"name": "orders", "how": "restore"}, "how", "invalid_choice"),
        ({"name": "orders", "members": ["nobody"]}, "members", "unknown_member"),
        ({"name": "orders", "mirror": 999999}, "mirror", "does_not_exist"),
    ],
)
def test_each_database_rule_reports_its_own_code(world, api, body, field, code):
    response = api.post(V1 + "/databases/", {"mirror": world.mirror.pk} | body, format="json")

    assert response.status_code == 400
    assert [e["code"] for e in response.json()["error"]["fields"][field]] == [code]
    assert not Job.objects.filter(kind="create_database").exists()


def test_how_a_database_joins_lists_the_valid_ways(world, api):
    response = api.post(
        V1 + "/databases/",
        {"mirror": world.mirror.pk, "name": "x", "how": "restore"},
        format="json",
    )

    message = response.json()["error"]["fields"]["how"][0]["message"]
    assert "create" in message and "add" in message


def test_a_databases_startup_flag_is_the_portals_own_and_edited_directly(world, api):
    path = V1 + f"/databases/{world.database.pk}/"

    response = api.patch(path, {"mount_required_at_startup": True}, format="json")
    renamed = api.put(
        path,
        {"mirror": world.mirror.pk, "name": "orders", "mount_required_at_startup": True},
        format="json",
    )

    assert response.status_code == 200 and response.json()["mount_required_at_startup"] is True
    assert renamed.status_code == 400
    assert renamed.json()["error"]["fields"]["name"][0]["code"] == "immutable"
    world.database.refresh_from_db()
    assert (world.database.name, world.database.mount_required_at_startup) == ("SALES", True)
    assert not Job.objects.exclude(pk__in=[world.job.pk, world.failed_job.pk]).exists()


@pytest.mark.parametrize(
    "body,field,code",
    [
        ({}, "instance", "required"),
        ({"instance": "iris", "mirror": "no such!"}, "mirror", "invalid_mirror_name"),
    ],
)
def test_an_import_names_a_valid_instance_and_mirror(world, api, body, field, code):
    response = api.post(V1 + f"/hosts/{world.host.pk}/import/", body, format="json")

    assert response.status_code == 400
    assert [e["code"] for e in response.json()["error"]["fields"][field]] == [code]


def test_an_instances_tls_files_are_absolute_paths_on_its_host(world, api):
    response = api.post(
        V1 + f"/instances/{world.instance.pk}/tls/",
        {"cert": "iris.pem", "key": "/tls/iris.key", "ca": "/tls/ca.pem"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["cert"][0]["code"] == "invalid"


# --- Jobs ---------------------------------------------------------------------------------
def test_a_failed_job_is_retried_as_a_new_job_with_the_same_request(world, client_for, operator):
    failed = world.failed_job

    response = client_for("operator").post(V1 + f"/jobs/{failed.pk}/retry/")

    assert response.status_code == 202
    again = Job.objects.get(pk=response.json()["id"])
    assert again.pk != failed.pk and again.retry_of == failed
    assert (again.kind, again.params, again.mirror_id, again.member_id) == (
        failed.kind,
        failed.params,
        failed.mirror_id,
        failed.member_id,
    )
    assert (again.target_type, again.target_id) == (failed.target_type, failed.target_id)
    assert again.state == Job.QUEUED and again.requested_by == operator
    assert response.json()["retry_of"] == failed.pk


@pytest.mark.parametrize("state", [Job.QUEUED, Job.RUNNING, Job.SUCCEEDED])
def test_only_a_failed_or_cancelled_job_is_retried(world, api, state):
    Job.objects.filter(pk=world.job.pk).update(state=state)

    response = api.post(V1 + f"/jobs/{world.job.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_retryable"
    assert Job.objects.count() == 2


def test_a_queued_job_is_cancelled_at_once_and_can_then_be_retried(world, client_for):
    client = client_for("operator")

    cancelled = client.post(V1 + f"/jobs/{world.job.pk}/cancel/")

    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["finished_at"]
    assert cancelled.json()["cancel_requested"] is True
    world.job.refresh_from_db()
    assert world.job.state == Job.CANCELLED
    assert client.post(V1 + f"/jobs/{world.job.pk}/retry/").status_code == 202


def test_a_running_job_is_asked_to_stop_at_its_next_wait(world, api):
    assert mark_running(world.job)

    response = api.post(V1 + f"/jobs/{world.job.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["state"] == "running" and response.json()["cancel_requested"] is True


@pytest.mark.parametrize("job", ["failed_job", "cancelled"])
def test_a_job_that_has_ended_cannot_be_cancelled(world, api, job):
    if job == "cancelled":
        api.post(V1 + f"/jobs/{world.job.pk}/cancel/")
        job = "job"
    target = getattr(world, job)

    response = api.post(V1 + f"/jobs/{target.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_final"


def test_jobs_filter_by_kind_state_mirror_and_member(world, api):
    catchup = api.post(
        V1 + f"/members/{world.member.pk}/catchup/", {"databases": ["sales"]}, format="json"
    ).json()

    def listed(**query):
        response = api.get(V1 + "/jobs/", query)
        assert response.status_code == 200, response.content
        return {job["id"] for job in response.json()["results"]}

    assert listed(kind="check_host") == {world.job.pk}
    assert listed(state="failed") == {world.failed_job.pk}
    assert listed(state="queued") == {world.job.pk, catchup["id"]}
    assert listed(mirror=world.mirror.pk) == {world.failed_job.pk, catchup["id"]}
    assert listed(member=world.member.pk) == {catchup["id"]}
    assert listed(member=world.pending.pk) == set()
