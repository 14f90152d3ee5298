"""What the page buttons do in the database: decisions, host checks, login and logout."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from members.models import Member, PendingDNUpdate
from tasks.models import Job

pytestmark = pytest.mark.django_db


def decide(client, world, name, pk, **data):
    return client.post(reverse(name, args=[world.mirror.name, pk]), data, follow=True)


def test_viewer_and_operator_cannot_authorize_a_member(client_as, world):
    for identity in ("viewer", "operator"):
        response = client_as(identity).post(
            reverse("member-authorize", args=[world.mirror.name, world.pending.pk])
        )
        assert response.status_code == 403
    world.pending.refresh_from_db()
    assert world.pending.authorization == Member.PENDING
    assert not AuditEvent.objects.filter(action="member.authorize").exists()


def started(response, admin_user, kind: str) -> Job:
    """The decision's job: queued for the members, shown on its page, audited as asked."""
    job = Job.objects.get(kind=kind)
    assert response.redirect_chain[-1][0] == reverse("job-detail", args=[job.pk])
    assert job.state == Job.QUEUED and job.requested_by == admin_user
    assert AuditEvent.objects.filter(action="job.start", actor=admin_user, object_id=str(job.pk))
    return job


def test_admin_authorizing_a_pending_member_starts_the_job_that_asks_the_primary(
    client_as, world, admin_user
):
    response = decide(client_as("admin"), world, "member-authorize", world.pending.pk)

    job = started(response, admin_user, "authorize_member")
    assert job.member == world.pending and job.mirror == world.mirror
    # the portal records what the members answer, and they have not answered yet
    world.pending.refresh_from_db()
    assert world.pending.authorization == Member.PENDING


def test_admin_rejecting_a_pending_member_starts_the_job_and_removes_nothing_yet(
    client_as, world, admin_user
):
    response = decide(client_as("admin"), world, "member-reject", world.pending.pk, confirm="ALPHA")

    assert started(response, admin_user, "reject_member").member == world.pending
    assert Member.objects.filter(pk=world.pending.pk).exists()


def test_a_second_decision_while_the_first_runs_is_refused(client_as, world, admin_user):
    decide(client_as("admin"), world, "member-authorize", world.pending.pk)

    response = decide(client_as("admin"), world, "member-reject", world.pending.pk, confirm="ALPHA")

    assert "already under way" in response.text
    assert not Job.objects.filter(kind="reject_member").exists()


def test_authorizing_an_authorized_member_shows_the_reason_and_changes_nothing(client_as, world):
    before = AuditEvent.objects.count()
    response = decide(client_as("admin"), world, "member-authorize", world.member.pk)
    assert response.status_code == 200
    assert "not waiting for authorization" in response.text
    assert AuditEvent.objects.count() == before


def test_a_member_is_only_reachable_under_its_own_mirror(client_as, world):
    from tests import factories

    other = factories.mirror(name="BETA")
    response = client_as("admin").post(
        reverse("member-authorize", args=[other.name, world.pending.pk])
    )
    assert response.status_code == 404
    world.pending.refresh_from_db()
    assert world.pending.authorization == Member.PENDING


def test_admin_deciding_a_dn_update_starts_the_job_and_keeps_the_dn_until_the_members_say(
    client_as, world, admin_user
):
    old_dn = world.member.x509_dn
    response = decide(client_as("admin"), world, "dn-update-authorize", world.dn_update.pk)

    job = started(response, admin_user, "authorize_dn_update")
    assert job.params == {"update": world.dn_update.pk}
    world.dn_update.refresh_from_db()
    world.member.refresh_from_db()
    assert world.dn_update.state == PendingDNUpdate.PENDING
    assert world.member.x509_dn == old_dn


def test_admin_rejecting_a_dn_update_starts_its_job(client_as, world, admin_user):
    response = decide(client_as("admin"), world, "dn-update-reject", world.dn_update.pk)

    assert started(response, admin_user, "reject_dn_update").member == world.member


def test_operator_checks_a_host_which_queues_a_job_and_opens_its_page(client_as, world, operator):
    response = client_as("operator").post(reverse("host-check", args=[world.host.pk]))
    job = Job.objects.filter(requested_by=operator).get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.kind, job.target_type, job.target_id) == ("check_host", "host", str(world.host.pk))
    assert AuditEvent.objects.filter(action="job.start", actor=operator).count() == 1


def test_viewer_cannot_start_a_host_check(client_as, world, viewer):
    response = client_as("viewer").post(reverse("host-check", args=[world.host.pk]))
    assert response.status_code == 403
    assert not Job.objects.filter(requested_by=viewer).exists()


def test_actions_need_a_csrf_token(people, world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["admin"])
    response = client.post(reverse("member-authorize", args=[world.mirror.name, world.pending.pk]))
    assert response.status_code == 403
    world.pending.refresh_from_db()
    assert world.pending.authorization == Member.PENDING


def test_login_form_signs_in_and_lands_on_the_mirror_list(viewer):
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("login"))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": viewer.username, "password": "correct horse battery"},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("mirror-list")
    assert client.get(reverse("mirror-list")).status_code == 200


def test_login_with_a_wrong_password_explains_and_stays_signed_out(viewer):
    client = Client()
    response = client.post(reverse("login"), {"username": viewer.username, "password": "nope"})
    assert response.status_code == 200
    assert "enter a correct username and password" in response.text
    assert client.get(reverse("mirror-list")).status_code == 302


def test_login_returns_to_the_page_asked_for(viewer, world):
    wanted = reverse("mirror-detail", args=[world.mirror.name])
    response = Client().post(
        f"{reverse('login')}?next={wanted}",
        {"username": viewer.username, "password": "correct horse battery", "next": wanted},
    )
    assert response["Location"] == wanted


def test_logout_is_a_post_and_ends_the_session(client_as):
    client = client_as("viewer")
    assert client.get(reverse("logout")).status_code == 405
    assert client.get(reverse("mirror-list")).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("mirror-list")).status_code == 302


def test_an_inactive_user_is_treated_as_signed_out(client_as, viewer):
    client = client_as("viewer")
    User.objects.filter(pk=viewer.pk).update(is_active=False)
    response = client.get(reverse("mirror-list"))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
