"""The Django admin is one more entry point with the same single write path: it shows the mirror
configuration and never changes it (the services, called by the pages and the API, do)."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import AuditEvent
from members import services
from members.models import DatabaseCopy, Host, Member, Mirror, MirroredDatabase, PendingDNUpdate
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture(params=["admin role", "superuser"])
def any_admin_browser(request, admin_user):
    """The admin role, and a superuser, who also holds every Django model permission."""
    user = admin_user
    if request.param == "superuser":
        user = User.objects.create_superuser("sue-super", password="correct horse battery")
    client = Client()
    client.force_login(user)
    return client


def last_event():
    return AuditEvent.objects.order_by("-id").first()


@pytest.fixture
def world(admin_user):
    mirror = factories.mirror(admin_user, name="adm1", requires_tls=True)
    primary = factories.member(mirror, admin_user, name="alpha")
    pending = factories.member(mirror, admin_user, name="beta", member_type="dr")
    dn_update = services.request_dn_update(admin_user, primary, "CN=alpha-new,O=Example")
    database = factories.database(mirror, admin_user, name="sales")
    copy = services.add_database_copy(admin_user, database, primary)
    return {
        "mirror": mirror,
        "host": primary.host,
        "member": primary,
        "pendingmember": pending,
        "pendingdnupdate": dn_update,
        "mirroreddatabase": database,
        "databasecopy": copy,
    }


# --- The mirror configuration: to look at only ------------------------------------------------
MODELS = list(
    zip(
        ["mirror", "host", "member", "pendingmember", "pendingdnupdate"]
        + ["mirroreddatabase", "databasecopy"],
        [Mirror, Host, Member, Member, PendingDNUpdate, MirroredDatabase, DatabaseCopy],
        strict=True,
    )
)


@pytest.mark.parametrize("name", [name for name, _ in MODELS])
def test_an_admin_still_lists_searches_and_opens_every_mirror_model(admin_browser, world, name):
    obj = world[name]
    listing = admin_browser.get(f"/admin/members/{name}/", {"q": "a"})
    assert listing.status_code == 200
    detail = admin_browser.get(f"/admin/members/{name}/{obj.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content  # shown read-only: nothing to save
    assert f"/admin/members/{name}/add/".encode() not in listing.content


@pytest.mark.parametrize("name, model", MODELS)
def test_the_admin_adds_changes_and_deletes_no_mirror_model(any_admin_browser, world, name, model):
    obj = world[name]
    rows, events = model.objects.count(), AuditEvent.objects.count()
    assert any_admin_browser.post(f"/admin/members/{name}/add/", {}).status_code == 403
    change = any_admin_browser.post(f"/admin/members/{name}/{obj.pk}/change/", {})
    assert change.status_code == 403
    delete = any_admin_browser.post(f"/admin/members/{name}/{obj.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    bulk = any_admin_browser.post(
        f"/admin/members/{name}/",
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )
    assert model.objects.count() == rows and bulk.status_code in (200, 302)
    assert AuditEvent.objects.count() == events


def test_an_admin_cannot_change_a_members_type_in_the_admin(any_admin_browser, world):
    member = world["member"]
    form = {
        "mirror": member.mirror_id,
        "host": member.host_id,
        "name": member.name,
        "member_type": "dr",
        "superserver_address": member.superserver_address,
        "superserver_port": member.superserver_port,
        "agent_port": member.agent_port,
        "authorization": member.authorization,
    }
    page = any_admin_browser.get(f"/admin/members/member/{member.pk}/change/")
    assert b'name="member_type"' not in page.content
    response = any_admin_browser.post(f"/admin/members/member/{member.pk}/change/", form)
    assert response.status_code == 403
    member.refresh_from_db()
    assert member.member_type == "failover"
    assert not AuditEvent.objects.filter(action="member.update").exists()


def test_an_admin_cannot_authorize_a_pending_member_in_the_admin(any_admin_browser, world):
    pending = world["pendingmember"]
    response = any_admin_browser.post(
        f"/admin/members/pendingmember/{pending.pk}/change/", {"authorization": "authorized"}
    )
    assert response.status_code == 403
    pending.refresh_from_db()
    assert pending.authorization == Member.PENDING


def test_a_dn_updates_state_cannot_be_flipped_in_the_admin(any_admin_browser, world):
    update, member = world["pendingdnupdate"], world["member"]
    page = any_admin_browser.get(f"/admin/members/pendingdnupdate/{update.pk}/change/")
    assert b'name="state"' not in page.content
    response = any_admin_browser.post(
        f"/admin/members/pendingdnupdate/{update.pk}/change/",
        {"member": member.pk, "new_dn": update.new_dn, "state": "authorized"},
    )
    assert response.status_code == 403
    update.refresh_from_db()
    member.refresh_from_db()
    assert (update.state, update.decided_at) == (PendingDNUpdate.PENDING, None)
    assert member.x509_dn != update.new_dn  # an authorization that applied nothing is impossible


def test_the_admin_never_shows_a_hosts_agent_credential(admin_browser):
    host = factories.host(credential="s3cret-agent-key")
    page = admin_browser.get(f"/admin/members/host/{host.pk}/change/")
    assert page.status_code == 200
    assert b"s3cret-agent-key" not in page.content
    assert b"Agent credential set" in page.content


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_admin_site_is_closed_to_viewers_and_operators(users, role):
    client = Client()
    client.force_login(users[role])
    response = client.get("/admin/members/mirror/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
