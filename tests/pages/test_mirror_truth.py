"""The mirror page shows what the members answered: each member's status as it reported it, the
settings that drifted on the primary, the mirror's recent jobs, and (for operators) a button to
read the members again."""

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Member
from tasks.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


def page(client, world):
    return client.get(reverse("mirror-detail", args=[world.mirror.name]))


def test_each_member_shows_the_status_it_reported_or_that_it_was_not_read(client_as, world):
    Member.objects.filter(pk=world.member.pk).update(status="Primary", observed_at=timezone.now())

    text = page(client_as("viewer"), world).text

    assert '<span title="as the member reported it' in text and ">Primary</span>" in text
    assert "Not read yet" in text  # the pending member has not been read


def test_a_drifted_setting_shows_both_values(client_as, world):
    factories.drift(world.mirror, desired="8000", observed="9000")

    text = page(client_as("viewer"), world).text

    assert "Settings that drifted on the primary" in text
    assert "<td>8000</td><td>9000</td>" in text


def test_without_drift_there_is_no_drift_section(client_as, world):
    assert "drifted" not in page(client_as("viewer"), world).text


def test_the_mirrors_recent_jobs_are_listed_with_links(client_as, world, operator):
    client_as("operator").post(reverse("mirror-refresh", args=[world.mirror.name]))
    job = Job.objects.get(kind="refresh_mirror")

    text = page(client_as("viewer"), world).text

    assert reverse("job-detail", args=[job.pk]) in text and f"refresh_mirror #{job.pk}" in text


def test_an_operator_refreshes_a_mirror_and_lands_on_the_job(client_as, world, operator):
    response = client_as("operator").post(reverse("mirror-refresh", args=[world.mirror.name]))

    job = Job.objects.get(kind="refresh_mirror")
    assert response.status_code == 302
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.mirror, job.requested_by) == (world.mirror, operator)


def test_a_viewer_gets_no_refresh_button_and_cannot_post_one(client_as, world):
    assert "Refresh from the members" not in page(client_as("viewer"), world).text
    assert "Refresh from the members" in page(client_as("operator"), world).text

    response = client_as("viewer").post(reverse("mirror-refresh", args=[world.mirror.name]))

    assert response.status_code == 403
    assert not Job.objects.filter(kind="refresh_mirror").exists()
