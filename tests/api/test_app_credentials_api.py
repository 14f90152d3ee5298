"""Application credentials through the REST API (docs/hardening.md, "Application credentials in
the portal"): the request's side, with no worker running (tests/api/conftest.py).

Viewers read the credentials as the instance last answered; operators make, read and revoke them
(each a job) and see the secret of one they made, once. What the jobs do on a real instance is
tests/jobs/test_app_credentials_portal.py's; here a finished job is written the way its handler
writes it, the secret sealed on the row.
"""

import io
from datetime import timedelta

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AuditEvent
from engine.member.app_auth import NAME_RE
from members import actions
from members.operations import app_credentials
from portal import crypto
from tasks.models import Job
from tasks.services import finish_job, mark_running, start_job
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.api

V1 = "/api/v1"
SECRET = "Vq3-secret-only-the-instance-made-0123456789abcdef"


def path(world, tail="") -> str:
    return f"{V1}/members/{world.member.pk}/app-credentials/{tail}"


def made(world, user, name="billing", secret=SECRET) -> Job:
    """A create_app_credential job as its handler leaves it: succeeded, the instance's list in
    its result, the secret sealed on the row."""
    job = actions.create_app_credential(user, world.member, name)
    mark_running(job)
    job.params = {**job.params, app_credentials.SECRET: crypto.seal(secret)}
    job.save(update_fields=["params"])
    finish_job(job, result=answer(world, [name], credential=name))
    return job


def answer(world, names, **more) -> dict:
    return {
        "member": world.member.name,
        "instance": world.member.name,
        "host": world.member.host.name,
        "credentials": [{"name": n, "created": "2026-12-06T08:00:00Z"} for n in names],
        "auth": "required" if names else "off",
        "mode": "auto",
        **more,
    }


def reveal(client, world, job):
    return client.post(path(world, "reveal/"), {"job": job.pk}, format="json")


# --- Roles ------------------------------------------------------------------------------------
def test_a_viewer_reads_the_credentials_but_may_not_make_read_revoke_or_reveal_them(
    world, client_for, users
):
    job = made(world, users["operator"])
    viewer = client_for("viewer")

    listed = viewer.get(path(world))
    refused = [
        viewer.post(path(world), {"name": "reports"}, format="json"),
        viewer.post(path(world, "read/"), format="json"),
        viewer.post(path(world, "revoke/"), {"name": "billing", "confirm": "ALPHA"}, format="json"),
        reveal(viewer, world, job),
    ]

    assert listed.status_code == 200
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert Job.objects.filter(kind__in=app_credentials.KINDS).count() == 1
    job.refresh_from_db()
    assert app_credentials.SECRET in job.params


def test_an_operator_asks_for_a_credential_and_gets_its_job_with_the_name_only(
    world, client_for, users
):
    response = client_for("operator").post(path(world), {"name": " billing.v2 "}, format="json")

    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.kind, job.state, job.params) == (
        "create_app_credential",
        "queued",
        {"name": "billing.v2"},
    )
    assert (job.member, job.mirror, job.requested_by) == (
        world.member,
        world.mirror,
        users["operator"],
    )


def test_reading_and_revoking_are_jobs_on_the_member(world, client_for):
    operator = client_for("operator")

    read = operator.post(path(world, "read/"), format="json")
    revoke = operator.post(
        path(world, "revoke/"), {"name": "billing", "confirm": "alpha"}, format="json"
    )

    assert (read.status_code, revoke.status_code) == (202, 202)
    assert Job.objects.get(pk=read.json()["id"]).kind == "list_app_credentials"
    revoking = Job.objects.get(pk=revoke.json()["id"])
    assert (revoking.kind, revoking.params) == ("revoke_app_credential", {"name": "billing"})
    assert revoking.member == world.member


# --- Validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,code",
    [
        ("../etc", "invalid_credential_name"),
        ("-leading-dash", "invalid_credential_name"),
        ("two words", "invalid_credential_name"),
        ("naïve", "invalid_credential_name"),
        ("x" * 65, "max_length"),
        ("", "blank"),
        (None, "null"),
    ],
)
def test_a_name_the_instance_would_refuse_starts_no_job(world, client_for, name, code):
    response = client_for("operator").post(path(world), {"name": name}, format="json")

    assert response.status_code == 400
    assert [e["code"] for e in response.json()["error"]["fields"]["name"]] == [code]
    assert not Job.objects.filter(kind="create_app_credential").exists()


def test_a_create_without_a_name_is_refused_as_required(world, client_for):
    response = client_for("operator").post(path(world), {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"][0]["code"] == "required"


@pytest.mark.parametrize("confirm", [None, "", "BETA"])
def test_revoking_goes_ahead_only_with_the_mirror_name_typed(world, client_for, confirm):
    body = {"name": "billing"} | ({} if confirm is None else {"confirm": confirm})

    response = client_for("operator").post(path(world, "revoke/"), body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]["fields"]["confirm"][0]
    assert error["code"] == "not_confirmed" and "ALPHA" in error["message"]
    assert not Job.objects.filter(kind="revoke_app_credential").exists()


@pytest.mark.parametrize("name", ["billing", "Billing-2", "a", "app.v1_x", "9lives", "x" * 64])
def test_the_portal_accepts_exactly_the_names_the_instance_accepts(name):
    # engine/member/app_auth.py's rule, which the portal repeats (it may not import it)
    for candidate in (name, f"-{name}", f"{name}/", f".{name}", f"_{name}", f"{name}\u00e9"):
        assert bool(actions.CREDENTIAL_NAME.fullmatch(candidate)) is bool(NAME_RE.match(candidate))
    assert actions.CREDENTIAL_NAME.fullmatch(name)
    assert not actions.CREDENTIAL_NAME.fullmatch(name + "x" * 64)


# --- The list ---------------------------------------------------------------------------------
def test_the_list_is_what_the_instance_last_answered(world, client_for, users):
    viewer = client_for("viewer")
    before = viewer.get(path(world)).json()
    read = actions.list_app_credentials(users["operator"], world.member)
    finish_job(read, result=answer(world, ["billing", "reports"]))
    later_failure = actions.list_app_credentials(users["operator"], world.member)
    finish_job(later_failure, error="APP on host1: refused")
    unread = actions.revoke_app_credential(users["operator"], world.member, "x", confirm="ALPHA")
    finish_job(unread, result=answer(world, [], credentials=None))  # the list could not be read

    listed = viewer.get(path(world)).json()

    assert before["credentials"] is None and before["job"] is None
    assert [c["name"] for c in listed["credentials"]] == ["billing", "reports"]
    assert (listed["job"], listed["auth"], listed["mode"]) == (read.pk, "required", "auto")
    assert listed["instance"] == world.member.name and listed["read_at"]
    assert "secret" not in str(listed)


# --- The secret, once -------------------------------------------------------------------------
def test_the_secret_is_shown_once_to_the_operator_who_asked_and_then_erased(
    world, client_for, users
):
    job = made(world, users["operator"])
    another_operator = api_client_for(make_user("olga-operator", "operator"))
    refused = [reveal(another_operator, world, job), reveal(client_for("admin"), world, job)]
    asker = client_for("operator")

    shown = reveal(asker, world, job)
    again = reveal(asker, world, job)

    assert [r.status_code for r in refused] == [403, 403]  # not even an admin sees it
    assert shown.status_code == 200, shown.content
    assert shown["Cache-Control"] == "no-store"
    assert shown.json() == {
        "job": job.pk,
        "member": world.member.name,
        "instance": world.member.name,
        "host": world.member.host.name,
        "name": "billing",
        "secret": SECRET,
    }
    assert again.status_code == 409 and again.json()["error"]["code"] == "secret_gone"
    job.refresh_from_db()
    assert app_credentials.SECRET not in job.params
    reveals = AuditEvent.objects.filter(action="app_credential.reveal")
    assert [(e.actor, e.after) for e in reveals] == [(users["operator"], {"credential": "billing"})]
    assert SECRET not in repr(list(AuditEvent.objects.values()))


def test_the_job_api_never_shows_the_waiting_secret_even_sealed(world, client_for, users):
    job = made(world, users["operator"])
    sealed = Job.objects.get(pk=job.pk).params[app_credentials.SECRET]

    listed = client_for("operator").get(f"{V1}/jobs/")
    one = client_for("operator").get(f"{V1}/jobs/{job.pk}/")

    assert one.status_code == 200 and one.json()["params"] == {"name": "billing"} | {
        k: v for k, v in job.params.items() if k not in ("name", app_credentials.SECRET)
    }
    assert sealed not in listed.content.decode() and sealed not in one.content.decode()


def test_a_job_that_made_nothing_has_no_secret_to_show(world, client_for, users):
    operator = client_for("operator")
    queued = actions.create_app_credential(users["operator"], world.member, "later")
    failed = actions.create_app_credential(users["operator"], world.member, "twice")
    finish_job(failed, error="credential 'twice' exists: revoke it first")
    not_a_creation = start_job(users["operator"], "check_host", world.host)

    answers = [reveal(operator, world, j) for j in (queued, failed, not_a_creation)]

    assert [a.status_code for a in answers] == [409, 409, 404]
    assert [a.json()["error"]["code"] for a in answers] == ["not_ready", "no_secret", "not_found"]


def test_a_secret_is_shown_only_on_its_own_member(world, client_for, users):
    job = made(world, users["operator"])

    response = client_for("operator").post(
        f"{V1}/members/{world.pending.pk}/app-credentials/reveal/", {"job": job.pk}, format="json"
    )

    assert response.status_code == 404
    job.refresh_from_db()
    assert app_credentials.SECRET in job.params


def test_a_secret_not_taken_within_an_hour_is_erased_unread(world, client_for, users):
    stale = made(world, users["operator"], name="stale")
    fresh = made(world, users["operator"], name="fresh")
    Job.objects.filter(pk=stale.pk).update(finished_at=timezone.now() - timedelta(hours=2))

    late = reveal(client_for("operator"), world, stale)

    assert late.status_code == 409 and late.json()["error"]["code"] == "secret_gone"
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert app_credentials.SECRET not in stale.params
    assert app_credentials.SECRET in fresh.params


# --- The schema -------------------------------------------------------------------------------
def test_the_credential_endpoints_are_in_the_schema_with_their_bodies(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--file", str(out), stderr=io.StringIO())
    paths = yaml.safe_load(out.read_text())["paths"]
    base = V1 + "/members/{id}/app-credentials/"

    def body(method):
        return method["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    def answer_of(method, status):
        return method["responses"][status]["content"]["application/json"]["schema"]["$ref"]

    assert answer_of(paths[base]["get"], "200").endswith("/AppCredentialList")
    assert body(paths[base]["post"]).endswith("/AppCredentialNameRequest")
    assert answer_of(paths[base]["post"], "202").endswith("/Job")
    assert "requestBody" not in paths[base + "read/"]["post"]
    assert body(paths[base + "revoke/"]["post"]).endswith("/RevokeAppCredentialRequest")
    assert body(paths[base + "reveal/"]["post"]).endswith("/RevealAppCredentialRequest")
    assert answer_of(paths[base + "reveal/"]["post"], "200").endswith("/AppCredentialSecret")
