"""Disaster recovery through the API (members.failover_actions, guide §5.5, §6.3): a DR async
promoted to primary while no primary runs, in two steps — the preview, then the mirror's name
typed — with a partner (one of the failover members) or none, and ValidatedMember cleared on a
stopped former failover member. As in test_operations.py no worker runs: these are the
request's side, the refusals and the jobs queued. What the jobs do on real members is
tests/e2e/test_disaster_recovery_through_the_portal.py."""

from django.utils import timezone

from engine import rules as catalog
from members.models import Member
from tasks.models import Job
from tests import factories

V1 = "/api/v1"


def post(api, member, verb, body=None):
    return api.post(V1 + f"/members/{member.pk}/{verb}/", body or {}, format="json")


def reports(member, status):
    Member.objects.filter(pk=member.pk).update(status=status, observed_at=timezone.now())


def field_refusal(response) -> dict:
    (refusal,) = [e for errors in response.json()["error"]["fields"].values() for e in errors]
    return refusal


# --- promoting a DR async to primary ------------------------------------------------------------
def test_the_preview_changes_nothing_and_names_the_partner_or_none(world, api):
    alone = post(api, world.dr, "promote-to-primary/preview")
    partnered = post(api, world.dr, "promote-to-primary/preview", {"partner": "alpha1"})

    assert (alone.status_code, partnered.status_code) == (202, 202)
    jobs = [Job.objects.get(pk=r.json()["id"]) for r in (alone, partnered)]
    assert [(j.kind, j.member, j.params) for j in jobs] == [
        ("preview_promote_to_primary", world.dr, {"partner": None}),
        ("preview_promote_to_primary", world.dr, {"partner": "ALPHA1"}),
    ]


def test_a_dr_async_is_promoted_to_primary_once_the_mirrors_name_is_typed(world, api):
    unconfirmed = post(api, world.dr, "promote-to-primary", {"confirm": "ALPH"})
    promoted = post(api, world.dr, "promote-to-primary", {"confirm": "alpha", "partner": ""})

    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["error"]["fields"]["confirm"][0]["code"] == "not_confirmed"
    assert promoted.status_code == 202
    job = Job.objects.get(pk=promoted.json()["id"])
    assert (job.kind, job.member, job.mirror) == ("promote_to_primary", world.dr, world.mirror)
    assert job.params == {"partner": None}
    assert Job.objects.filter(kind="promote_to_primary").count() == 1


def test_only_a_dr_async_is_promoted_to_primary(world, api):
    reporting = factories.member(world.mirror, name="ALPHARO", member_type=catalog.RO_REPORTING)

    for member in (world.member, reporting):
        for verb, body in [("promote-to-primary/preview", {}), ("promote-to-primary", {})]:
            response = post(api, member, verb, body | {"confirm": "alpha"})

            assert response.status_code == 400, (member.name, verb)
            refusal = field_refusal(response)
            assert refusal["code"] == "not_dr" and member.name in refusal["message"]
    assert not Job.objects.filter(member__in=[world.member, reporting]).exists()


def test_no_dr_async_is_promoted_to_primary_while_a_member_says_it_is_the_primary(world, api):
    reports(world.member, catalog.IN_TROUBLE)  # a primary in trouble is still the primary

    preview = post(api, world.dr, "promote-to-primary/preview")
    promoted = post(api, world.dr, "promote-to-primary", {"confirm": "alpha"})

    assert (preview.status_code, promoted.status_code) == (409, 409)
    error = promoted.json()["error"]
    assert error["code"] == "has_primary" and "ALPHA1" in error["message"]
    assert "Promote to failover" in error["message"]
    assert not Job.objects.filter(member=world.dr).exists()


def test_the_partner_is_one_of_the_mirrors_failover_members(world, api):
    factories.member(world.mirror, name="ALPHARO", member_type=catalog.RO_REPORTING)

    for partner, code in [("nobody", "unknown_member"), ("alpharo", "partner_not_failover")]:
        confirmed = {"confirm": "alpha", "partner": partner}
        for verb in ("promote-to-primary/preview", "promote-to-primary"):
            response = post(api, world.dr, verb, confirmed)

            assert response.status_code == 400, (partner, verb)
            assert response.json()["error"]["fields"]["partner"][0]["code"] == code
    assert not Job.objects.filter(member=world.dr).exists()


def test_a_pending_dr_async_is_not_promoted_to_primary(world, api):
    Member.objects.filter(pk=world.dr.pk).update(authorization=Member.PENDING)

    response = post(api, world.dr, "promote-to-primary", {"confirm": "alpha"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_authorized"


def test_a_second_promotion_to_primary_while_the_first_is_under_way_is_a_conflict(world, api):
    first = post(api, world.dr, "promote-to-primary", {"confirm": "alpha"})
    second = post(api, world.dr, "promote-to-primary", {"confirm": "alpha"})

    assert first.status_code == 202
    assert second.status_code == 409 and second.json()["error"]["code"] == "in_progress"


def test_a_mirror_gets_one_primary_at_a_time_forcing_and_promoting_exclude_each_other(world, api):
    promoting = post(api, world.dr, "promote-to-primary", {"confirm": "alpha"})
    forcing = post(api, world.member, "force-primary", {"confirm": "alpha"})

    assert promoting.status_code == 202
    assert forcing.status_code == 409
    error = forcing.json()["error"]
    assert (
        error["code"] == "in_progress"
        and "ALPHAPROMO is being made the primary" in (error["message"])
    )
    assert not Job.objects.filter(kind="force_primary").exists()
    # once the promotion has ended, forcing may start (the members then decide)
    Job.objects.filter(kind="promote_to_primary").update(state=Job.FAILED)
    assert post(api, world.member, "force-primary", {"confirm": "alpha"}).status_code == 202
    again = post(api, world.dr, "promote-to-primary", {"confirm": "alpha"})
    assert again.status_code == 409 and "ALPHA1 is being made" in again.json()["error"]["message"]


# --- clearing ValidatedMember ---------------------------------------------------------------------
def test_validated_member_is_cleared_on_a_stopped_failover_member_or_former_one(world, api):
    reports(world.member, catalog.DOWN)

    for member in (world.member, world.stopped):  # a failover member; one made DR, Down
        response = post(api, member, "clear-validated-member")

        assert response.status_code == 202, member.name
        job = Job.objects.get(pk=response.json()["id"])
        assert (job.kind, job.member, job.params) == ("clear_validated_member", member, {})


def test_validated_member_is_not_cleared_on_a_member_last_seen_running(world, api):
    for status in (catalog.BACKUP, catalog.PRIMARY, ""):
        reports(world.member, status)

        response = post(api, world.member, "clear-validated-member")

        assert response.status_code == 409, status
        error = response.json()["error"]
        assert error["code"] == "not_down" and "stopped instance" in error["message"]
    assert not Job.objects.filter(kind="clear_validated_member").exists()


def test_a_reporting_async_has_no_validated_member(world, api):
    reporting = factories.member(
        world.mirror, name="ALPHARO", member_type=catalog.RO_REPORTING, status=catalog.DOWN
    )

    response = post(api, reporting, "clear-validated-member")

    assert response.status_code == 400
    assert field_refusal(response)["code"] == "not_failover"


def test_only_admins_promote_to_primary_and_clear_validated_member(world, client_for):
    for role in ("viewer", "operator"):
        caller = client_for(role)
        assert post(caller, world.dr, "promote-to-primary/preview").status_code == 403, role
        assert post(caller, world.dr, "promote-to-primary", {"confirm": "alpha"}).status_code == 403
        assert post(caller, world.stopped, "clear-validated-member").status_code == 403
    assert not Job.objects.filter(member__in=[world.dr, world.stopped]).exists()
