"""Promoting a DR async and demoting the backup from the pages (members/failover_views.py): admin
buttons on the member rows and the Mirror Monitor, each opening a page that says which member
becomes the backup and which becomes DR before the mirror's name is typed."""

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Member
from tasks.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup(world):
    """NODEB, authorized, the backup of NODEA (which says Primary)."""
    now = timezone.now()
    Member.objects.filter(pk=world.pending.pk).update(
        authorization=Member.AUTHORIZED, status="Backup", observed_at=now
    )
    Member.objects.filter(pk=world.member.pk).update(status="Primary", observed_at=now)
    world.pending.refresh_from_db()
    return world.pending


@pytest.fixture
def dr(world):
    """FARAWAY, a connected DR async with a mirror private address."""
    return factories.member(
        world.mirror,
        name="FARAWAY",
        member_type="dr",
        mirror_private_address="10.0.0.9",
        authorization=Member.AUTHORIZED,
        status="Connected",
        observed_at=timezone.now(),
    )


def url(name, world, *args):
    return reverse(name, args=[world.mirror.name, *args])


def test_an_admin_may_promote_the_dr_async_and_demote_the_backup_only(client_as, world, backup, dr):
    html = client_as("admin").get(url("mirror-detail", world)).text

    assert url("member-promote", world, dr.pk) in html
    assert url("member-demote", world, backup.pk) in html
    assert url("member-promote", world, backup.pk) not in html
    assert url("member-demote", world, world.member.pk) not in html  # the primary
    assert url("member-demote", world, dr.pk) not in html


def test_operators_see_no_promotion_or_demotion(client_as, world, backup, dr):
    html = client_as("operator").get(url("mirror-detail", world)).text

    assert url("member-promote", world, dr.pk) not in html
    assert url("member-demote", world, backup.pk) not in html
    assert client_as("operator").get(url("member-promote", world, dr.pk)).status_code == 403


def test_the_mirror_monitor_offers_them_to_admins(client_as, world, backup, dr):
    html = client_as("admin").get(reverse("mirror-monitor", args=["ALPHA"])).text

    assert url("member-promote", world, dr.pk) in html
    assert url("member-demote", world, backup.pk) in html


def test_the_promotion_page_says_who_becomes_the_backup_and_who_becomes_dr(
    client_as, world, backup, dr
):
    response = client_as("admin").get(url("member-promote", world, dr.pk))

    assert response.context["changes"] == {"backup": "FARAWAY", "to_dr": ["NODEB"]}
    html = response.text
    assert '<dd data-field="backup">FARAWAY</dd>' in html
    assert '<dd data-field="to-dr">NODEB</dd>' in html
    assert '<dd data-field="primary">NODEA</dd>' in html
    assert 'name="confirm"' in html


def test_promoting_needs_the_mirrors_name_then_starts_the_job(client_as, world, backup, dr):
    page = url("member-promote", world, dr.pk)
    admin = client_as("admin")

    wrong = admin.post(page, {"confirm": "ALPH"})
    assert wrong.status_code == 200 and "Type the mirror&#x27;s name" in wrong.text
    assert not Job.objects.filter(kind="promote_member").exists()
    right = admin.post(page, {"confirm": "alpha"})

    job = Job.objects.get(kind="promote_member")
    assert right["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.member, job.mirror) == (dr, world.mirror)


def test_promoting_the_backup_is_refused_on_the_page(client_as, world, backup):
    response = client_as("admin").post(
        url("member-promote", world, backup.pk), {"confirm": "alpha"}
    )

    assert response.status_code == 200
    assert "only a DR async is promoted" in response.text
    assert not Job.objects.filter(kind="promote_member").exists()


def test_the_demotion_page_says_the_backup_becomes_dr_and_starts_the_job(client_as, world, backup):
    page = url("member-demote", world, backup.pk)
    admin = client_as("admin")

    html = admin.get(page).text
    right = admin.post(page, {"confirm": "ALPHA"})

    assert '<dd data-field="to-dr">NODEB</dd>' in html
    assert "none: NODEA is the only failover member" in html
    job = Job.objects.get(kind="demote_member")
    assert right["Location"] == reverse("job-detail", args=[job.pk]) and job.member == backup


def test_the_demotion_page_says_whether_the_backup_is_active_and_where_its_journal_ends(
    client_as, world, backup
):
    from monitor.models import MemberState

    page = url("member-demote", world, backup.pk)
    before = client_as("admin").get(page).text
    now = timezone.now()
    MemberState.objects.create(
        member=backup,
        status="Backup",
        journal_transfer="Active",
        record={"journal_end": [3, 4096]},
        seen_at=now,
        changed_at=now,
    )

    html = client_as("admin").get(page).text

    assert '<dd data-field="journal_transfer">Not reported</dd>' in before
    assert "Active: the Active backup, which the primary waits for" in html
    assert "<code>3:4096</code>, as it reported at" in html


def test_demoting_the_primary_is_refused_on_the_page(client_as, world, backup):
    response = client_as("admin").post(
        url("member-demote", world, world.member.pk), {"confirm": "alpha"}
    )

    assert "NODEA reports itself as the primary" in response.text
    assert not Job.objects.filter(kind="demote_member").exists()
