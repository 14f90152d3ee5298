"""Two decisions on one pending member or DN update, sent at the same moment: exactly one wins,
the other is a 409, and the audit trail holds one decision (issue #9 item 6).

Each round lines the two API calls up on a barrier, on threads with their own database
connections (transactional tests), on SQLite and again on PostgreSQL in the services pass.
"""

import threading

import pytest
from django.db import connection

from accounts.models import AuditEvent
from members import services
from members.models import Member, PendingDNUpdate
from tests import factories
from tests.api.conftest import bearer

pytestmark = [pytest.mark.api, pytest.mark.django_db(transaction=True)]
V1 = "/api/v1"
ROUNDS = 8


def at_once(secret: str, *paths: str) -> list[int]:
    """POST each path from its own thread, all released together; their status codes."""
    barrier = threading.Barrier(len(paths))
    codes: list[int | None] = [None] * len(paths)

    def call(i: int, path: str) -> None:
        client = bearer(secret)
        try:
            barrier.wait(timeout=10)
            codes[i] = client.post(path).status_code
        finally:
            connection.close()  # this thread's connection

    threads = [threading.Thread(target=call, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(c is not None for c in codes), codes
    return codes


def events(action: str, obj) -> int:
    return AuditEvent.objects.filter(action=action, object_id=str(obj.pk)).count()


def pending_member(world, n: int) -> Member:
    member = factories.member(world.mirror, world.someone, name=f"RACE{n}", member_type="dr")
    assert member.authorization == Member.PENDING  # a TLS mirror's new member waits
    return member


def test_authorizing_one_member_twice_at_once_authorizes_it_once(world):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        member = pending_member(world, n)
        path = V1 + f"/pending-members/{member.pk}/authorize/"

        codes = at_once(secret, path, path)

        assert sorted(codes) == [200, 409]
        member.refresh_from_db()
        assert member.authorization == Member.AUTHORIZED
        assert events("member.authorize", member) == 1


def test_authorize_against_reject_leaves_one_decision(world):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        member = pending_member(world, n)
        base = V1 + f"/pending-members/{member.pk}/"

        codes = at_once(secret, base + "authorize/", base + "reject/")

        authorized = events("member.authorize", member)
        rejected = events("member.reject", member)
        assert authorized + rejected == 1
        still_there = Member.objects.filter(pk=member.pk).first()
        if authorized:
            assert codes == [200, 409] and still_there.authorization == Member.AUTHORIZED
        else:
            # the authorization lost: refused (409), or it came after the removal (404)
            assert codes[1] == 204 and codes[0] in (404, 409) and still_there is None


def test_a_dn_update_decided_twice_at_once_matches_the_members_dn(world):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        new_dn = f"CN=alpha1-{n},O=Example"
        update = services.request_dn_update(world.someone, world.member, new_dn)
        base = V1 + f"/dn-updates/{update.pk}/"
        dn_before = Member.objects.get(pk=world.member.pk).x509_dn

        codes = at_once(secret, base + "authorize/", base + "reject/")

        assert sorted(codes) == [200, 409]
        update.refresh_from_db()
        dn_after = Member.objects.get(pk=world.member.pk).x509_dn
        if update.state == PendingDNUpdate.AUTHORIZED:
            assert dn_after == new_dn and events("dn_update.reject", update) == 0
        else:
            assert update.state == PendingDNUpdate.REJECTED
            assert dn_after == dn_before and events("dn_update.authorize", update) == 0
