"""A mirror's access page (/mirrors/<name>/access/) and the users pages' part in roles on single
mirrors (docs/access.md): a mirror's admins give, change and take roles on it; everyone else is
refused; the portal's admins make users with no portal-wide role and see each one's mirrors."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import AuditEvent, MirrorRole
from accounts.roles import NO_ROLE
from tests import factories
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"
User = get_user_model()


@pytest.fixture
def alpha(db):
    return factories.mirror(name="ALPHA", requires_tls=False)


@pytest.fixture
def beta(db):
    return factories.mirror(name="BETA", requires_tls=False)


def signed_in(user, password=PASSWORD) -> Client:
    client = Client()
    assert client.login(username=user.username, password=password)
    return client


def only_on(admin, name, mirror, role):
    user = services.create_user(admin, username=name, password=PASSWORD, role=NO_ROLE)
    services.set_mirror_role(admin, user, mirror, role)
    return user


def test_an_admin_of_the_mirror_alone_gives_changes_and_takes_a_role_on_it(
    admin_user, alpha, viewer
):
    owner = only_on(admin_user, "olga-owner", alpha, "admin")
    page = signed_in(owner)
    url = reverse("mirror-access", args=["ALPHA"])

    given = page.post(url, {"username": "VERA-viewer", "role": "operator"}, follow=True)
    assert "vera-viewer is operator of ALPHA." in given.text
    assert MirrorRole.objects.get(user=viewer, mirror=alpha).role == "operator"
    assert '<th scope="row">vera-viewer' in given.text

    page.post(url, {"username": "vera-viewer", "role": "admin"})
    assert MirrorRole.objects.get(user=viewer, mirror=alpha).role == "admin"

    taken = page.post(url, {"username": "vera-viewer", "role": NO_ROLE}, follow=True)
    assert "vera-viewer holds no role on ALPHA now." in taken.text
    assert not MirrorRole.objects.filter(user=viewer).exists()
    assert list(
        AuditEvent.objects.filter(actor=owner).order_by("id").values_list("action", flat=True)
    ) == ["mirror_role.add", "mirror_role.change", "mirror_role.remove"]


def test_an_unknown_user_name_is_said_next_to_the_field_and_changes_nothing(admin_user, alpha):
    owner = only_on(admin_user, "olga-owner", alpha, "admin")

    response = signed_in(owner).post(
        reverse("mirror-access", args=["ALPHA"]), {"username": "ghost", "role": "viewer"}
    )

    assert response.status_code == 400
    assert "No user named ghost." in response.text
    assert MirrorRole.objects.filter(mirror=alpha).count() == 1  # the owner's own


@pytest.mark.parametrize(
    "who, status",
    [("operator of ALPHA", 403), ("admin of BETA", 404), ("portal-wide operator", 403)],
)
def test_only_the_mirrors_admins_reach_its_access_page(admin_user, alpha, beta, who, status):
    user = {
        "operator of ALPHA": lambda: only_on(admin_user, "al-op", alpha, "operator"),
        "admin of BETA": lambda: only_on(admin_user, "bea-admin", beta, "admin"),
        "portal-wide operator": lambda: make_user("otto-operator", "operator"),
    }[who]()
    page = signed_in(user)
    url = reverse("mirror-access", args=["ALPHA"])

    assert page.get(url).status_code == status
    assert page.post(url, {"username": user.username, "role": "admin"}).status_code == status
    assert not MirrorRole.objects.filter(user=user, mirror=alpha, role="admin").exists()


def test_the_mirror_page_links_to_access_for_its_admins_only(admin_user, alpha):
    owner = only_on(admin_user, "olga-owner", alpha, "admin")
    operator = only_on(admin_user, "al-op", alpha, "operator")
    link = f'href="{reverse("mirror-access", args=["ALPHA"])}"'

    assert link in signed_in(owner).get(reverse("mirror-detail", args=["ALPHA"])).text
    assert link not in signed_in(operator).get(reverse("mirror-detail", args=["ALPHA"])).text


def test_a_portal_admin_makes_a_user_with_no_portal_wide_role_who_sees_only_given_mirrors(
    admin_user, alpha, beta
):
    page = signed_in(admin_user)
    page.post(
        reverse("user-create"),
        {"username": "mona-mirror", "role": NO_ROLE, "password": "a long pass phrase 42"},
    )
    mona = User.objects.get(username="mona-mirror")
    assert not mona.groups.exists()
    page.post(
        reverse("mirror-access", args=["BETA"]), {"username": "mona-mirror", "role": "viewer"}
    )

    detail = page.get(reverse("user-detail", args=[mona.pk])).text
    fleet = signed_in(mona, "a long pass phrase 42").get(reverse("mirror-list")).text

    assert "Viewer of <a" in detail and ">BETA</a>" in detail
    assert "/mirrors/BETA/monitor/" in fleet and "/mirrors/ALPHA/monitor/" not in fleet


def test_taking_a_users_portal_wide_role_leaves_their_roles_on_single_mirrors(
    admin_user, alpha, viewer
):
    services.set_mirror_role(admin_user, viewer, alpha, "operator")

    signed_in(admin_user).post(reverse("user-detail", args=[viewer.pk]), {"role": NO_ROLE})

    viewer.refresh_from_db()
    assert not viewer.groups.exists()
    assert signed_in(viewer).get(reverse("mirror-detail", args=["ALPHA"])).status_code == 200
    assert signed_in(viewer).get(reverse("host-list")).status_code == 403


def test_buttons_acting_on_an_instance_shared_with_an_unseen_mirror_are_not_offered(
    admin_user, alpha, beta
):
    """REPORT1's instance reports in ALPHA and BETA (guide §2); ALPHA's admin alone may not
    stop it, rebuild it or open its credentials, so the page does not offer them; ALPHA1, on
    an instance of its own, keeps them."""
    host = factories.host(admin_user, name="reports-host")
    shared = {"host": host, "member_type": "ro_reporting", "status": "Connected"}
    factories.member(alpha, name="ALPHA1", status="Primary")
    report = factories.member(alpha, name="REPORT1", **shared)
    factories.member(beta, name="REPORT1", **shared)
    owner = only_on(admin_user, "olga-owner", alpha, "admin")

    def offered(client):
        html = client.get(reverse("mirror-detail", args=["ALPHA"])).text
        stop = reverse("member-switch", args=["ALPHA", report.pk, "stop-instance"])
        credentials = reverse("app-credentials", args=["ALPHA", report.pk])
        rebuild = reverse("member-rebuild-preview", args=["ALPHA", report.pk])
        return {
            "stop": stop in html,
            "credentials": credentials in html,
            "rebuild": rebuild in html,
        }

    assert offered(signed_in(owner)) == {"stop": False, "credentials": False, "rebuild": False}
    services.set_mirror_role(admin_user, owner, beta, "admin")
    assert offered(signed_in(owner)) == {"stop": True, "credentials": True, "rebuild": True}
