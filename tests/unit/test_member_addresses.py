"""Rules the portal checks on a member's addresses (issue #9 item 4): no two members of a mirror
answer at one superserver address, and a member's agent is its host's agent. Checked here through
the model's full_clean (which the factories call); members.actions applies the same
members.rules check to a request before its job (tests/api)."""

import pytest
from django.core.exceptions import ValidationError

from tests import factories

pytestmark = pytest.mark.django_db


def refusal(call) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        call()
    (field, errors), *_ = caught.value.error_dict.items()
    return field, errors[0].code


def test_two_members_of_a_mirror_cannot_answer_at_one_superserver_address():
    mirror = factories.mirror()
    host = factories.host()
    factories.member(mirror, host=host, name="A", superserver_port=1972)

    same_place = lambda: factories.member(  # noqa: E731
        mirror, host=host, name="B", member_type="failover", superserver_port=1972
    )

    assert refusal(same_place) == ("superserver_port", "address_in_use")
    assert mirror.members.count() == 1


def test_two_instances_on_one_host_answer_at_their_own_ports():
    mirror = factories.mirror()
    host = factories.host()
    factories.member(mirror, host=host, name="A", superserver_port=1972)
    factories.member(mirror, host=host, name="B", superserver_port=1973)

    assert mirror.members.count() == 2


def test_the_address_comparison_ignores_the_case_of_a_host_name():
    mirror = factories.mirror()
    host = factories.host(address="node.example.com")
    factories.member(mirror, host=host, name="A", superserver_address="node.example.com")

    moved_up = lambda: factories.member(  # noqa: E731
        mirror, host=host, name="B", superserver_address="NODE.example.com"
    )

    assert refusal(moved_up) == ("superserver_port", "address_in_use")


def test_a_member_names_its_hosts_agent_port_and_no_other():
    mirror = factories.mirror()
    host = factories.host(agent_port=2190)
    factories.member(mirror, host=host, name="A", agent_port=2190)

    other_port = lambda: factories.member(  # noqa: E731
        mirror, host=host, name="B", superserver_port=1973, agent_port=2188
    )

    assert refusal(other_port) == ("agent_port", "agent_port_mismatch")
    assert list(mirror.members.values_list("name", flat=True)) == ["A"]
