"""The application credentials page of a member (docs/hardening.md, "Application credentials in
the portal"): the list as the instance last answered, the form that starts a creation, the
revocation behind the mirror's name, and the job page that shows a new secret once, to the
operator who asked. No worker runs: a finished job is written as its handler leaves it."""

import pytest
from django.urls import reverse

from members import actions
from members.operations import app_credentials
from portal import crypto
from tasks.models import Job
from tasks.services import finish_job

pytestmark = pytest.mark.django_db

SECRET = "page-secret-0123456789-abcdefghijklmnopqrstuv"


def page(world) -> str:
    return reverse("app-credentials", args=[world.mirror.name, world.member.pk])


def listed(world, user, names):
    job = actions.list_app_credentials(user, world.member)
    credentials = [{"name": n, "created": "2026-12-06T08:00:00Z"} for n in names]
    result = {"instance": "NODEA", "host": world.host.name, "credentials": credentials}
    finish_job(job, result=result | {"auth": "required", "mode": "auto"})
    return job


def made(world, user, name="billing") -> Job:
    job = actions.create_app_credential(user, world.member, name)
    job.params = {**job.params, app_credentials.SECRET: crypto.seal(SECRET)}
    job.save(update_fields=["params"])
    finish_job(job, result={"instance": "NODEA", "host": world.host.name, "credentials": None})
    return job


def test_everyone_reads_the_list_but_only_operators_get_the_form_and_the_revoke_links(
    client_as, world, operator
):
    listed(world, operator, ["billing", "reports"])
    revoke = reverse("app-credential-revoke", args=[world.mirror.name, world.member.pk])

    as_viewer = client_as("viewer").get(page(world)).text
    as_operator = client_as("operator").get(page(world)).text
    mirror_page = client_as("operator").get(reverse("mirror-detail", args=["ALPHA"])).text

    for html in (as_viewer, as_operator):
        assert '<th scope="row">billing</th>' in html and "authentication required" in html
    assert revoke not in as_viewer and 'name="name"' not in as_viewer
    assert f"{revoke}?name=reports" in as_operator and "Create the credential" in as_operator
    assert page(world) in mirror_page


def test_the_form_starts_the_creation_and_lands_on_its_job(client_as, world, operator):
    url = reverse("app-credential-create", args=[world.mirror.name, world.member.pk])

    response = client_as("operator").post(url, {"name": "billing"})
    bad = client_as("operator").post(url, {"name": "../billing"})
    viewer = client_as("viewer").post(url, {"name": "billing"})

    job = Job.objects.get(kind="create_app_credential")
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "app-credential-job", args=[world.mirror.name, world.member.pk, job.pk]
    )
    assert (job.params, job.requested_by, job.member) == (
        {"name": "billing"},
        operator,
        world.member,
    )
    assert bad.status_code == 400
    assert "starting with a letter or digit" in bad.text
    assert viewer.status_code == 403
    assert Job.objects.filter(kind="create_app_credential").count() == 1


def test_revoking_asks_for_the_mirror_name_first(client_as, world):
    url = reverse("app-credential-revoke", args=[world.mirror.name, world.member.pk])
    client = client_as("operator")

    shown = client.get(url, {"name": "billing"})
    refused = client.post(url, {"name": "billing", "confirm": "BETA"})
    done = client.post(url, {"name": "billing", "confirm": "alpha"})

    assert "Revoke the credential billing on NODEA" in shown.text
    assert "its open connections are closed at once" in shown.text
    assert "Type the mirror&#x27;s name, ALPHA, to confirm." in refused.text
    job = Job.objects.get(kind="revoke_app_credential")
    assert done.status_code == 302 and str(job.pk) in done["Location"]
    assert job.params == {"name": "billing"}


def test_the_secret_shows_once_to_the_operator_who_asked(client_as, world, operator):
    job = made(world, operator)
    job_page = reverse("app-credential-job", args=[world.mirror.name, world.member.pk, job.pk])
    secret_url = reverse("app-credential-secret", args=[world.mirror.name, world.member.pk, job.pk])
    other = client_as("admin")
    asker = client_as("operator")

    before = asker.get(job_page).text
    to_others = other.get(job_page).text
    others_try = other.post(secret_url)
    shown = asker.post(secret_url)
    again = asker.post(secret_url, follow=True)
    after = asker.get(job_page).text

    assert "Show the secret once" in before and SECRET not in before
    assert "Show the secret once" not in to_others and "shown only to otto-operator" in to_others
    assert others_try.status_code == 403 and SECRET not in others_try.content.decode()
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    assert f'value="{SECRET}"' in shown.text
    assert SECRET not in again.text and "no longer kept" in again.text
    assert "the portal keeps no copy of it" in after


def test_the_secret_page_takes_no_get_and_no_viewer(client_as, world, operator):
    job = made(world, operator)
    url = reverse("app-credential-secret", args=[world.mirror.name, world.member.pk, job.pk])

    assert client_as("operator").get(url).status_code == 405
    assert client_as("viewer").post(url).status_code == 403
    job.refresh_from_db()
    assert app_credentials.SECRET in job.params
