"""Disaster recovery from the pages (members/failover_views.py, guide §5.5, §6.3): with no
primary running, an admin promotes a DR async to primary — a page to choose the partner (a
failover member, or none), then a page that shows what the member said is at stake before the
mirror's name is typed — and clears ValidatedMember on a stopped former failover member, from
the member rows and the Mirror Monitor alike."""

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Member
from tasks.models import Job
from tasks.services import finish_job, start_job
from tests import factories

pytestmark = pytest.mark.django_db

STAKE = {
    "member": "FARAWAY",
    "partner": None,
    "journal_end": [7, 8192],
    "last_primary": "NODEA",
    "term": 3,
    "confirmed": False,
    "warning": "whatever the failover members committed after this member's journal end is "
    "lost; clear ValidatedMember on each of them before it starts again",
}


@pytest.fixture
def lost(world):
    """Both failover members down: NODEA was the primary, NODEB its backup."""
    now = timezone.now()
    Member.objects.filter(pk=world.pending.pk).update(
        authorization=Member.AUTHORIZED, status="Down", observed_at=now
    )
    Member.objects.filter(pk=world.member.pk).update(status="Down", observed_at=now)
    world.pending.refresh_from_db()
    world.member.refresh_from_db()
    return world


@pytest.fixture
def dr(world):
    """FARAWAY, an authorized DR async that no primary serves now."""
    return factories.member(
        world.mirror,
        name="FARAWAY",
        member_type="dr",
        authorization=Member.AUTHORIZED,
        status="Waiting",
        observed_at=timezone.now(),
    )


def url(name, world, *args):
    return reverse(name, args=[world.mirror.name, *args])


def answered_preview(admin_user, member, partner=None, result=STAKE) -> Job:
    job = start_job(
        admin_user,
        "preview_promote_to_primary",
        member,
        params={"partner": partner},
        mirror=member.mirror,
        member=member,
    )
    finish_job(job, result=result)
    return job


def test_an_admin_may_promote_the_dr_async_to_primary_and_clear_the_stopped_members(
    client_as, lost, dr
):
    html = client_as("admin").get(url("mirror-detail", lost)).text

    assert url("member-promote-to-primary-preview", lost, dr.pk) in html
    for member in (lost.member, lost.pending):
        assert url("member-clear-validated-member", lost, member.pk) in html
        assert url("member-promote-to-primary-preview", lost, member.pk) not in html
    assert url("member-clear-validated-member", lost, dr.pk) not in html  # it runs


def test_no_promotion_to_primary_is_offered_while_a_member_says_it_is_the_primary(
    client_as, lost, dr
):
    Member.objects.filter(pk=lost.member.pk).update(status="Primary")

    html = client_as("admin").get(url("mirror-detail", lost)).text

    assert url("member-promote-to-primary-preview", lost, dr.pk) not in html
    assert url("member-clear-validated-member", lost, lost.member.pk) not in html
    assert url("member-clear-validated-member", lost, lost.pending.pk) in html  # still Down


def test_operators_see_neither_and_cannot_open_the_pages(client_as, lost, dr):
    operator = client_as("operator")
    html = operator.get(url("mirror-detail", lost)).text

    assert url("member-promote-to-primary-preview", lost, dr.pk) not in html
    assert url("member-clear-validated-member", lost, lost.member.pk) not in html
    assert operator.get(url("member-promote-to-primary-preview", lost, dr.pk)).status_code == 403
    cleared = operator.post(url("member-clear-validated-member", lost, lost.member.pk))
    assert cleared.status_code == 403
    assert not Job.objects.exclude(kind="check_host").exists()


def test_the_mirror_monitor_offers_them_to_admins(client_as, lost, dr):
    html = client_as("admin").get(reverse("mirror-monitor", args=["ALPHA"])).text

    assert url("member-promote-to-primary-preview", lost, dr.pk) in html
    assert url("member-clear-validated-member", lost, lost.member.pk) in html


def test_the_partner_page_offers_the_failover_members_or_none(client_as, lost, dr):
    response = client_as("admin").get(url("member-promote-to-primary-preview", lost, dr.pk))

    choices = response.context["form"].fields["partner"].choices
    assert [value for value, _ in choices] == ["", "NODEA", "NODEB"]
    assert "NODEA (Down, as it last reported)" in response.text
    assert "clear" in response.text and "ValidatedMember" in response.text


def test_choosing_a_partner_asks_the_dr_async_what_is_at_stake(client_as, lost, dr):
    response = client_as("admin").post(
        url("member-promote-to-primary-preview", lost, dr.pk), {"partner": "NODEA"}
    )

    preview = Job.objects.get(kind="preview_promote_to_primary")
    assert (preview.member, preview.params) == (dr, {"partner": "NODEA"})
    page = url("member-promote-to-primary", lost, dr.pk)
    assert response["Location"] == f"{page}?preview={preview.pk}"
    waiting = client_as("admin").get(response["Location"])
    assert 'http-equiv="refresh"' in waiting.text and 'name="confirm"' not in waiting.text


def test_no_partner_is_the_default_and_a_primary_running_refuses_the_preview(client_as, lost, dr):
    Member.objects.filter(pk=lost.pending.pk).update(status="Primary")

    response = client_as("admin").post(url("member-promote-to-primary-preview", lost, dr.pk), {})

    assert response.status_code == 200
    assert "NODEB reports itself as the primary" in response.text
    assert not Job.objects.filter(kind="preview_promote_to_primary").exists()


def test_the_confirmation_page_shows_the_data_at_risk_before_the_mirrors_name(
    client_as, lost, dr, admin_user
):
    preview = answered_preview(admin_user, dr)

    html = (
        client_as("admin")
        .get(url("member-promote-to-primary", lost, dr.pk), {"preview": preview.pk})
        .text
    )

    assert '<dd data-field="journal_end"><code>7:8192</code></dd>' in html
    assert "NODEA (term 3)" in html
    assert "<strong>None</strong>: what the failover members committed" in html
    assert "clear ValidatedMember on each of them" in html  # the member's own warning
    assert 'name="confirm"' in html


def test_promoting_needs_the_mirrors_name_then_starts_the_job_with_the_previewed_partner(
    client_as, lost, dr, admin_user
):
    preview = answered_preview(admin_user, dr, partner="NODEA", result=STAKE | {"partner": "NODEA"})
    page = url("member-promote-to-primary", lost, dr.pk)
    admin = client_as("admin")

    wrong = admin.post(page, {"preview": preview.pk, "confirm": "ALPH", "partner": "NODEB"})
    assert wrong.status_code == 200 and "Type the mirror&#x27;s name" in wrong.text
    assert "NODEA: its agent must confirm it down" in wrong.text
    assert not Job.objects.filter(kind="promote_to_primary").exists()
    right = admin.post(page, {"preview": preview.pk, "confirm": "alpha", "partner": "NODEB"})

    job = Job.objects.get(kind="promote_to_primary")
    assert right["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.member, job.params) == (dr, {"partner": "NODEA"})  # what the member was asked


def test_the_confirmation_page_needs_a_preview_of_this_member(client_as, lost, dr, admin_user):
    forcing = start_job(admin_user, "preview_force_primary", lost.member, member=lost.member)

    for preview in ("", "x", str(forcing.pk)):
        response = client_as("admin").get(
            url("member-promote-to-primary", lost, dr.pk), {"preview": preview}
        )

        assert response["Location"] == url("mirror-detail", lost)


def test_clearing_validated_member_from_the_monitor_starts_its_job(client_as, lost):
    response = client_as("admin").post(
        url("member-clear-validated-member", lost, lost.member.pk), {"back": "monitor"}
    )

    job = Job.objects.get(kind="clear_validated_member")
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.member, job.params) == (lost.member, {})


def test_clearing_validated_member_on_a_running_member_is_refused_back_on_the_monitor(
    client_as, lost, dr
):
    response = client_as("admin").post(
        url("member-clear-validated-member", lost, dr.pk), {"back": "monitor"}, follow=True
    )

    assert response.redirect_chain[-1][0] == reverse("mirror-monitor", args=["ALPHA"])
    assert "FARAWAY was last seen Waiting" in response.text
    assert not Job.objects.filter(kind="clear_validated_member").exists()
