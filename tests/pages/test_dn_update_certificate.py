"""A DN update shows the certificate that presented it (docs/hardening.md, "Membership"): the
portal records the SHA-256 fingerprint and issuer the primary reports with each pending DN
update, shows them beside the DN on the mirror page, and gives them in the API."""

from django.urls import reverse
from rest_framework.test import APIClient

from accounts import services as account_services
from members.models import PendingDNUpdate
from members.reconcile import _record_dn_updates
from members.sync import MirrorView
from tests import factories

FP = ":".join(["AB", "CD", "EF", "01"] * 8)
OTHER_FP = ":".join(["12", "34", "56", "78"] * 8)
ISSUER = "CN=DEMO throwaway CA,O=Mirror Portal"


def view(dn: str, fingerprint: str | None) -> MirrorView:
    certs = {} if fingerprint is None else {"NODEA": {"fingerprint": fingerprint, "issuer": ISSUER}}
    return MirrorView(
        name="ALPHA",
        settings={},
        primary="NODEA",
        source="NODEA",
        dn_updates={"NODEA": dn},
        dn_update_certs=certs,
    )


def test_the_fingerprint_and_issuer_are_recorded_and_another_certificate_is_a_new_request(
    world, admin_user
):
    member = world.member
    world.dn_update.delete()
    members = {member.name: member}
    changes = []
    _record_dn_updates(admin_user, view("CN=nodea-renewed,O=Example", FP), members, changes)
    update = PendingDNUpdate.objects.get(member=member, state=PendingDNUpdate.PENDING)
    assert (update.new_dn, update.fingerprint, update.issuer) == (
        "CN=nodea-renewed,O=Example",
        FP,
        ISSUER,
    )
    assert f"SHA-256 {FP}, issuer {ISSUER}" in changes[0]
    # read again: nothing new
    _record_dn_updates(admin_user, view("CN=nodea-renewed,O=Example", FP), members, changes)
    assert PendingDNUpdate.objects.filter(member=member).count() == 1
    # the same DN from another certificate (after the first was decided on the primary) is
    # another request: the operator never authorizes a certificate the page did not show
    _record_dn_updates(admin_user, view("CN=nodea-renewed,O=Example", OTHER_FP), members, changes)
    rows = PendingDNUpdate.objects.filter(member=member).order_by("pk")
    assert [(r.fingerprint, r.state) for r in rows] == [
        (FP, PendingDNUpdate.REJECTED),
        (OTHER_FP, PendingDNUpdate.PENDING),
    ]


def test_a_row_recorded_without_a_certificate_gets_it_when_the_primary_reports_it(
    world, admin_user
):
    assert world.dn_update.fingerprint == ""
    members = {world.member.name: world.member}
    _record_dn_updates(admin_user, view(world.dn_update.new_dn, FP), members, [])
    world.dn_update.refresh_from_db()
    assert (world.dn_update.fingerprint, world.dn_update.issuer) == (FP, ISSUER)
    assert world.dn_update.state == PendingDNUpdate.PENDING


def test_the_mirror_page_shows_the_certificate_beside_the_new_dn(client_as, world):
    update = factories.dn_update(
        factories.member(
            world.mirror, name="NODEC", member_type="dr", x509_dn="CN=NODEC,O=Example"
        ),
        "CN=nodec-renewed,O=Example",
        fingerprint=FP,
        issuer=ISSUER,
    )
    html = client_as("viewer").get(reverse("mirror-detail", args=["ALPHA"])).text
    row = html[html.index('<th scope="row">NODEC</th>', html.index("dn-heading")) :]
    row = row[: row.index("</tr>")]
    assert "CN=nodec-renewed,O=Example" in row
    assert f'<code class="fingerprint">{FP}</code>' in row and ISSUER in row
    # an update the primary gave no certificate for says so with a dash
    old = html[html.index('<th scope="row">NODEA</th>', html.index("dn-heading")) :]
    assert "<td data-certificate>—</td>" in old[: old.index("</tr>")]
    assert update.pk


def test_the_api_gives_the_fingerprint_and_issuer_read_only(world, admin_user):
    update = factories.dn_update(
        factories.member(
            world.mirror, name="NODEC", member_type="dr", x509_dn="CN=NODEC,O=Example"
        ),
        "CN=nodec-renewed,O=Example",
        fingerprint=FP,
        issuer=ISSUER,
    )
    _, secret = account_services.create_token(admin_user, name="script")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    body = client.get(f"/api/v1/dn-updates/{update.pk}/").json()
    assert (body["new_dn"], body["fingerprint"], body["issuer"]) == (
        "CN=nodec-renewed,O=Example",
        FP,
        ISSUER,
    )
