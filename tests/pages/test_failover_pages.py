"""The failover buttons on the pages (members/views.py, member_views.py, failover_views.py): a
graceful stop and no failover on the member rows and the Mirror Monitor, forcing a primary behind
a page that shows what the member said is at stake before the mirror's name is typed."""

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Member
from tasks.models import Job
from tasks.services import finish_job, start_job
from tests import factories

pytestmark = pytest.mark.django_db

STAKE = {
    "member": "NODEB",
    "role": "backup",
    "was_active_backup": False,
    "journal_end": [3, 4096],
    "last_primary": "NODEA",
    "term": 2,
    "confirmed": False,
    "warning": "anything the last primary committed after this member's journal end is lost",
}


@pytest.fixture
def backup(world):
    """NODEB, authorized, the backup of NODEA (which says Primary)."""
    Member.objects.filter(pk=world.pending.pk).update(
        authorization=Member.AUTHORIZED, status="Backup", observed_at=timezone.now()
    )
    Member.objects.filter(pk=world.member.pk).update(status="Primary", observed_at=timezone.now())
    world.pending.refresh_from_db()
    return world.pending


def url(name, world, *args):
    return reverse(name, args=[world.mirror.name, *args])


def new_job(kind) -> Job:
    return Job.objects.get(kind=kind)


def answered_preview(admin_user, member, result=STAKE) -> Job:
    job = start_job(
        admin_user, "preview_force_primary", member, mirror=member.mirror, member=member
    )
    finish_job(job, result=result)
    return job


def test_the_member_rows_offer_a_graceful_stop_and_no_failover(client_as, world, backup):
    html = client_as("operator").get(url("mirror-detail", world)).text

    for member in (world.member, backup):
        assert url("member-switch", world, member.pk, "stop-instance") in html
        assert url("member-switch", world, member.pk, "set-no-failover") in html
    assert url("member-force-primary-preview", world, backup.pk) not in html  # admins only


def test_an_admin_may_force_the_backup_but_not_the_member_that_says_primary(
    client_as, world, backup
):
    html = client_as("admin").get(url("mirror-detail", world)).text

    assert url("member-force-primary-preview", world, backup.pk) in html
    assert url("member-force-primary-preview", world, world.member.pk) not in html


def test_a_member_that_answered_no_failover_offers_to_clear_it(client_as, world, backup):
    Member.objects.filter(pk=backup.pk).update(no_failover=True)

    html = client_as("operator").get(url("mirror-detail", world)).text

    assert url("member-switch", world, backup.pk, "clear-no-failover") in html
    assert url("member-switch", world, backup.pk, "set-no-failover") not in html
    assert "No failover" in html


def test_the_mirror_monitor_has_the_same_buttons_for_operators_only(client_as, world, backup):
    operator = client_as("operator").get(reverse("mirror-monitor", args=["ALPHA"])).text
    viewer = client_as("viewer").get(reverse("mirror-monitor", args=["ALPHA"])).text

    assert url("member-switch", world, world.member.pk, "stop-instance") in operator
    assert "Failover operations" in operator and "Failover operations" not in viewer
    assert url("member-switch", world, world.member.pk, "stop-instance") not in viewer


def test_a_graceful_stop_from_the_monitor_starts_its_job(client_as, world, backup):
    response = client_as("operator").post(
        url("member-switch", world, world.member.pk, "stop-instance"), {"back": "monitor"}
    )

    job = new_job("stop_instance")
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.member, job.params) == (world.member, {})


def test_no_failover_on_an_async_is_refused_back_on_the_monitor(client_as, world):
    dr = factories.member(world.mirror, name="FARAWAY", member_type="dr")

    response = client_as("operator").post(
        url("member-switch", world, dr.pk, "set-no-failover"), {"back": "monitor"}
    )

    assert response["Location"] == reverse("mirror-monitor", args=["ALPHA"])
    assert not Job.objects.filter(kind="set_no_failover").exists()


def test_force_primary_first_asks_the_member_what_is_at_stake(client_as, world, backup):
    Member.objects.filter(pk=world.member.pk).update(status="Down")

    response = client_as("admin").post(url("member-force-primary-preview", world, backup.pk))

    preview = new_job("preview_force_primary")
    page = url("member-force-primary", world, backup.pk)
    assert response["Location"] == f"{page}?preview={preview.pk}"
    waiting = client_as("admin").get(response["Location"])
    assert 'http-equiv="refresh"' in waiting.text and "confirm" not in waiting.context["form"].data


def test_the_confirmation_page_shows_the_data_at_risk_before_the_mirrors_name(
    client_as, world, backup, admin_user
):
    Member.objects.filter(pk=world.member.pk).update(status="Down")
    preview = answered_preview(admin_user, backup)

    html = (
        client_as("admin")
        .get(url("member-force-primary", world, backup.pk), {"preview": preview.pk})
        .text
    )

    assert "<strong>No</strong>: the primary may have committed" in html
    assert "<code>3:4096</code>" in html and "NODEA (term 2)" in html
    assert 'name="confirm"' in html


def test_forcing_needs_the_mirrors_name_then_starts_the_job(client_as, world, backup, admin_user):
    Member.objects.filter(pk=world.member.pk).update(status="Down")
    preview = answered_preview(admin_user, backup)
    page = url("member-force-primary", world, backup.pk)
    admin = client_as("admin")

    wrong = admin.post(page, {"preview": preview.pk, "confirm": "ALPH"})
    right = admin.post(page, {"preview": preview.pk, "confirm": "alpha"})

    assert wrong.status_code == 200 and "Type the mirror&#x27;s name" in wrong.text
    job = new_job("force_primary")
    assert right["Location"] == reverse("job-detail", args=[job.pk]) and job.member == backup


def test_forcing_is_refused_while_another_member_says_primary(client_as, world, backup, admin_user):
    preview = answered_preview(admin_user, backup)

    response = client_as("admin").post(
        url("member-force-primary", world, backup.pk), {"preview": preview.pk, "confirm": "alpha"}
    )

    assert "NODEA reports itself as the primary" in response.text
    assert not Job.objects.filter(kind="force_primary").exists()


REBUILD_STAKE = {
    "member": "NODEB",
    "journal_end": [2, 512],
    "databases": ["ORDERS", "STOCK"],
    "refused_because": "its data is inconsistent with the mirror; rebuild it (guide §5.7)",
    "kept_in": "rebuilt-<time> in the member's data directory",
    "confirmed": False,
}


def test_rebuild_is_offered_to_admins_on_members_that_run_and_are_not_the_primary(
    client_as, world, backup
):
    admin = client_as("admin").get(url("mirror-detail", world)).text
    monitor = client_as("admin").get(reverse("mirror-monitor", args=["ALPHA"])).text
    operator = client_as("operator").get(url("mirror-detail", world)).text

    for html in (admin, monitor):
        assert url("member-rebuild-preview", world, backup.pk) in html
        assert url("member-rebuild-preview", world, world.member.pk) not in html  # Primary
    assert url("member-rebuild-preview", world, backup.pk) not in operator


def test_rebuild_asks_the_member_first_then_shows_what_it_sets_aside(
    client_as, world, backup, admin_user
):
    admin = client_as("admin")
    response = admin.post(url("member-rebuild-preview", world, backup.pk))
    preview = new_job("preview_rebuild_member")
    assert response["Location"] == f"{url('member-rebuild', world, backup.pk)}?preview={preview.pk}"
    finish_job(preview, result=REBUILD_STAKE)

    html = admin.get(response["Location"]).text

    assert "inconsistent with the mirror" in html
    assert "<code>2:512</code>" in html and "ORDERS, STOCK" in html
    assert ">Rebuild NODEB</button>" in html and 'name="confirm"' in html


def test_rebuilding_needs_the_mirrors_name_then_starts_the_job(
    client_as, world, backup, admin_user
):
    preview = start_job(
        admin_user, "preview_rebuild_member", backup, mirror=backup.mirror, member=backup
    )
    finish_job(preview, result=REBUILD_STAKE)
    page = url("member-rebuild", world, backup.pk)
    admin = client_as("admin")

    wrong = admin.post(page, {"preview": preview.pk, "confirm": "ALPH"})
    assert not Job.objects.filter(kind="rebuild_member").exists()
    right = admin.post(page, {"preview": preview.pk, "confirm": "alpha"})

    assert wrong.status_code == 200 and "Type the mirror&#x27;s name" in wrong.text
    job = new_job("rebuild_member")
    assert right["Location"] == reverse("job-detail", args=[job.pk]) and job.member == backup
