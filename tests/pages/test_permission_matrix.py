"""Every page and every POST action against anonymous / no-role / viewer / operator / admin.

Anonymous visitors are sent to the login page, users without a role get 403, a viewer reads
everything but the admin site, an operator also runs operations, an admin also decides.
"""

import pytest
from django.urls import reverse

from tests.pages.conftest import IDENTITIES

LOGIN = "/login/?next="
ADMIN_LOGIN = "/admin/login/?next="

# page -> expected outcome per identity: a status code, or ("redirect", login page to go to).
READ = {
    "anonymous": ("redirect", LOGIN),
    "norole": 403,
    "viewer": 200,
    "operator": 200,
    "admin": 200,
}
ADMIN_SITE = {
    "anonymous": ("redirect", ADMIN_LOGIN),
    "norole": ("redirect", ADMIN_LOGIN),
    "viewer": ("redirect", ADMIN_LOGIN),
    "operator": ("redirect", ADMIN_LOGIN),
    "admin": 200,
}


def pages(world):
    return {
        "mirror list": reverse("mirror-list"),
        "mirror detail": reverse("mirror-detail", args=[world.mirror.name]),
        "host list": reverse("host-list"),
        "job list": reverse("job-list"),
        "job detail": reverse("job-detail", args=[world.job.pk]),
        "token list": reverse("token-list"),
        "audit list": reverse("audit-list"),
    }


PAGE_NAMES = [
    "mirror list",
    "mirror detail",
    "host list",
    "job list",
    "job detail",
    "token list",
    "audit list",
]


def assert_outcome(response, expected, url):
    if isinstance(expected, tuple):
        assert response.status_code == 302, response.content[:300]
        assert response["Location"] == expected[1] + url
    else:
        assert response.status_code == expected, response.content[:300]


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("page", PAGE_NAMES)
def test_every_page_admits_exactly_the_roles_that_may_read_it(client_as, world, page, identity):
    url = pages(world)[page]
    response = client_as(identity).get(url)
    assert_outcome(response, READ[identity], url)


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize(
    "url", ["/admin/", "/admin/members/mirror/", "/admin/accounts/auditevent/"]
)
def test_admin_site_is_for_the_admin_role_only(client_as, world, url, identity):
    assert_outcome(client_as(identity).get(url), ADMIN_SITE[identity], url)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_login_page_is_open_to_everyone_signed_out(client_as, identity):
    response = client_as(identity).get(reverse("login"))
    if identity == "anonymous":
        assert response.status_code == 200
        assert b'name="password"' in response.content
    else:  # already signed in: straight on to the mirrors
        assert response.status_code == 302
        assert response["Location"] == reverse("mirror-list")


# POST actions: (url builder, where a permitted request redirects, lowest role allowed).
def actions(world):
    name = world.mirror.name
    jobs = "/jobs/"  # an operation on the members starts its job and shows it
    return {
        "authorize member": (
            reverse("member-authorize", args=[name, world.pending.pk]),
            jobs,
            "admin",
        ),
        "reject member": (reverse("member-reject", args=[name, world.pending.pk]), jobs, "admin"),
        "authorize DN": (
            reverse("dn-update-authorize", args=[name, world.dn_update.pk]),
            jobs,
            "admin",
        ),
        "reject DN": (
            reverse("dn-update-reject", args=[name, world.dn_update.pk]),
            jobs,
            "admin",
        ),
        "check host": (reverse("host-check", args=[world.host.pk]), jobs, "operator"),
        "refresh mirror": (reverse("mirror-refresh", args=[name]), jobs, "operator"),
        "revoke token": (None, reverse("token-list"), "viewer"),
    }


RANK = {"anonymous": 0, "norole": 0, "viewer": 1, "operator": 2, "admin": 3}
ACTION_NAMES = [
    "authorize member",
    "reject member",
    "authorize DN",
    "reject DN",
    "check host",
    "refresh mirror",
    "revoke token",
]


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("action", ACTION_NAMES)
def test_every_post_action_admits_exactly_the_roles_allowed_to_run_it(
    client_as, people, world, action, identity
):
    url, success_prefix, lowest = actions(world)[action]
    if action == "revoke token":
        from accounts.services import create_token

        owner = people[identity] or people["viewer"]
        token, _ = create_token(owner, name="script")
        url = reverse("token-revoke", args=[token.pk])
    # the mirror's name, which rejecting a member needs (the other actions ignore it)
    response = client_as(identity).post(url, {"confirm": world.mirror.name})
    if identity == "anonymous":
        assert response.status_code == 302
        assert response["Location"] == LOGIN + url
    elif RANK[identity] < RANK[lowest] or identity == "norole":
        assert response.status_code == 403
    else:
        assert response.status_code == 302, response.content[:300]
        assert response["Location"].startswith(success_prefix)


@pytest.mark.parametrize("identity", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("name", ["member-authorize", "host-check", "token-revoke"])
def test_actions_refuse_get(client_as, world, identity, name):
    args = {
        "member-authorize": [world.mirror.name, world.pending.pk],
        "host-check": [world.host.pk],
        "token-revoke": [1],
    }[name]
    response = client_as(identity).get(reverse(name, args=args))
    # A role too weak for the action learns only that; a strong enough one is told to POST.
    allowed = {"member-authorize": "admin", "host-check": "operator", "token-revoke": "viewer"}
    assert response.status_code == (405 if RANK[identity] >= RANK[allowed[name]] else 403)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_token_creation_is_open_to_every_role(client_as, identity):
    response = client_as(identity).post(reverse("token-list"), {"name": "ci"})
    expected = {"anonymous": 302, "norole": 403}.get(identity, 200)
    assert response.status_code == expected
