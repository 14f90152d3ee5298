"""The membership limits of guide §3.1.2 and the arbiter placement rule of §3.3.4: enforced on
every saved row by the models' full_clean (members/models.py; the factories call it, so seeded
data obeys them too), on the portal's own settings by members.services, and on an operator's
request to join by members.actions before any job starts."""

import pytest
from django.core.exceptions import ValidationError

from engine import rules as catalog
from members import actions, services
from tasks.models import Job
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


# --- The same limits on an operator's request to join (members.actions) ---------------------
def join_code(mirror, member_type, host=None, private="10.9.9.9:2188"):
    host = host or factories.host()
    call = lambda: actions.join_mirror(  # noqa: E731
        None, mirror, host=host, instance="IRIS", member_type=member_type, private=private
    )
    code = refusal_code(call)
    assert not Job.objects.filter(kind="join_mirror").exists()  # a refused request starts no job
    return code


def test_a_request_to_join_as_a_third_failover_member_is_refused_with_the_catalogs_code():
    assert join_code(full_mirror(0), "failover") == "too_many_failover_members"


def test_a_request_to_join_a_full_mirror_is_refused_with_the_catalogs_code():
    assert join_code(full_mirror(catalog.MAX_ASYNC), "dr") == "too_many_members"


def test_a_request_to_join_on_the_arbiters_host_as_a_dr_member_is_refused():
    host = factories.host(address="10.9.9.8")
    mirror = full_mirror(0, failovers=1, arbiter_host="10.9.9.8")
    assert join_code(mirror, "dr", host=host) == "arbiter_on_member_host"
