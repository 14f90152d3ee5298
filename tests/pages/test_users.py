"""The Users pages: an admin adds people with a role, changes roles and deactivates accounts,
every change audited with before and after; nobody else reaches them, and nobody locks the
admins out."""

import re

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import AuditEvent
from accounts.roles import role_of
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # what tests.conftest.make_user gives everyone


def log_in(username, password):
    """A fresh browser session through the real login form; the client, and whether it worked."""
    client = Client()
    response = client.post(reverse("login"), {"username": username, "password": password})
    return client, response.status_code == 302 and response["Location"] == reverse("mirror-list")


def api_status(secret):
    return Client().get("/api/v1/mirrors/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code


def one_time_link(response) -> str:
    match = re.search(r'id="set-password-link"[^>]*value="([^"]+)"', response.text)
    assert match, response.text
    return match.group(1).removeprefix("http://testserver")


def user_events():
    return AuditEvent.objects.filter(object_type="user").order_by("id")


# --- Creating users ---------------------------------------------------------------------------
def test_an_admin_creates_a_user_with_a_role_and_that_user_logs_in_with_it(client_as, admin_user):
    response = client_as("admin").post(
        reverse("user-create"),
        {"username": "olga", "email": "olga@example.com", "role": "operator", "password": PASSWORD},
    )

    olga = User.objects.get(username="olga")
    assert response.status_code == 302
    assert response["Location"] == reverse("user-detail", args=[olga.pk])
    client, logged_in = log_in("olga", PASSWORD)
    assert logged_in
    assert '<span class="role">operator</span>' in client.get(reverse("mirror-list")).text
    assert role_of(olga) == "operator"
    created = user_events().get(action="user.create")
    assert (created.actor, created.before, created.after["role"]) == (admin_user, None, "operator")
    assert created.after["email"] == "olga@example.com"


def test_an_invited_user_chooses_a_password_once_through_the_link_and_logs_in(client_as):
    response = client_as("admin").post(
        reverse("user-create"), {"username": "ivan", "role": "viewer", "password": ""}
    )

    assert response.status_code == 200
    assert "Copy it now" in response.text
    assert response["Cache-Control"] == "no-store"
    ivan = User.objects.get(username="ivan")
    assert not ivan.has_usable_password()
    assert not log_in("ivan", "")[1]

    link = one_time_link(response)
    guest = Client()
    form_page = guest.get(link, follow=True)
    assert "Choose your password" in form_page.text and 'name="new_password1"' in form_page.text
    chosen = "my very own pass phrase"
    done = guest.post(
        form_page.redirect_chain[-1][0], {"new_password1": chosen, "new_password2": chosen}
    )
    assert done.status_code == 302 and done["Location"] == reverse("login")
    assert log_in("ivan", chosen)[1]
    # Used once, the link is dead: the token covered the old (unusable) password.
    assert "This link does not work" in Client().get(link, follow=True).text
    actions = list(user_events().values_list("action", "actor__username"))
    assert actions == [
        ("user.create", "ada-admin"),
        ("user.invite", "ada-admin"),
        ("user.set_password", "ivan"),
    ]


def test_an_invitation_link_does_not_work_for_a_deactivated_user(client_as, admin_user):
    response = client_as("admin").post(
        reverse("user-create"), {"username": "ivan", "role": "viewer", "password": ""}
    )
    ivan = User.objects.get(username="ivan")
    services.update_user(admin_user, ivan, is_active=False)

    page = Client().get(one_time_link(response), follow=True)

    assert "This link does not work" in page.text
    assert 'name="new_password1"' not in page.text


def test_a_lost_link_is_replaced_from_the_users_page(client_as):
    admin = client_as("admin")
    admin.post(reverse("user-create"), {"username": "ivan", "role": "viewer", "password": ""})
    ivan = User.objects.get(username="ivan")

    assert "New set-password link" in admin.get(reverse("user-detail", args=[ivan.pk])).text
    response = admin.post(reverse("user-invite", args=[ivan.pk]))

    assert "Copy it now" in response.text
    assert 'name="new_password1"' in Client().get(one_time_link(response), follow=True).text
    assert user_events().filter(action="user.invite").count() == 2


@pytest.mark.parametrize(
    "form,field_error",
    [
        ({"username": "OTTO-OPERATOR"}, "A user with that name already exists."),
        ({"password": "short"}, "This password is too short."),
        ({"password": "password"}, "This password is too common."),
        ({"username": "no spaces allowed"}, "Enter a valid username."),
        ({"role": "superhero"}, "Select a valid choice."),
    ],
)
def test_bad_input_shows_a_clear_error_and_creates_nothing(client_as, operator, form, field_error):
    data = {"username": "newbie", "email": "", "role": "viewer", "password": PASSWORD, **form}

    response = client_as("admin").post(reverse("user-create"), data)

    assert response.status_code == 200
    assert field_error in response.text
    assert 'class="error" role="alert"' in response.text  # next to its field
    assert not User.objects.filter(username__iexact=data["username"]).exclude(pk=operator.pk)
    assert not user_events().exists()


# --- Changing roles, deactivating ---------------------------------------------------------------
def test_changing_a_role_is_audited_with_before_and_after(client_as, admin_user, viewer):
    url = reverse("user-detail", args=[viewer.pk])

    response = client_as("admin").post(url, {"role": "operator"}, follow=True)

    assert "vera-viewer now holds operator portal-wide." in response.text
    assert [g.name for g in viewer.groups.all()] == ["operator"]
    event = user_events().get()
    assert (event.action, event.actor) == ("user.update", admin_user)
    assert (event.before["role"], event.after["role"]) == ("viewer", "operator")


def test_choosing_the_role_someone_already_has_changes_and_audits_nothing(client_as, viewer):
    url = reverse("user-detail", args=[viewer.pk])

    response = client_as("admin").post(url, {"role": "viewer"}, follow=True)

    assert "already is viewer" in response.text
    assert not user_events().exists()


def test_a_deactivated_user_can_no_longer_log_in_or_use_api_tokens(client_as, admin_user, viewer):
    _, secret = services.create_token(viewer, name="nightly script")
    session, logged_in = log_in(viewer.username, PASSWORD)
    assert logged_in and api_status(secret) == 200

    response = client_as("admin").post(reverse("user-deactivate", args=[viewer.pk]), follow=True)

    assert "can no longer log in or use their API tokens" in response.text
    assert not log_in(viewer.username, PASSWORD)[1]
    assert api_status(secret) == 401
    open_page = session.get(reverse("mirror-list"))  # the session they already had ends too
    assert open_page.status_code == 302 and open_page["Location"].startswith(reverse("login"))
    event = user_events().get()
    assert (event.action, event.actor) == ("user.update", admin_user)
    assert (event.before["is_active"], event.after["is_active"]) == (True, False)


def test_a_reactivated_user_gets_back_in_with_the_same_role(client_as, viewer):
    _, secret = services.create_token(viewer, name="nightly script")
    admin = client_as("admin")
    admin.post(reverse("user-deactivate", args=[viewer.pk]))

    admin.post(reverse("user-reactivate", args=[viewer.pk]))

    assert log_in(viewer.username, PASSWORD)[1]
    assert api_status(secret) == 200
    viewer.refresh_from_db()
    assert role_of(viewer) == "viewer"
    flips = [(e.before["is_active"], e.after["is_active"]) for e in user_events()]
    assert flips == [(True, False), (False, True)]


def test_the_users_list_shows_each_users_role_state_and_last_login(client_as, viewer, operator):
    services.update_user(None, operator, is_active=False)
    log_in(viewer.username, PASSWORD)

    page = client_as("admin").get(reverse("user-list")).text

    rows = dict(re.findall(r'<th scope="row"><a [^>]*>([\w-]+)</a></th>(.*?)</tr>', page, re.S))
    assert set(rows) == {"ada-admin", "nils-norole", "otto-operator", "vera-viewer"}
    assert "no role" in rows["nils-norole"]
    assert "operator" in rows["otto-operator"] and "Deactivated" in rows["otto-operator"]
    assert "viewer" in rows["vera-viewer"] and "Active" in rows["vera-viewer"]
    assert "Never" not in rows["vera-viewer"] and "Never" in rows["otto-operator"]
    assert 'action="/users/new/"' in page  # the "New user" button


# --- Nobody locks the admins out --------------------------------------------------------------
def test_an_admin_cannot_deactivate_themself(client_as, admin_user):
    response = client_as("admin").post(
        reverse("user-deactivate", args=[admin_user.pk]), follow=True
    )

    assert "You cannot deactivate your own account." in response.text
    admin_user.refresh_from_db()
    assert admin_user.is_active
    assert not user_events().exists()


def test_the_last_admin_cannot_step_down_to_a_weaker_role(client_as, admin_user):
    url = reverse("user-detail", args=[admin_user.pk])

    response = client_as("admin").post(url, {"role": "viewer"})

    assert response.status_code == 200
    assert "ada-admin is the last active admin" in response.text
    assert role_of(User.objects.get(pk=admin_user.pk)) == "admin"
    assert not user_events().exists()


def test_the_last_active_admin_cannot_be_deactivated_by_anyone(admin_user):
    # The pages never get here (an admin is acting, so the target is not the last one), but a
    # script or the admin site acting for someone else could.
    other = make_user("ann-admin", "admin")
    services.update_user(admin_user, other, is_active=False)

    with pytest.raises(ValidationError) as refused:
        services.update_user(None, admin_user, is_active=False)

    assert refused.value.error_dict["is_active"][0].code == "last_admin"
    admin_user.refresh_from_db()
    assert admin_user.is_active
    assert user_events().count() == 1  # only the first, allowed deactivation


def test_with_two_admins_one_may_deactivate_the_other(client_as, admin_user):
    other = make_user("ann-admin", "admin")

    client_as("admin").post(reverse("user-deactivate", args=[other.pk]))

    other.refresh_from_db()
    assert not other.is_active
    assert not log_in("ann-admin", PASSWORD)[1]


# --- Admins only ------------------------------------------------------------------------------
def users_pages(someone):
    return [
        reverse("user-list"),
        reverse("user-create"),
        reverse("user-detail", args=[someone.pk]),
    ]


@pytest.mark.parametrize("identity", ["norole", "viewer", "operator"])
def test_only_admins_reach_the_users_pages(client_as, people, identity):
    client = client_as(identity)
    for url in users_pages(people["viewer"]):
        assert client.get(url).status_code == 403, url


def test_anonymous_visitors_are_sent_to_log_in(client_as, viewer):
    for url in users_pages(viewer):
        response = client_as("anonymous").get(url)
        assert response.status_code == 302 and response["Location"] == f"/login/?next={url}"


@pytest.mark.parametrize("identity", ["norole", "viewer", "operator"])
def test_a_forged_post_from_a_non_admin_changes_nothing(client_as, people, identity):
    target = make_user("tess-target", "viewer")
    client = client_as(identity)
    forged = {
        reverse("user-create"): {"username": "mallory", "role": "admin", "password": PASSWORD},
        reverse("user-detail", args=[target.pk]): {"role": "admin"},
        reverse("user-deactivate", args=[target.pk]): {},
        reverse("user-invite", args=[target.pk]): {},
        # and on themself, the one user a non-admin might hope to promote
        reverse("user-detail", args=[people[identity].pk]): {"role": "admin"},
    }

    for url, data in forged.items():
        assert client.post(url, data).status_code == 403, url

    assert not User.objects.filter(username="mallory").exists()
    target.refresh_from_db()
    assert target.is_active and role_of(target) == "viewer"
    assert role_of(User.objects.get(pk=people[identity].pk)) in (None, identity)
    assert not user_events().exists()


def test_the_users_link_is_in_the_nav_for_admins_only_and_lit_on_users_pages(client_as, viewer):
    admin = client_as("admin")
    lit = f'<a href="{reverse("user-list")}" aria-current="page">Users</a>'
    for url in users_pages(viewer):
        assert lit in admin.get(url).text, url
    assert ">Users</a>" in admin.get(reverse("mirror-list")).text
    assert lit not in admin.get(reverse("mirror-list")).text
    for identity in ("viewer", "operator"):
        assert ">Users</a>" not in client_as(identity).get(reverse("mirror-list")).text


def test_every_field_of_the_users_forms_has_a_label_in_words_and_a_help_text(client_as, viewer):
    admin = client_as("admin")
    for url in (reverse("user-create"), reverse("user-detail", args=[viewer.pk])):
        page = admin.get(url).text
        form = page[page.index('<form method="post"') :]
        names = set(re.findall(r'name="(\w+)"', form)) - {"csrfmiddlewaretoken"}
        assert names, url
        for name in names:
            label = re.search(rf'<label for="id_{name}">([^<]+)</label>', form).group(1)
            assert " " in label or label.istitle(), label  # words, not `field_name`
            assert "_" not in label, label
            assert f'id="id_{name}_helptext"' in form, name


# --- The admin site: the same rules, and the roles visible as groups ---------------------------
def test_the_admin_site_lists_each_role_group_with_its_users_but_edits_none(client_as, people):
    admin = client_as("admin")
    viewers = Group.objects.get(name="viewer")

    listing = admin.get("/admin/auth/group/").text
    detail = admin.get(f"/admin/auth/group/{viewers.pk}/change/").text

    assert '<td class="field-usernames">vera-viewer</td>' in listing
    assert '<td class="field-usernames">otto-operator</td>' in listing
    assert '<div class="readonly">vera-viewer</div>' in detail and 'name="_save"' not in detail
    assert admin.get("/admin/auth/group/add/").status_code == 403
    assert admin.post(f"/admin/auth/group/{viewers.pk}/change/", {"name": "x"}).status_code == 403
    assert admin.post(f"/admin/auth/group/{viewers.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Group.objects.get(pk=viewers.pk).name == "viewer"
    assert client_as("operator").get("/admin/auth/group/").status_code == 302  # to its login


def test_the_admin_site_refuses_to_lock_the_admin_out_with_a_form_error(client_as, admin_user):
    form = {"email": "", "role": "admin", "is_active": "", "new_password": ""}

    response = client_as("admin").post(f"/admin/auth/user/{admin_user.pk}/change/", form)

    assert response.status_code == 200
    assert "You cannot deactivate your own account." in response.text
    admin_user.refresh_from_db()
    assert admin_user.is_active
    assert not user_events().exists()
