"""The failover operations through the API (members.failover_actions): a graceful stop, no
failover, and forcing a primary in two steps — the preview, then the mirror's name typed. As in
test_operations.py no worker runs: these are the request's side, the refusals and the jobs queued.
What the jobs do on real members is tests/e2e/test_failover_through_the_portal.py."""

from engine import rules as catalog
from members.models import Member
from tasks.models import Job
from tests import factories

V1 = "/api/v1"


def post(api, member, verb, body=None):
    return api.post(V1 + f"/members/{member.pk}/{verb}/", body or {}, format="json")


def reports(member, status):
    Member.objects.filter(pk=member.pk).update(status=status)


def test_no_failover_is_refused_on_an_async_and_starts_nothing(world, api):
    dr = factories.member(world.mirror, name="ALPHADR", member_type=catalog.DR)

    for verb in ("set-no-failover", "clear-no-failover", "force-primary/preview"):
        response = post(api, dr, verb)

        assert response.status_code == 400, verb
        (refusal,) = [e for errors in response.json()["error"]["fields"].values() for e in errors]
        assert refusal["code"] == "not_failover" and "ALPHADR" in refusal["message"]
    assert not Job.objects.filter(member=dr).exists()


def test_any_member_can_be_stopped_gracefully(world, api):
    dr = factories.member(world.mirror, name="ALPHADR", member_type=catalog.DR)

    response = post(api, dr, "stop-instance")

    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["id"]).kind == "stop_instance"


def test_forcing_a_primary_needs_the_mirrors_name_typed(world, api):
    response = post(api, world.member, "force-primary", {"confirm": "ALPHA1"})

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["confirm"][0]["code"] == "not_confirmed"
    assert not Job.objects.filter(kind="force_primary").exists()


def test_a_member_that_says_it_is_primary_cannot_be_forced_to_become_it(world, api):
    reports(world.member, catalog.PRIMARY)

    preview = post(api, world.member, "force-primary/preview")
    forced = post(api, world.member, "force-primary", {"confirm": "alpha"})

    assert (preview.status_code, forced.status_code) == (409, 409)
    assert forced.json()["error"]["code"] == "already_primary"


def test_no_member_is_forced_while_another_says_it_is_the_primary(world, api):
    reports(world.pending, catalog.IN_TROUBLE)  # a primary in trouble is still the primary

    response = post(api, world.member, "force-primary", {"confirm": "alpha"})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "has_primary" and "ALPHA2" in error["message"]


def test_a_second_forcing_while_the_first_is_under_way_is_a_conflict(world, api):
    first = post(api, world.member, "force-primary", {"confirm": "alpha"})
    second = post(api, world.member, "force-primary", {"confirm": "alpha"})

    assert first.status_code == 202
    assert second.status_code == 409 and second.json()["error"]["code"] == "in_progress"


def test_the_preview_changes_nothing_and_needs_no_confirmation(world, api):
    response = post(api, world.member, "force-primary/preview")

    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.kind, job.member, job.params) == ("preview_force_primary", world.member, {})


def test_operators_stop_and_set_no_failover_but_only_admins_force_a_primary(world, client_for):
    operator = client_for("operator")

    assert post(operator, world.member, "stop-instance").status_code == 202
    assert post(operator, world.member, "set-no-failover").status_code == 202
    assert post(operator, world.member, "force-primary/preview").status_code == 403
    assert post(operator, world.member, "force-primary", {"confirm": "alpha"}).status_code == 403


def test_the_primary_is_not_rebuilt_since_the_mirror_takes_its_data_from_it(world, api):
    reports(world.member, catalog.IN_TROUBLE)

    preview = post(api, world.member, "rebuild/preview")
    rebuilt = post(api, world.member, "rebuild", {"confirm": "alpha"})

    assert (preview.status_code, rebuilt.status_code) == (409, 409)
    assert rebuilt.json()["error"]["code"] == "primary"
    assert not Job.objects.filter(kind__in=["rebuild_member", "preview_rebuild_member"]).exists()


def test_a_member_last_seen_down_is_not_rebuilt(world, api):
    reports(world.member, catalog.DOWN)

    response = post(api, world.member, "rebuild/preview")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "member_down"


def test_rebuilding_needs_the_mirrors_name_typed_an_admin_and_one_at_a_time(world, api, client_for):
    reports(world.member, catalog.WAITING)
    operator = client_for("operator")

    assert post(operator, world.member, "rebuild/preview").status_code == 403
    untyped = post(api, world.member, "rebuild", {"confirm": "ALPHA1"})
    first = post(api, world.member, "rebuild", {"confirm": "alpha"})
    second = post(api, world.member, "rebuild", {"confirm": "alpha"})

    assert untyped.json()["error"]["fields"]["confirm"][0]["code"] == "not_confirmed"
    assert first.status_code == 202
    assert Job.objects.get(pk=first.json()["id"]).kind == "rebuild_member"
    assert second.status_code == 409 and second.json()["error"]["code"] == "in_progress"


def test_a_member_shows_no_failover_as_it_last_answered(world, api):
    Member.objects.filter(pk=world.member.pk).update(no_failover=True)

    row = api.get(V1 + f"/members/{world.member.pk}/").json()

    assert row["no_failover"] is True


# --- promotion and demotion (guide §5.5, §5.6) ------------------------------------------------
def dr_member(world, **fields):
    fields.setdefault("mirror_private_address", "10.0.0.9")
    fields.setdefault("authorization", Member.AUTHORIZED)
    return factories.member(world.mirror, name="ALPHADR", member_type=catalog.DR, **fields)


def test_a_dr_async_is_promoted_once_the_mirrors_name_is_typed(world, api):
    dr = dr_member(world)

    unconfirmed = post(api, dr, "promote", {"confirm": "ALPH"})
    promoted = post(api, dr, "promote", {"confirm": "alpha"})

    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["error"]["fields"]["confirm"][0]["code"] == "not_confirmed"
    assert promoted.status_code == 202
    job = Job.objects.get(pk=promoted.json()["id"])
    assert (job.kind, job.member, job.mirror) == ("promote_member", dr, world.mirror)
    assert Job.objects.filter(kind="promote_member").count() == 1


def test_only_a_dr_async_is_promoted(world, api):
    reporting = factories.member(world.mirror, name="ALPHARO", member_type=catalog.RO_REPORTING)

    for member in (world.member, reporting):
        response = post(api, member, "promote", {"confirm": "alpha"})

        assert response.status_code == 400, member.name
        (refusal,) = [e for errors in response.json()["error"]["fields"].values() for e in errors]
        assert refusal["code"] == "not_dr" and member.name in refusal["message"]
    assert not Job.objects.filter(kind="promote_member").exists()


def test_a_dr_async_without_a_mirror_private_address_is_not_promoted(world, api):
    dr = dr_member(world, mirror_private_address="")

    response = post(api, dr, "promote", {"confirm": "alpha"})

    assert response.status_code == 400
    (refusal,) = [e for errors in response.json()["error"]["fields"].values() for e in errors]
    assert refusal["code"] == "no_private_address"
    assert not Job.objects.filter(kind="promote_member").exists()


def test_a_second_promotion_while_the_first_is_under_way_is_a_conflict(world, api):
    dr = dr_member(world)

    first = post(api, dr, "promote", {"confirm": "alpha"})
    second = post(api, dr, "promote", {"confirm": "alpha"})

    assert first.status_code == 202
    assert second.status_code == 409 and second.json()["error"]["code"] == "in_progress"


def test_the_backup_is_demoted_once_the_mirrors_name_is_typed(world, api):
    reports(world.member, catalog.BACKUP)

    unconfirmed = post(api, world.member, "demote", {})
    demoted = post(api, world.member, "demote", {"confirm": "ALPHA"})

    assert unconfirmed.status_code == 400
    assert demoted.status_code == 202
    job = Job.objects.get(pk=demoted.json()["id"])
    assert (job.kind, job.member) == ("demote_member", world.member)


def test_the_primary_is_not_demoted(world, api):
    reports(world.member, catalog.PRIMARY)

    response = post(api, world.member, "demote", {"confirm": "alpha"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "is_primary"
    assert not Job.objects.filter(kind="demote_member").exists()


def test_an_async_is_not_demoted(world, api):
    dr = dr_member(world)

    response = post(api, dr, "demote", {"confirm": "alpha"})

    assert response.status_code == 400
    (refusal,) = [e for errors in response.json()["error"]["fields"].values() for e in errors]
    assert refusal["code"] == "not_failover"


def test_only_admins_promote_and_demote(world, client_for):
    dr = dr_member(world)

    for role in ("viewer", "operator"):
        caller = client_for(role)
        assert post(caller, dr, "promote", {"confirm": "alpha"}).status_code == 403, role
        assert post(caller, world.member, "demote", {"confirm": "alpha"}).status_code == 403
    assert not Job.objects.filter(kind__in=["promote_member", "demote_member"]).exists()
