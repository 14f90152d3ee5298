"""A mirror configuration read from the wire (the primary's push, the member asked at a join)
or from the member's own file is checked by the rule catalog like an operator's edit: a forged
or stale one cannot bring a setting out of range (guide §4.15: the QoS timeout)."""

import json

import pytest

from engine import rules
from engine.member import mirror_file
from engine.member.config import ConfigError, parse_address
from engine.member.node import Node


def wire(**settings) -> dict:
    return {
        "name": "SHOP",
        "version": 3,
        "members": [{"name": "A", "type": "failover", "superserver": "127.0.0.1:1972"}],
        **settings,
    }


@pytest.fixture
def node(tmp_path):
    return Node(name="A", superserver=parse_address("127.0.0.1:1972", "A"), data_dir=tmp_path)


def test_a_configuration_in_range_is_taken_as_it_is(node):
    cfg = mirror_file.from_wire(wire(qos_timeout_ms=4000), node, "A")

    assert cfg.qos_timeout_ms == 4000


@pytest.mark.parametrize("qos", [2**62, 0, "8000", True])
def test_a_configuration_with_a_setting_out_of_range_is_refused(node, qos):
    with pytest.raises(rules.RuleError) as refused:
        mirror_file.from_wire(wire(qos_timeout_ms=qos), node, "A")

    assert refused.value.reason == "invalid_qos_timeout"


def test_a_member_file_with_a_forged_setting_does_not_load(node):
    data = wire(qos_timeout_ms=2**62, member="A")
    (node.data_dir / mirror_file.MIRROR_FILE).write_text(json.dumps(data))

    with pytest.raises(ConfigError, match="qos_timeout_ms"):
        mirror_file.load_local(node)
