"""The new-mirror wizard's rules, without members: who may use it, each step checked by the
shared rules before anything starts, a step that waits for the jobs before it, and a draft
that keeps its answers. The walk against real members is tests/browser/test_wizard.py."""

import pytest

from members.models import Draft
from tasks.models import Job
from tests import factories
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def instances():
    hosta, hostb = factories.host(name="hosta"), factories.host(name="hostb")
    return {
        "A": factories.instance(hosta, name="A", superserver="10.0.0.1:1972"),
        "B": factories.instance(hostb, name="B", superserver="10.0.0.2:1972"),
        "TAKEN": factories.instance(hostb, name="TAKEN", member_name="TAKEN", mirror_name="X"),
    }


def step_url(draft, step):
    return f"/new-mirror/{draft.pk}/{step}/"


def post_step(client, draft, step, **fields):
    data = {f"draft{draft.pk}-current_step": step}
    data.update({f"{step}-{k}": v for k, v in fields.items()})
    return client.post(step_url(draft, step), data)


def started_draft(client) -> Draft:
    response = client.post("/new-mirror/")
    assert response.status_code == 302
    return Draft.objects.latest("pk")


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_reach_the_wizard(client, role):
    client.force_login(make_user(f"someone-{role}", role))
    assert client.get("/new-mirror/").status_code == 403
    assert client.post("/new-mirror/").status_code == 403
    assert not Draft.objects.exists()


def test_another_admins_draft_is_not_found(client, admin_user):
    other = Draft.objects.create(owner=make_user("bob-admin", "admin"))
    client.force_login(admin_user)
    assert client.get(step_url(other, "instances")).status_code == 404


def test_instances_offer_only_instances_in_no_mirror(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    page = client.get(step_url(draft, "instances")).content.decode()
    assert "A on hosta" in page and "B on hostb" in page
    assert "TAKEN on hostb" not in page


def test_the_same_instance_cannot_be_both_failover_members(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    a = instances["A"].pk
    response = post_step(client, draft, "instances", primary=a, backup=a, tls="")
    assert response.status_code == 200
    assert "Choose another instance than the first failover member." in response.content.decode()


def test_a_bad_mirror_name_is_refused_by_the_rules_and_starts_nothing(
    client, admin_user, instances
):
    client.force_login(admin_user)
    draft = started_draft(client)
    post_step(client, draft, "instances", primary=instances["A"].pk, backup="")
    response = post_step(client, draft, "mirror", name="no spaces!", private="10.0.0.1:1973")
    assert response.status_code == 200
    assert "mirror name" in response.content.decode().lower()
    assert not Job.objects.exists()


def test_a_step_waits_while_the_jobs_before_it_run(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    post_step(client, draft, "instances", primary=instances["A"].pk, tls="on")
    response = post_step(
        client,
        draft,
        "certificates",
        ca="/etc/ca.pem",
        **{f"cert_{instances['A'].pk}": "/etc/a.pem", f"key_{instances['A'].pk}": "/etc/a.key"},
    )
    assert response.status_code == 302
    tls_job = Job.objects.get(kind="set_instance_tls")  # no worker here: it stays queued
    response = post_step(client, draft, "mirror", name="shop", private="10.0.0.1:1973")
    assert response.status_code == 200
    assert f"Wait for job {tls_job.pk} (set_instance_tls) to finish" in response.content.decode()
    assert not Job.objects.filter(kind="create_mirror").exists()

    Job.objects.filter(pk=tls_job.pk).update(state=Job.FAILED, error="no such file")
    response = post_step(client, draft, "mirror", name="shop", private="10.0.0.1:1973")
    assert "failed: no such file" in response.content.decode()

    Job.objects.filter(pk=tls_job.pk).update(state=Job.SUCCEEDED, error="")
    response = post_step(client, draft, "mirror", name="shop", private="10.0.0.1:1973")
    assert response.status_code == 302
    job = Job.objects.get(kind="create_mirror")
    assert job.params["name"] == "SHOP" and job.params["private"] == "10.0.0.1:1973"


def test_a_draft_keeps_its_answers_and_lists_where_it_stopped(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    post_step(client, draft, "instances", primary=instances["A"].pk, backup=instances["B"].pk)
    draft.refresh_from_db()
    assert draft.step == "mirror"
    client.logout()
    client.force_login(admin_user)
    listing = client.get("/new-mirror/").content.decode()
    assert step_url(draft, "mirror") in listing
    page = client.get(step_url(draft, "instances")).content.decode()
    assert f'<option value="{instances["B"].pk}" selected>' in page


# --- Hostile input -----------------------------------------------------------------------------
def test_an_anonymous_visitor_is_sent_to_log_in_and_changes_nothing(client):
    assert client.get("/new-mirror/")["Location"].startswith("/login/")
    response = client.post("/new-mirror/1/add-host/", {"name": "x", "address": "10.0.0.9"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Draft.objects.exists()


def test_a_malformed_host_is_refused_with_the_reason_and_nothing_registered(client, admin_user):
    client.force_login(admin_user)
    draft = started_draft(client)
    url = f"/new-mirror/{draft.pk}/add-host/"
    response = client.post(url, {"name": "h" * 5000, "address": "10.0.0.9", "agent_port": "abc"})
    page = client.get(response["Location"]).content.decode()
    assert "at most 64 characters" in page
    assert not Job.objects.exists()
    from members.models import Host

    assert not Host.objects.exists()


def test_huge_certificate_paths_are_refused_and_start_nothing(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    a = instances["A"].pk
    post_step(client, draft, "instances", primary=a, tls="on")
    huge = "/" + "x" * 5000
    response = post_step(
        client, draft, "certificates", ca=huge, **{f"cert_{a}": huge, f"key_{a}": huge}
    )
    assert response.status_code == 200
    assert "at most 4096 characters" in response.content.decode()
    assert not Job.objects.exists()


def test_too_many_databases_at_once_are_refused(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    post_step(client, draft, "instances", primary=instances["A"].pk)
    names = ", ".join(f"DB{i}" for i in range(51))
    response = post_step(client, draft, "databases", new=names, existing="", how="download")
    assert "At most 50 databases in one step." in response.content.decode()
    assert not Job.objects.exists()


def test_a_step_posted_before_the_mirror_exists_is_refused_not_crashed(
    client, admin_user, instances
):
    client.force_login(admin_user)
    draft = started_draft(client)
    post_step(client, draft, "instances", primary=instances["A"].pk, backup=instances["B"].pk)
    response = post_step(client, draft, "databases", new="ORDERS", existing="", how="download")
    assert response.status_code == 200
    assert "Create the mirror first" in response.content.decode()
    assert not Job.objects.exists()


def test_a_tampered_wizard_form_is_a_bad_request(client, admin_user, instances):
    client.force_login(admin_user)
    draft = started_draft(client)
    response = client.post(step_url(draft, "instances"), {"instances-primary": "1"})
    assert response.status_code == 400
