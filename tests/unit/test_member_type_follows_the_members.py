"""A member's type in the portal is what the member reports (members/reconcile.py
record_member_type): a promotion or demotion (guide §5.5, §5.6) changes it, audited with the
member as the actor; a type the portal does not know changes nothing."""

import pytest

from accounts.models import AuditEvent
from members import reconcile
from members.models import Member
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_promoted_member_is_recorded_as_failover_in_its_own_name():
    mirror = factories.mirror(name="SHOP")
    member = factories.member(mirror, name="FARAWAY", member_type="dr")

    changed = reconcile.record_member_type(member, "failover")

    assert changed and Member.objects.get(pk=member.pk).member_type == "failover"
    event = AuditEvent.objects.filter(action="member.update").latest("pk")
    assert event.actor_name == "member FARAWAY"
    assert (event.before, event.after) == ({"member_type": "dr"}, {"member_type": "failover"})


def test_the_same_type_or_an_unknown_one_changes_nothing():
    mirror = factories.mirror(name="SHOP")
    member = factories.member(mirror, name="NODEA", member_type="failover")
    audited = AuditEvent.objects.count()

    assert not reconcile.record_member_type(member, "failover")
    assert not reconcile.record_member_type(member, "")
    assert not reconcile.record_member_type(member, "Not a member")
    assert Member.objects.get(pk=member.pk).member_type == "failover"
    assert AuditEvent.objects.count() == audited
