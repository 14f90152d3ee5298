"""The Django admin is one more entry point with the same single write path: it shows the mirror
configuration and never changes it, and what it does change (users, tokens) goes through the same
services as the API, so it is checked and audited the same way."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from accounts import services as accounts_services
from accounts.models import ApiToken, AuditEvent
from members.models import DatabaseCopy, Host, Member, Mirror, MirroredDatabase, PendingDNUpdate
from tests import factories
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
    mirror = factories.mirror(name="adm1", requires_tls=True)
    primary = factories.member(mirror, name="alpha")
    pending = factories.member(mirror, name="beta", member_type="dr")
    dn_update = factories.dn_update(primary, "CN=alpha-new,O=Example")
    database = factories.database(mirror, name="sales")
    copy = factories.copy(database, primary)
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


def test_the_admin_labels_read_as_words(admin_browser, world):
    page = admin_browser.get(f"/admin/members/mirror/{world['mirror'].pk}/change/").content
    for label in [b"Requires TLS", b"VIP address", b"QoS timeout (ms)"]:
        assert label in page


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_admin_site_is_closed_to_viewers_and_operators(users, role):
    client = Client()
    client.force_login(users[role])
    response = client.get("/admin/members/mirror/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_groups_are_listed_in_the_admin_but_not_edited(admin_browser):
    group = Group.objects.get_or_create(name="operator")[0]
    assert admin_browser.get("/admin/auth/group/").status_code == 200
    assert admin_browser.get("/admin/auth/group/add/").status_code == 403
    assert admin_browser.post(f"/admin/auth/group/{group.pk}/delete/").status_code == 403


# --- Users: changed through accounts.services, audited as the API's changes are ---------------
def event_shape(event):
    return (event.action, event.object_type, event.actor_name, sorted(event.before or {}))


def test_adding_a_user_in_the_admin_writes_the_services_event(admin_browser, admin_user):
    assert b'name="role"' in admin_browser.get("/admin/auth/user/add/").content
    response = admin_browser.post(
        "/admin/auth/user/add/",
        {"username": "tea-teammate", "email": "t@example.com", "role": "operator", "password": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    teammate = User.objects.get(username="tea-teammate")
    assert [g.name for g in teammate.groups.all()] == ["operator"]
    assert not teammate.has_usable_password()
    by_admin = AuditEvent.objects.get(action="user.create")
    accounts_services.create_user(admin_user, username="other", password=None, role="operator")
    assert event_shape(by_admin) == event_shape(last_event())
    assert by_admin.after["role"] == "operator" and by_admin.object_id == str(teammate.pk)


def test_the_admin_refuses_a_user_name_that_differs_only_in_case(admin_browser, operator):
    response = admin_browser.post(
        "/admin/auth/user/add/", {"username": "OTTO-OPERATOR", "role": "viewer", "password": ""}
    )
    assert response.status_code == 200
    assert b"A user with that name already exists." in response.content
    assert not AuditEvent.objects.filter(action="user.create").exists()


def user_form(user, **changes):
    return {
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "role": "viewer",
        "new_password": "",
        **changes,
    }


def test_changing_a_role_in_the_admin_writes_the_services_event(admin_browser, admin_user):
    teammate = make_user("tea-teammate", "viewer")
    outsider = make_user("olga-outsider", "viewer")
    url = f"/admin/auth/user/{teammate.pk}/change/"
    assert b'<option value="viewer" selected>' in admin_browser.get(url).content
    response = admin_browser.post(url, user_form(teammate, role="operator"))
    assert response.status_code == 302, response.content[:2000]
    assert [g.name for g in teammate.groups.all()] == ["operator"]
    by_admin = AuditEvent.objects.get(action="user.update")
    assert (by_admin.before["role"], by_admin.after["role"]) == ("viewer", "operator")
    accounts_services.update_user(admin_user, outsider, role="operator")
    by_service = last_event()
    assert event_shape(by_admin) == event_shape(by_service)
    own = {"id", "username", "date_joined"}
    assert {k: v for k, v in by_admin.after.items() if k not in own} == {
        k: v for k, v in by_service.after.items() if k not in own
    }


def test_deactivating_in_the_admin_is_audited_and_an_unchanged_save_is_not(admin_browser):
    teammate = make_user("tea-teammate", "viewer")
    url = f"/admin/auth/user/{teammate.pk}/change/"
    assert admin_browser.post(url, user_form(teammate)).status_code == 302
    assert not AuditEvent.objects.exists()
    assert admin_browser.post(url, user_form(teammate, is_active="")).status_code == 302
    event = AuditEvent.objects.get(action="user.update")
    assert (event.before["is_active"], event.after["is_active"]) == (True, False)
    teammate.refresh_from_db()
    assert not teammate.is_active


def test_a_user_cannot_be_made_superuser_or_renamed_in_the_admin(admin_browser):
    teammate = make_user("tea-teammate", "viewer")
    form = user_form(teammate, username="renamed", is_superuser="on")
    assert admin_browser.post(f"/admin/auth/user/{teammate.pk}/change/", form).status_code == 302
    teammate.refresh_from_db()
    assert (teammate.username, teammate.is_superuser) == ("tea-teammate", False)


def test_a_new_password_set_in_the_admin_is_audited_without_the_password(admin_browser):
    teammate = make_user("tea-teammate", "viewer")
    url = f"/admin/auth/user/{teammate.pk}/change/"
    refused = admin_browser.post(url, user_form(teammate, new_password="123"))
    assert refused.status_code == 200 and not AuditEvent.objects.exists()
    form = user_form(teammate, new_password="a much longer passphrase")
    assert admin_browser.post(url, form).status_code == 302
    teammate.refresh_from_db()
    assert teammate.check_password("a much longer passphrase")
    event = AuditEvent.objects.get()
    assert (event.action, event.before, event.after) == ("user.set_password", None, None)


def test_deleting_a_user_in_the_admin_writes_the_services_event(admin_browser, admin_user):
    teammate = make_user("tea-teammate", "viewer")
    url = f"/admin/auth/user/{teammate.pk}/delete/"
    assert admin_browser.post(url, {"post": "yes"}).status_code == 302
    assert not User.objects.filter(pk=teammate.pk).exists()
    event = AuditEvent.objects.get(action="user.delete")
    assert event.before["username"] == "tea-teammate" and event.actor == admin_user


def test_an_admin_cannot_delete_their_own_account_in_the_admin(admin_browser, admin_user):
    url = f"/admin/auth/user/{admin_user.pk}/delete/"
    assert admin_browser.post(url, {"post": "yes"}).status_code == 403
    bulk = admin_browser.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [admin_user.pk], "post": "yes"},
    )
    assert bulk.status_code == 403
    assert User.objects.filter(pk=admin_user.pk).exists()
    assert not AuditEvent.objects.filter(action="user.delete").exists()


# --- Tokens: revoked through the service, never edited --------------------------------------
def test_revoking_a_token_in_the_admin_writes_the_services_event(admin_browser, admin_user):
    owner = make_user("owen-owner", "viewer")
    token, _ = accounts_services.create_token(owner, name="script")
    other, _ = accounts_services.create_token(owner, name="other")
    response = admin_browser.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    by_admin = AuditEvent.objects.get(action="token.revoke")
    accounts_services.revoke_token(admin_user, other)
    assert event_shape(by_admin) == event_shape(last_event())
    assert (by_admin.before["revoked_at"], by_admin.actor) == (None, admin_user)


def test_a_token_is_not_edited_or_deleted_in_the_admin(admin_browser):
    token, secret = accounts_services.create_token(make_user("owen-owner", "viewer"), name="s")
    page = admin_browser.get(f"/admin/accounts/apitoken/{token.pk}/change/")
    assert page.status_code == 200 and token.hint.encode() in page.content
    assert token.key_hash.encode() not in page.content
    url = f"/admin/accounts/apitoken/{token.pk}/"
    assert admin_browser.post(url + "change/", {"name": "renamed"}).status_code == 403
    assert admin_browser.post(url + "delete/", {"post": "yes"}).status_code == 403
    token.refresh_from_db()
    assert (token.name, token.revoked_at) == ("s", None)
    assert ApiToken.objects.count() == 1
