"""What the pages show: counts, members, copy statuses, who sees which buttons, job progress,
the audit trail with its filters and diffs, and pagination."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import audit
from accounts.models import AuditEvent
from accounts.services import create_token
from members import services
from tasks.models import Job
from tasks.services import finish_job, report, start_job
from tests import factories

pytestmark = pytest.mark.django_db


def mirror_row(response, name):
    return next(m for m in response.context["page"] if m.name == name)


def test_mirror_list_counts_members_by_type_databases_and_pending(client_as, world):
    factories.member(world.mirror, name="FARAWAY", member_type="dr", authorization="authorized")
    factories.member(world.mirror, name="REPORTS", member_type="ro_reporting")
    factories.database(world.mirror, name="HR")
    factories.mirror(name="EMPTY", requires_tls=False)

    response = client_as("viewer").get(reverse("mirror-list"))
    alpha = mirror_row(response, "ALPHA")
    assert (alpha.failover_count, alpha.dr_count, alpha.ro_count, alpha.rw_count) == (2, 1, 1, 0)
    assert alpha.database_count == 2
    assert alpha.pending_count == 2  # NODEB and REPORTS wait; FARAWAY was authorized
    empty = mirror_row(response, "EMPTY")
    assert (empty.failover_count, empty.database_count, empty.pending_count) == (0, 0, 0)
    assert f'href="{reverse("mirror-detail", args=["ALPHA"])}"' in response.text


def add_more_of_everything(admin, world, n, start):
    for i in range(start, start + n):
        mirror = factories.mirror(name=f"MORE{i}")
        member = factories.member(mirror)
        factories.member(mirror)
        database = factories.database(mirror)
        factories.copy(database, member)
        factories.member(world.mirror, name=f"EXTRA{i}", member_type="ro_reporting")
        start_job(admin, "check_host", member.host)
        create_token(admin, name=f"token {i}")
    factories.copy(factories.database(world.mirror), world.member)


@pytest.mark.parametrize(
    "url",
    ["/", "/mirrors/ALPHA/", "/hosts/", "/jobs/", "/audit/", "/tokens/"],
)
def test_pages_run_the_same_number_of_queries_however_much_they_show(
    client_as, world, admin_user, url
):
    client = client_as("admin")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    add_more_of_everything(admin_user, world, 1, start=0)
    few = queries()
    add_more_of_everything(admin_user, world, 5, start=1)
    assert queries() == few


def test_mirror_detail_lists_members_settings_and_each_copys_status(client_as, world):
    response = client_as("viewer").get(reverse("mirror-detail", args=["alpha"]))  # any case
    html = response.text
    assert response.status_code == 200
    for text in ("NODEA", "NODEB", "Failover", world.host.name, "SALES", "Normal", "8000 ms"):
        assert text in html
    # SALES has a copy on NODEA only: the NODEB cell says so with a dash.
    database, statuses = response.context["database_rows"][0]
    assert database.name == "SALES"
    assert statuses == ["Normal", None]
    assert "CN=nodea-renewed,O=Example" in html  # the pending DN update


@pytest.mark.parametrize(
    "identity,sees_buttons", [("viewer", False), ("operator", False), ("admin", True)]
)
def test_only_admins_see_authorize_and_reject_buttons(client_as, world, identity, sees_buttons):
    html = client_as(identity).get(reverse("mirror-detail", args=["ALPHA"])).text
    authorize = reverse("member-authorize", args=["ALPHA", world.pending.pk])
    dn_authorize = reverse("dn-update-authorize", args=["ALPHA", world.dn_update.pk])
    assert (authorize in html) is sees_buttons
    assert (dn_authorize in html) is sees_buttons
    assert "Members waiting for authorization" in html


def test_unknown_mirror_is_a_404_page(client_as, world):
    response = client_as("viewer").get(reverse("mirror-detail", args=["NOSUCH"]))
    assert response.status_code == 404
    assert "Not found" in response.text


@pytest.mark.parametrize(
    "identity,sees_button", [("viewer", False), ("operator", True), ("admin", True)]
)
def test_host_list_shows_reachability_and_a_check_button_for_operators(
    client_as, world, identity, sees_button
):
    services.record_host_check(world.host, reachable=False, rtt_ms=None, error="connection refused")
    html = client_as(identity).get(reverse("host-list")).text
    assert "Unreachable" in html and "connection refused" in html
    assert (reverse("host-check", args=[world.host.pk]) in html) is sees_button


def test_job_page_refreshes_until_the_job_is_final(client_as, world):
    client = client_as("viewer")
    url = reverse("job-detail", args=[world.job.pk])
    report(world.job, "Connecting to the agent", progress=40)
    html = client.get(url).text
    assert 'http-equiv="refresh"' in html
    assert '<progress id="job-progress" max="100" value="40">' in html
    assert "Connecting to the agent" in html

    finish_job(world.job, error="Host is unreachable: connection refused")
    html = client.get(url).text
    assert 'http-equiv="refresh"' not in html
    assert "Host is unreachable: connection refused" in html
    assert "Failed" in html


def test_job_list_pages_through_many_jobs(client_as, world, admin_user):
    for _ in range(55):
        start_job(admin_user, "check_host", world.host)
    client = client_as("viewer")
    first = client.get(reverse("job-list"))
    assert len(first.context["page"].object_list) == 50
    assert 'rel="next"' in first.text
    second = client.get(reverse("job-list"), {"page": 2})
    assert len(second.context["page"].object_list) == Job.objects.count() - 50
    assert client.get(reverse("job-list"), {"page": "nonsense"}).status_code == 200


def events(response):
    return list(response.context["page"])


def recorded_by_a_refresh(world):
    """The events a refresh writes when the members report a new member and a new DN
    (members.reconcile: the reporting member is the actor)."""
    by = f"member {world.member.name}"
    audit.record(by, "member.add", world.pending, after=audit.snapshot(world.pending))
    audit.record(by, "dn_update.request", world.dn_update, after=audit.snapshot(world.dn_update))


def test_audit_filters_by_action_actor_object_type_and_dates(client_as, world, operator):
    recorded_by_a_refresh(world)
    start_job(operator, "check_host", world.host)
    client = client_as("viewer")
    url = reverse("audit-list")

    by_action = events(client.get(url, {"action": "member.add"}))
    assert by_action and {e.action for e in by_action} == {"member.add"}
    by_actor = events(client.get(url, {"actor": operator.username.upper()}))
    assert [e.action for e in by_actor] == ["job.start"]
    by_type = events(client.get(url, {"object_type": "pendingdnupdate"}))
    assert [e.action for e in by_type] == ["dn_update.request"]

    today = timezone.now().date()
    everything = AuditEvent.objects.count()
    assert len(events(client.get(url, {"date_from": today, "date_to": today}))) == everything
    tomorrow = today + datetime.timedelta(days=1)
    assert events(client.get(url, {"date_from": tomorrow})) == []


def test_audit_filter_with_bad_input_shows_the_error_not_a_crash(client_as, world):
    response = client_as("viewer").get(
        reverse("audit-list"), {"date_from": "yesterday", "action": "no.such"}
    )
    assert response.status_code == 200
    assert "Enter a valid date" in response.text


def test_audit_shows_only_the_keys_an_update_changed(client_as, world, admin_user):
    services.update_mirror(admin_user, world.mirror, qos_timeout_ms=9000)
    response = client_as("viewer").get(reverse("audit-list"), {"action": "mirror.update"})
    (event,) = events(response)
    fields = {c["field"]: (c["before"], c["after"]) for c in event.changes}
    assert fields.pop("qos_timeout_ms") == ("8000", "9000")
    assert set(fields) == {"updated_at"}  # unchanged keys are left out
    assert 'class="after">9000<' in response.text


@pytest.mark.parametrize(
    "identity,sees_admin", [("viewer", False), ("operator", False), ("admin", True)]
)
def test_layout_has_skip_link_navigation_role_and_a_logout_form(
    client_as, world, identity, sees_admin
):
    html = client_as(identity).get(reverse("host-list")).text
    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html
    assert f'<span class="role">{identity}</span>' in html
    assert f'<form method="post" action="{reverse("logout")}">' in html
    assert f'href="{reverse("host-list")}" aria-current="page"' in html
    assert ('href="/admin/"' in html) is sees_admin
    assert 'href="/api/docs/"' in html


def test_a_user_without_a_role_is_told_to_ask_for_one(client_as):
    response = client_as("norole").get(reverse("mirror-list"))
    assert response.status_code == 403
    assert "no role yet" in response.text
    assert 'aria-label="Main"' not in response.text  # no navigation into more 403s
    assert f'action="{reverse("logout")}"' in response.text


def test_audit_folds_a_created_objects_fields_away(client_as, world, admin_user):
    factories.host(admin_user, name="audited-host")
    response = client_as("viewer").get(
        reverse("audit-list"), {"action": "host.create", "actor": admin_user.username}
    )
    assert "<details>" in response.text
    assert "Created with" in response.text
    (event,) = events(response)
    assert {"field": "name", "before": "", "after": "audited-host"} in event.changes


def test_audit_shows_what_a_deleted_object_was(client_as, world, admin_user):
    services.forget_mirror(admin_user, world.mirror, reason="forgotten by an operator")
    response = client_as("viewer").get(reverse("audit-list"), {"action": "mirror.forget"})
    assert "Deleted, had" in response.text
    (event,) = events(response)
    assert {"field": "name", "before": "ALPHA", "after": ""} in event.changes
