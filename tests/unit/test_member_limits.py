"""The membership limits of guide §3.1.2 and the arbiter placement rule of §3.3.4, enforced on the
saved configuration through the services (so every entry point shares them)."""

import pytest
from django.core.exceptions import ValidationError

from engine import rules as catalog
from members import services
from tests import factories

pytestmark = pytest.mark.django_db


def refusal_code(call):
    with pytest.raises(ValidationError) as caught:
        call()
    err = caught.value
    errors = err.error_list if hasattr(err, "error_list") else sum(err.error_dict.values(), [])
    return errors[0].code


def full_mirror(async_count: int, failovers: int = 2, **mirror_fields):
    mirror = factories.mirror(**mirror_fields)
    for _ in range(failovers):
        factories.member(mirror, member_type="failover")
    for _ in range(async_count):
        factories.member(mirror, member_type="ro_reporting")
    return mirror


def test_a_third_failover_member_is_refused():
    mirror = full_mirror(0)
    assert refusal_code(lambda: factories.member(mirror, member_type="failover")) == (
        "too_many_failover_members"
    )


def test_fourteen_asyncs_fit_beside_a_failover_pair_but_not_fifteen():
    mirror = full_mirror(catalog.MAX_ASYNC)
    assert mirror.members.count() == catalog.MAX_MEMBERS
    code = refusal_code(lambda: factories.member(mirror, member_type="dr"))
    assert code == "too_many_members"


def test_fourteen_asyncs_is_the_limit_even_with_a_single_failover_member():
    mirror = full_mirror(catalog.MAX_ASYNC, failovers=1)
    assert refusal_code(lambda: factories.member(mirror, member_type="dr")) == "too_many_asyncs"


def test_the_first_member_of_a_mirror_must_be_failover():
    mirror = factories.mirror()
    assert refusal_code(lambda: factories.member(mirror, member_type="dr")) == (
        "first_member_failover"
    )


def _instance_in(mirror, host, name, member_type):
    return factories.member(mirror, host=host, name=name, member_type=member_type)


def test_a_dr_async_belongs_to_one_mirror_only():
    first, second = full_mirror(0, failovers=1), full_mirror(0, failovers=1)
    host = factories.host()
    _instance_in(first, host, "DR1", "dr")
    assert refusal_code(lambda: _instance_in(second, host, "DR1", "dr")) == "dr_in_one_mirror"


def test_a_failover_member_belongs_to_one_mirror_only():
    first, second = factories.mirror(), factories.mirror()
    host = factories.host()
    _instance_in(first, host, "FO1", "failover")
    assert refusal_code(lambda: _instance_in(second, host, "FO1", "failover")) == (
        "failover_in_one_mirror"
    )


def test_a_reporting_async_joins_up_to_ten_mirrors_of_the_same_kind():
    host = factories.host()
    mirrors = [full_mirror(0, failovers=1) for _ in range(11)]
    for mirror in mirrors[:10]:
        _instance_in(mirror, host, "REPORTS", "ro_reporting")
    assert refusal_code(lambda: _instance_in(mirrors[10], host, "REPORTS", "ro_reporting")) == (
        "too_many_mirrors"
    )


def test_a_reporting_async_cannot_join_another_mirror_as_the_other_kind():
    first, second = full_mirror(0, failovers=1), full_mirror(0, failovers=1)
    host = factories.host()
    _instance_in(first, host, "REPORTS", "ro_reporting")
    assert refusal_code(lambda: _instance_in(second, host, "REPORTS", "rw_reporting")) == (
        "reporting_kind_mismatch"
    )


def test_a_reporting_async_joins_another_mirror_only_as_a_reporting_async():
    first, second = full_mirror(0, failovers=1), full_mirror(0, failovers=1)
    host = factories.host()
    _instance_in(first, host, "R1", "ro_reporting")
    assert refusal_code(lambda: _instance_in(second, host, "R1", "dr")) == (
        "reporting_kind_mismatch"
    )


def test_a_dr_member_cannot_also_be_a_reporting_member_elsewhere():
    first, second = full_mirror(0, failovers=1), full_mirror(0, failovers=1)
    host = factories.host()
    _instance_in(first, host, "D1", "dr")
    assert refusal_code(lambda: _instance_in(second, host, "D1", "ro_reporting")) == (
        "dr_in_one_mirror"
    )


def test_the_arbiter_may_not_share_a_host_with_a_failover_member():
    host = factories.host(address="10.9.9.9")
    mirror = factories.mirror(arbiter_host="10.9.9.9")
    assert refusal_code(lambda: factories.member(mirror, host=host)) == "arbiter_on_member_host"


def test_the_arbiter_cannot_be_moved_onto_a_dr_members_host():
    mirror = full_mirror(0, failovers=1)
    dr = factories.member(mirror, member_type="dr")
    code = refusal_code(lambda: services.update_mirror(None, mirror, arbiter_host=dr.host.address))
    assert code == "arbiter_on_member_host"


def test_the_arbiter_may_share_a_host_with_a_reporting_async():
    mirror = full_mirror(0, failovers=1)
    reporting = factories.member(mirror, member_type="ro_reporting")
    services.update_mirror(None, mirror, arbiter_host=reporting.host.address)
    mirror.refresh_from_db()
    assert mirror.arbiter_host == reporting.host.address


def test_member_names_are_unique_within_a_mirror():
    mirror = full_mirror(0, failovers=1)
    factories.member(mirror, name="alpha", member_type="dr")
    assert (
        refusal_code(lambda: factories.member(mirror, name="ALPHA", member_type="ro_reporting"))
        == "unique"
    )


def test_database_names_are_unique_in_a_mirror_whatever_the_case():
    mirror = factories.mirror()
    factories.database(mirror, name="Sales")
    assert refusal_code(lambda: factories.database(mirror, name="SALES")) == "unique"
    other = factories.mirror()
    assert factories.database(other, name="sales").name == "SALES"


def test_a_mirrors_name_never_changes():
    mirror = factories.mirror(name="keep")
    assert refusal_code(lambda: services.update_mirror(None, mirror, name="other")) == "immutable"
    services.update_mirror(None, mirror, name="KEEP", qos_timeout_ms=9000)
    mirror.refresh_from_db()
    assert (mirror.name, mirror.qos_timeout_ms) == ("KEEP", 9000)


def test_members_after_the_first_wait_for_authorization_on_a_tls_mirror():
    mirror = factories.mirror(requires_tls=True)
    first = factories.member(mirror)
    second = factories.member(mirror)
    assert (first.authorization, second.authorization) == ("authorized", "pending")
    plain = factories.mirror(requires_tls=False)
    factories.member(plain)
    assert factories.member(plain).authorization == "authorized"
