"""The Django admin obeys the same rules as every other entry point and audits its changes."""

import pytest
from django.test import Client

from accounts.models import AuditEvent
from members.models import Member, Mirror
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


MIRROR_FORM = {
    "name": "adm1",
    "requires_tls": "on",
    "arbiter_host": "",
    "arbiter_port": "2188",
    "vip_interface": "",
    "failover_compression": "System Selected",
    "failover_compression_type": "zlib",
    "async_compression": "System Selected",
    "async_compression_type": "zlib",
    "qos_timeout_ms": "8000",
    "parallel_dejournaling": "failover+dr",
    "members-TOTAL_FORMS": "0",
    "members-INITIAL_FORMS": "0",
}


def test_an_admin_creates_a_mirror_in_the_admin_and_it_is_audited(admin_browser):
    response = admin_browser.post("/admin/members/mirror/add/", MIRROR_FORM)
    assert response.status_code == 302, response.content[:2000]
    mirror = Mirror.objects.get()
    assert mirror.name == "ADM1"
    assert AuditEvent.objects.filter(action="mirror.create", object_id=str(mirror.pk)).exists()


def test_the_admin_refuses_an_invalid_mirror_name_with_the_rules_message(admin_browser):
    response = admin_browser.post("/admin/members/mirror/add/", {**MIRROR_FORM, "name": "bad-1"})
    assert response.status_code == 200
    assert b"must be 1-15 letters or digits" in response.content
    assert not Mirror.objects.exists()


def test_the_admin_refuses_a_third_failover_member(admin_browser):
    mirror = factories.mirror()
    factories.member(mirror)
    factories.member(mirror)
    host = factories.host()
    response = admin_browser.post(
        "/admin/members/member/add/",
        {
            "mirror": mirror.pk,
            "host": host.pk,
            "name": "third",
            "member_type": "failover",
            "superserver_address": host.address,
            "superserver_port": "1972",
            "agent_port": "2188",
            "authorization": "authorized",
        },
    )
    assert response.status_code == 200
    assert b"already has 2 failover members" in response.content
    assert Member.objects.filter(mirror=mirror).count() == 2


def test_a_mirrors_name_is_read_only_when_editing_in_the_admin(admin_browser):
    mirror = factories.mirror(name="fixed")
    form = {**MIRROR_FORM, "name": "changed", "qos_timeout_ms": "9000"}
    response = admin_browser.post(f"/admin/members/mirror/{mirror.pk}/change/", form)
    assert response.status_code == 302
    mirror.refresh_from_db()
    assert (mirror.name, mirror.qos_timeout_ms) == ("FIXED", 9000)
    event = AuditEvent.objects.get(action="mirror.update")
    assert (event.before["qos_timeout_ms"], event.after["qos_timeout_ms"]) == (8000, 9000)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_admin_site_is_closed_to_viewers_and_operators(users, role):
    client = Client()
    client.force_login(users[role])
    response = client.get("/admin/members/mirror/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
