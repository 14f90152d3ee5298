"""The operations on the mirror and host pages, through the Django test client and the real
database: each button's POST starts the job the matching API call starts (kind, params, target),
a form refuses bad input with the rule's own message, a dangerous operation goes ahead only with
the mirror's name typed, and the roles split as in the API (viewers read, operators run
operations, admins change configuration and decide on members)."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import DatabaseCopy, Member, Mirror
from tasks.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def dr(world):
    """An authorized DR member of ALPHA holding two copies, and a third database on NODEA."""
    member = factories.member(
        world.mirror,
        name="FARAWAY",
        member_type="dr",
        authorization=Member.AUTHORIZED,
        x509_dn="CN=FARAWAY,O=Example",
    )
    Member.objects.filter(pk=member.pk).update(status="Connected", observed_at=timezone.now())
    Member.objects.filter(pk=world.member.pk).update(status="Primary", observed_at=timezone.now())
    orders = factories.database(world.mirror, name="ORDERS")
    factories.copy(orders, world.member, status="Normal")
    member.refresh_from_db()
    member.sales = factories.copy(world.database, member, status="Needs Catchup")
    member.orders = factories.copy(orders, member, status="Needs Activation")
    return member


def new_jobs(world):
    return Job.objects.exclude(pk=world.job.pk)


def url(name, world, *args):
    return reverse(name, args=[world.mirror.name, *args])


def page(client, world, **query):
    return client.get(url("mirror-detail", world), query)


# --- Who sees which operation ----------------------------------------------------------------
def test_an_admin_finds_every_operation_where_they_look_for_it(client_as, world, dr):
    html = page(client_as("admin"), world, member="FARAWAY").text

    for name in ("mirror-settings", "mirror-join", "database-create", "mirror-refresh"):
        assert f'href="{url(name, world)}"' in html or f'action="{url(name, world)}"' in html
    for name in ("mirror-tls-off", "mirror-remove", "mirror-forget"):
        assert f'href="{url(name, world)}"' in html
    assert url("member-remove", world, dr.pk) in html
    assert url("member-addresses", world, dr.pk) in html
    assert url("member-reject", world, world.pending.pk) in html
    assert url("member-authorize", world, world.pending.pk) in html
    # the primary is not removed from its row: the mirror is removed instead
    assert url("member-remove", world, world.member.pk) not in html
    # the DR member's switches, and its databases with a checkbox each
    assert url("member-switch", world, dr.pk, "stop-mirroring") in html
    assert url("member-switch", world, dr.pk, "stop-dejournaling") in html
    assert f'action="{url("member-copies", world, dr.pk)}"' in html
    for copy in (dr.sales, dr.orders):
        assert f'name="copies" value="{copy.pk}"' in html


def test_a_member_last_seen_down_offers_no_graceful_stop(client_as, world, dr):
    Member.objects.filter(pk=dr.pk).update(status="Down", observed_at=timezone.now())

    html = page(client_as("operator"), world).text

    assert url("member-switch", world, world.member.pk, "stop-instance") in html
    assert url("member-switch", world, world.member.pk, "set-no-failover") in html
    assert url("member-switch", world, dr.pk, "stop-instance") not in html


def test_an_operator_runs_operations_but_changes_no_configuration(client_as, world, dr):
    html = page(client_as("operator"), world, member="FARAWAY").text

    assert url("mirror-refresh", world) in html and url("database-create", world) in html
    assert url("member-switch", world, dr.pk, "stop-mirroring") in html
    assert f'action="{url("member-copies", world, dr.pk)}"' in html
    for name in ("mirror-settings", "mirror-join", "mirror-remove", "mirror-forget"):
        assert url(name, world) not in html
    assert url("member-remove", world, dr.pk) not in html
    assert url("member-authorize", world, world.pending.pk) not in html


def test_a_viewer_sees_no_action_buttons_on_the_mirror_and_host_pages(client_as, world, dr):
    client = client_as("viewer")
    mirror_html = page(client, world, member="FARAWAY").text
    host_html = client.get(reverse("host-detail", args=[world.host.pk])).text

    for html in (mirror_html, host_html):
        # the only form a viewer gets is the log-out button
        assert html.count("<form") == 1 and 'action="/logout/"' in html
        assert "<button" not in html.replace('<button type="submit" class="link-button">', "")
    assert "Actions" not in mirror_html and 'name="copies"' not in mirror_html
    assert "Dangerous operations" not in mirror_html
    assert "Check now" not in host_html


def forged_posts(world, dr):
    """Every operation URL of the pages, with a body that would be accepted from an admin."""
    name = world.mirror.name
    return {
        "settings": (url("mirror-settings", world), {"qos_timeout_ms": 9000}, "admin"),
        "join": (url("mirror-join", world), {"member_type": "dr"}, "admin"),
        "tls off": (url("mirror-tls-off", world), {"confirm": name}, "admin"),
        "remove mirror": (url("mirror-remove", world), {"confirm": name}, "admin"),
        "forget mirror": (url("mirror-forget", world), {"confirm": name}, "admin"),
        "authorize": (url("member-authorize", world, world.pending.pk), {}, "admin"),
        "reject": (url("member-reject", world, world.pending.pk), {"confirm": name}, "admin"),
        "remove member": (url("member-remove", world, dr.pk), {"confirm": name}, "admin"),
        "addresses": (
            url("member-addresses", world, dr.pk),
            {"superserver": "10.9.9.9:1972"},
            "admin",
        ),
        "add database": (url("database-create", world), {"name": "X"}, "operator"),
        "stop mirroring": (url("member-switch", world, dr.pk, "stop-mirroring"), {}, "operator"),
        "catch up": (
            url("member-copies", world, dr.pk),
            {"copies": [dr.sales.pk], "action": "catchup"},
            "operator",
        ),
        "remove copies": (
            url("copies-remove", world, dr.pk),
            {"copies": [dr.sales.pk], "confirm": name},
            "operator",
        ),
        "refresh": (url("mirror-refresh", world), {}, "operator"),
        "check host": (reverse("host-check", args=[world.host.pk]), {}, "operator"),
    }


# Each operation and the weakest role allowed; every weaker role forges a POST.
FORGED = {
    "settings": "admin",
    "join": "admin",
    "tls off": "admin",
    "remove mirror": "admin",
    "forget mirror": "admin",
    "authorize": "admin",
    "reject": "admin",
    "remove member": "admin",
    "addresses": "admin",
    "add database": "operator",
    "stop mirroring": "operator",
    "catch up": "operator",
    "remove copies": "operator",
    "refresh": "operator",
    "check host": "operator",
}
WEAKER = {"admin": ["viewer", "operator"], "operator": ["viewer"]}


@pytest.mark.parametrize(
    "operation,identity",
    [(op, who) for op, lowest in FORGED.items() for who in WEAKER[lowest]],
)
def test_a_forged_post_from_a_role_too_weak_is_403_and_starts_nothing(
    client_as, world, dr, operation, identity
):
    path, body, lowest = forged_posts(world, dr)[operation]
    assert lowest == FORGED[operation]

    response = client_as(identity).post(path, body)

    assert response.status_code == 403
    assert not new_jobs(world).exists()
    assert Mirror.objects.filter(pk=world.mirror.pk, requires_tls=True).exists()


# --- Forms: each starts the job the API would, or shows the rule's message ----------------------
def started(response) -> Job:
    """The one job the POST started, whose page the browser was sent to."""
    job = Job.objects.exclude(kind="check_host").get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert job.state == Job.QUEUED
    return job


def test_the_settings_form_holds_the_current_values_and_sends_only_what_changed(
    client_as, world, admin_user
):
    client = client_as("admin")
    form = client.get(url("mirror-settings", world)).text
    assert 'name="qos_timeout_ms" value="8000"' in form
    assert "Quality of service timeout (milliseconds)" in form and "Qos timeout" not in form
    # TLS is on: it is turned off on its own page, not by unticking a box here
    assert 'name="requires_tls"' not in form and url("mirror-tls-off", world) in form

    current = client.get(url("mirror-settings", world)).context["form"].initial
    body = {k: v for k, v in current.items() if v is not None}
    response = client.post(url("mirror-settings", world), body | {"qos_timeout_ms": 9000})

    job = started(response)
    assert (job.kind, job.mirror, job.requested_by) == ("edit_mirror", world.mirror, admin_user)
    assert job.params == {"settings": {"qos_timeout_ms": 9000}, "skip_verify": False}


def test_the_settings_form_refuses_bad_values_with_the_rules_message(client_as, world):
    client = client_as("admin")
    body = {
        k: v
        for k, v in client.get(url("mirror-settings", world)).context["form"].initial.items()
        if v is not None
    }

    unchanged = client.post(url("mirror-settings", world), body)
    arbiter = client.post(
        url("mirror-settings", world), body | {"arbiter_host": world.host.address}
    )
    vip = client.post(url("mirror-settings", world), body | {"vip_address": "10.0.0.50"})

    assert "Nothing changed." in unchanged.text
    assert arbiter.context["form"].errors["arbiter_host"]  # not on a failover member's host
    assert "needs an address, a CIDR mask and an interface" in vip.text
    assert not new_jobs(world).exists()


def test_add_member_joins_a_discovered_instance(client_as, world, admin_user):
    spare = factories.host(admin_user, name="spare")
    factories.instance(spare, name="DRIRIS")
    client = client_as("admin")
    form = client.get(url("mirror-join", world)).text
    assert f'value="{spare.pk}:DRIRIS"' in form and "Member type" in form

    response = client.post(
        url("mirror-join", world), {"instance": f"{spare.pk}:DRIRIS", "member_type": "dr"}
    )

    job = started(response)
    assert job.kind == "join_mirror"
    assert job.params == {"host": spare.pk, "instance": "DRIRIS", "type": "dr"}


def test_add_member_refuses_a_failover_member_without_its_private_address(
    client_as, world, admin_user
):
    spare = factories.host(admin_user, name="spare")
    factories.instance(spare, name="THIRD")

    response = client_as("admin").post(
        url("mirror-join", world), {"instance": f"{spare.pk}:THIRD", "member_type": "failover"}
    )

    assert response.status_code == 200
    assert "A failover member needs a mirror private address." in response.text
    assert not new_jobs(world).exists()


def test_add_databases_creates_one_with_a_copy_on_the_members_ticked(client_as, world, dr):
    client = client_as("operator")
    form = client.get(url("database-create", world)).text
    # every member but the primary is offered, ticked
    assert 'value="FARAWAY"' in form and 'value="NODEB"' in form and 'value="NODEA"' not in form

    everyone = client.post(
        url("database-create", world),
        {"name": "hr", "how": "create", "members": ["NODEB", "FARAWAY"]},
    )
    job = started(everyone)
    assert (job.kind, job.params) == (
        "create_database",
        {"name": "HR", "how": "create", "members": None},  # every other member
    )
    job.delete()
    some = client.post(
        url("database-create", world), {"name": "legacy", "how": "add", "members": ["FARAWAY"]}
    )
    assert started(some).params == {"name": "LEGACY", "how": "add", "members": ["FARAWAY"]}


def test_add_databases_refuses_a_name_the_rules_refuse(client_as, world):
    response = client_as("operator").post(
        url("database-create", world), {"name": "9lives", "how": "create"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["name"]
    assert not new_jobs(world).exists()


def test_new_addresses_go_to_the_primary(client_as, world, dr):
    response = client_as("admin").post(
        url("member-addresses", world, dr.pk), {"superserver": "faraway.example:1973"}
    )

    job = started(response)
    assert (job.kind, job.member, job.params) == (
        "update_member_address",
        dr,
        {"superserver": "faraway.example:1973"},
    )


def test_a_members_switch_starts_its_job(client_as, world, dr):
    response = client_as("operator").post(url("member-switch", world, dr.pk, "stop-dejournaling"))

    job = started(response)
    assert (job.kind, job.member, job.params) == ("stop_dejournaling", dr, {})


def test_a_stopped_member_offers_start_mirroring_and_the_primary_no_switch(client_as, world, dr):
    Member.objects.filter(pk=dr.pk).update(status="Stopped")

    html = page(client_as("operator"), world).text

    assert url("member-switch", world, dr.pk, "start-mirroring") in html
    assert url("member-switch", world, dr.pk, "stop-mirroring") not in html
    assert url("member-switch", world, world.member.pk, "stop-mirroring") not in html


def test_an_unknown_switch_is_not_found(client_as, world, dr):
    response = client_as("operator").post(url("member-switch", world, dr.pk, "make-primary"))

    assert response.status_code == 404
    assert not new_jobs(world).exists()


# --- The databases list: several copies of one member, one action -------------------------------
def act(client, world, dr, action, *copies):
    return client.post(
        url("member-copies", world, dr.pk), {"copies": [c.pk for c in copies], "action": action}
    )


def test_catching_up_two_databases_of_a_member_is_one_job(client_as, world, dr):
    response = act(client_as("operator"), world, dr, "catchup", dr.sales, dr.orders)

    job = started(response)
    assert (job.kind, job.member) == ("catchup_databases", dr)
    assert job.params == {"databases": ["ORDERS", "SALES"]}


def test_activating_two_copies_starts_one_job_each_and_links_both(client_as, world, dr):
    response = act(client_as("operator"), world, dr, "activate", dr.sales, dr.orders)

    jobs = list(new_jobs(world).order_by("pk"))
    assert [j.kind for j in jobs] == ["activate_database"] * 2
    assert {j.target_id for j in jobs} == {str(dr.sales.pk), str(dr.orders.pk)}
    assert all(j.member == dr and j.target_type == "databasecopy" for j in jobs)
    assert response.status_code == 302
    assert response["Location"].startswith(url("mirror-detail", world) + "?member=FARAWAY")


def test_one_copy_selected_leads_to_its_jobs_page(client_as, world, dr):
    response = act(client_as("operator"), world, dr, "mount", dr.sales)

    job = started(response)
    assert (job.kind, job.target_id, job.params) == ("mount_database", str(dr.sales.pk), {})


def test_the_started_jobs_are_linked_on_the_page_the_person_returns_to(client_as, world, dr):
    client = client_as("operator")
    response = client.post(
        url("member-copies", world, dr.pk),
        {"copies": [dr.sales.pk, dr.orders.pk], "action": "mount"},
        follow=True,
    )

    for job in new_jobs(world):
        assert f'<a href="{reverse("job-detail", args=[job.pk])}">job {job.pk}</a>' in response.text
        assert (job.kind, job.params) == ("mount_database", {})


def test_nothing_selected_is_refused_and_starts_nothing(client_as, world, dr):
    response = client_as("operator").post(
        url("member-copies", world, dr.pk), {"action": "catchup"}, follow=True
    )

    assert "Select at least one database." in response.text
    assert not new_jobs(world).exists()


def test_a_copy_of_another_member_cannot_be_slipped_in(client_as, world, dr):
    on_primary = DatabaseCopy.objects.get(member=world.member, database=world.database)

    act(client_as("operator"), world, dr, "activate", on_primary)

    assert not new_jobs(world).exists()


def test_remove_from_the_list_asks_for_confirmation_first(client_as, world, dr):
    response = act(client_as("operator"), world, dr, "remove", dr.sales, dr.orders)

    assert response.status_code == 302
    assert response["Location"].startswith(url("copies-remove", world, dr.pk) + "?copies=")
    assert not new_jobs(world).exists()


# --- Dangerous operations: what is at risk, and the mirror's name typed -------------------------
def dangerous(world, dr):
    """(confirmation page, who may, words the page must show, the job kind started or None)."""
    return {
        "remove member": (
            url("member-remove", world, dr.pk),
            "admin",
            ["Disaster Recovery (DR)", "Connected", "SALES", "ORDERS", "no longer be mirrored"],
            "remove_member",
        ),
        "reject member": (
            url("member-reject", world, world.pending.pk),
            "admin",
            ["NODEB", "CN=NODEB,O=Example", "Pending", "join again"],
            "reject_member",
        ),
        "remove mirror": (
            url("mirror-remove", world),
            "admin",
            ["NODEA", "FARAWAY", "ORDERS, SALES", "no longer be mirrored anywhere"],
            "remove_mirror",
        ),
        "forget mirror": (
            url("mirror-forget", world),
            "admin",
            ["Nothing happens to the members", "3 members", "2 databases"],
            None,
        ),
        "turn TLS off": (
            url("mirror-tls-off", world),
            "admin",
            ["no longer be authenticated by their certificate", "CN=FARAWAY,O=Example"],
            "edit_mirror",
        ),
        "remove databases": (
            url("copies-remove", world, dr.pk) + f"?copies={dr.sales.pk}&copies={dr.orders.pk}",
            "operator",
            ["FARAWAY", "SALES", "Needs Catchup", "ORDERS", "failover members are not affected"],
            "remove_database",
        ),
    }


DANGEROUS = [
    "remove member",
    "reject member",
    "remove mirror",
    "forget mirror",
    "turn TLS off",
    "remove databases",
]


@pytest.mark.parametrize("operation", DANGEROUS)
def test_a_dangerous_operation_shows_what_is_at_risk_and_asks_for_the_name(
    client_as, world, dr, operation
):
    path, role, words, _ = dangerous(world, dr)[operation]

    html = client_as(role).get(path).text

    for word in words:
        assert word in html, word
    assert "What is at risk" in html and "Type the mirror&#x27;s name to confirm" in html
    assert 'name="confirm"' in html and "required" in html


@pytest.mark.parametrize("typed", [None, "", "ALPH", "BETA", "ALPHA2"])
@pytest.mark.parametrize("operation", DANGEROUS)
def test_a_dangerous_operation_is_refused_until_the_name_is_typed(
    client_as, world, dr, operation, typed
):
    path, role, _, _ = dangerous(world, dr)[operation]
    client = client_as(role)
    body = {} if typed is None else {"confirm": typed}
    if operation == "remove databases":
        body["copies"] = [dr.sales.pk, dr.orders.pk]

    response = client.post(path, body)

    assert response.status_code == 200
    assert "Type the mirror&#x27;s name, ALPHA, to confirm." in response.text
    assert not new_jobs(world).exists()
    assert Mirror.objects.filter(pk=world.mirror.pk, requires_tls=True).exists()
    assert Member.objects.filter(pk=dr.pk).exists() and DatabaseCopy.objects.count() == 4


def test_the_name_typed_in_any_case_removes_a_member(client_as, world, dr, admin_user):
    response = client_as("admin").post(url("member-remove", world, dr.pk), {"confirm": " alpha "})

    job = started(response)
    assert (job.kind, job.member, job.params, job.requested_by) == (
        "remove_member",
        dr,
        {},
        admin_user,
    )
    assert Member.objects.filter(pk=dr.pk).exists()  # until the primary has removed it


def test_the_name_typed_rejects_a_pending_member(client_as, world):
    response = client_as("admin").post(
        url("member-reject", world, world.pending.pk), {"confirm": "Alpha"}
    )

    job = started(response)
    assert (job.kind, job.member) == ("reject_member", world.pending)


def test_the_name_typed_removes_the_mirror_with_the_options_chosen(client_as, world):
    response = client_as("admin").post(
        url("mirror-remove", world), {"confirm": "ALPHA", "remove_tls": "on"}
    )

    job = started(response)
    assert (job.kind, job.mirror) == ("remove_mirror", world.mirror)
    assert job.params == {"remove_db_attribute": False, "remove_tls": True}


def test_the_name_typed_turns_tls_off_on_the_primary(client_as, world):
    response = client_as("admin").post(url("mirror-tls-off", world), {"confirm": "alpha"})

    job = started(response)
    assert (job.kind, job.params) == (
        "edit_mirror",
        {"settings": {"tls": False}, "skip_verify": False},
    )
    world.mirror.refresh_from_db()
    assert world.mirror.requires_tls  # until the primary reports it off


def test_a_mirror_without_tls_has_no_tls_off_page(client_as, world):
    Mirror.objects.filter(pk=world.mirror.pk).update(requires_tls=False)

    response = client_as("admin").get(url("mirror-tls-off", world))

    assert response.status_code == 302 and response["Location"] == url("mirror-detail", world)


def test_the_name_typed_forgets_the_mirror_and_tells_the_members_nothing(client_as, world):
    response = client_as("admin").post(url("mirror-forget", world), {"confirm": "alpha"})

    assert response.status_code == 302 and response["Location"] == reverse("mirror-list")
    assert not Mirror.objects.filter(name="ALPHA").exists()
    assert not new_jobs(world).exists()


def test_the_name_typed_removes_the_selected_copies_one_job_each(client_as, world, dr, operator):
    response = client_as("operator").post(
        url("copies-remove", world, dr.pk),
        {"copies": [dr.sales.pk, dr.orders.pk], "confirm": "ALPHA"},
    )

    jobs = list(new_jobs(world))
    assert [j.kind for j in jobs] == ["remove_database"] * 2
    assert {j.target_id for j in jobs} == {str(dr.sales.pk), str(dr.orders.pk)}
    assert all(j.params == {} and j.requested_by == operator for j in jobs)
    assert response.status_code == 302


def test_an_operator_cannot_remove_or_reject_a_member(client_as, world, dr):
    client = client_as("operator")

    assert client.get(url("member-remove", world, dr.pk)).status_code == 403
    assert client.get(url("member-reject", world, world.pending.pk)).status_code == 403
    assert (
        client.post(url("member-reject", world, world.pending.pk), {"confirm": "ALPHA"}).status_code
        == 403
    )
    assert not new_jobs(world).exists()


# --- The host page -----------------------------------------------------------------------------
def test_the_host_page_shows_its_instances_certificates_and_members(client_as, world, dr):
    now = timezone.now()
    host = world.host
    for name, days in (("SOON", 5), ("MONTH", 20), ("LATER", 200), ("GONE", -3)):
        factories.instance(
            host,
            name=name,
            certificate_dn=f"CN={name},O=Example",
            certificate_not_after=now + datetime.timedelta(days=days, hours=1),
            mirror_name="ALPHA" if name == "LATER" else "",
            member_name="NODEA" if name == "LATER" else "",
            member_type="failover" if name == "LATER" else "",
        )
    client = client_as("operator")

    html = client.get(reverse("host-detail", args=[host.pk])).text

    assert f"{host.address}:{host.agent_port}" in html and "Not checked" in html
    assert '<span class="badge bad" title=' in html and ">5 days left</span>" in html
    assert '<span class="badge warn"' in html and ">20 days left</span>" in html
    assert '<span class="badge ok"' in html and ">200 days left</span>" in html
    assert ">Expired 3 days ago</span>" in html
    assert "ALPHA as NODEA, Failover" in html and "CN=SOON,O=Example" in html
    assert reverse("mirror-detail", args=["ALPHA"]) in html  # NODEA, the member on it
    assert f'action="{reverse("host-check", args=[host.pk])}"' in html and "Check now" in html
    listed = client.get(reverse("host-list")).text
    assert f'href="{reverse("host-detail", args=[host.pk])}"' in listed
