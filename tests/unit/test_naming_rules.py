"""Every naming and setting rule of guide §4.7, §4.8.2, valid and invalid, through the portal's
rules module (the shared ones come from engine/rules.py with its reason codes)."""

import pytest
from django.core.exceptions import ValidationError

from members import rules


def error_code(fn, *args):
    with pytest.raises(ValidationError) as caught:
        fn(*args)
    return caught.value.error_list[0].code if hasattr(caught.value, "error_list") else None


@pytest.mark.parametrize(
    ("given", "stored"),
    [("mir21", "MIR21"), ("A", "A"), ("ABCDEFGHIJKLMNO", "ABCDEFGHIJKLMNO"), ("Prod2", "PROD2")],
)
def test_valid_mirror_names_are_stored_uppercase(given, stored):
    assert rules.normalize_mirror_name(given) == stored


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("", "invalid_mirror_name"),
        ("ABCDEFGHIJKLMNOP", "invalid_mirror_name"),
        ("MIR-1", "invalid_mirror_name"),
        ("MIR_1", "invalid_mirror_name"),
        ("MIR 1", "invalid_mirror_name"),
        ("MÏR", "invalid_mirror_name"),
        ("mir.1", "invalid_mirror_name"),
    ],
)
def test_invalid_mirror_names_are_refused_with_a_reason(given, code):
    assert error_code(rules.normalize_mirror_name, given) == code


@pytest.mark.parametrize(
    ("given", "member_type", "stored"),
    [
        ("node-a", "failover", "NODE-A"),
        ("host1/iris".replace("/", "."), "failover", "HOST1.IRIS"),
        ("a" * 32, "failover", "A" * 32),
        ("node(1)", "failover", "NODE(1)"),
        ("dr_site-2", "dr", "DR_SITE-2"),
        ("Report1", "ro_reporting", "REPORT1"),
        ("rw-1", "rw_reporting", "RW-1"),
    ],
)
def test_valid_member_names_are_stored_uppercase(given, member_type, stored):
    assert rules.normalize_member_name(given, member_type) == stored


@pytest.mark.parametrize("bad", list(" \t:[]#;/*=^~,"))
def test_failover_member_names_refuse_each_forbidden_character(bad):
    assert error_code(rules.normalize_member_name, f"node{bad}1", "failover") == (
        "invalid_member_name"
    )


@pytest.mark.parametrize(
    ("given", "member_type", "code"),
    [
        ("", "failover", "invalid_member_name"),
        ("a" * 33, "failover", "invalid_member_name"),
        ("a" * 33, "dr", "invalid_member_name"),
        ("node.1", "dr", "invalid_member_name"),
        ("node(1)", "ro_reporting", "invalid_member_name"),
        ("node 1", "rw_reporting", "invalid_member_name"),
        ("nöde", "dr", "invalid_member_name"),
    ],
)
def test_invalid_member_names_are_refused_with_a_reason(given, member_type, code):
    assert error_code(rules.normalize_member_name, given, member_type) == code


@pytest.mark.parametrize(
    ("given", "stored"),
    [("sales", "SALES"), ("_tmp", "_TMP"), ("a-b_c9", "A-B_C9"), ("X" * 64, "X" * 64)],
)
def test_valid_mirror_database_names(given, stored):
    assert rules.normalize_database_name(given) == stored


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("", "invalid_database_name"),
        ("9lives", "invalid_database_name"),
        ("-db", "invalid_database_name"),
        ("db.1", "invalid_database_name"),
        ("db 1", "invalid_database_name"),
        ("X" * 65, "invalid_database_name"),
        ("irissys", "system_database"),
        ("IRISTEMP", "system_database"),
        ("enslib", "system_database"),
    ],
)
def test_invalid_mirror_database_names(given, code):
    assert error_code(rules.normalize_database_name, given) == code


@pytest.mark.parametrize("address", ["10.0.0.1", "::1", "db-1.example.com", "node1", "a.b.c."])
def test_addresses_may_be_ips_or_host_names(address):
    rules.validate_host_address(address)


@pytest.mark.parametrize("address", ["", "bad host", "-lead.example", "a..b", "x" * 64, "é.com"])
def test_malformed_addresses_are_refused(address):
    assert error_code(rules.validate_host_address, address) == "invalid_address"


@pytest.mark.parametrize(
    ("port", "ok"), [(0, False), (1, True), (2188, True), (65535, True), (65536, False)]
)
def test_ports_are_1_to_65535(port, ok):
    if ok:
        rules.validate_port(port)
    else:
        assert error_code(rules.validate_port, port) == "invalid_port"


@pytest.mark.parametrize(
    ("ms", "ok"), [(99, False), (100, True), (8000, True), (600_000, True), (600_001, False)]
)
def test_qos_timeout_range(ms, ok):
    if ok:
        rules.validate_qos_timeout(ms)
    else:
        assert error_code(rules.validate_qos_timeout, ms) == "invalid_qos_timeout"


@pytest.mark.parametrize("dn", ["CN=node1,O=Example", "CN=a\\,b,OU=x", ""])
def test_x509_dns_in_rfc4514_form_are_accepted(dn):
    rules.validate_x509_dn(dn)


@pytest.mark.parametrize("dn", ["not a dn", "CN", "=x", "XX=1"])
def test_malformed_x509_dns_are_refused(dn):
    assert error_code(rules.validate_x509_dn, dn) == "invalid_dn"


@pytest.mark.parametrize(
    ("address", "mask", "interface", "ok"),
    [
        (None, None, "", True),
        ("10.0.2.100", 24, "eth0", True),
        ("fd00::10", 64, "eth0", True),
        ("10.0.2.100", None, "eth0", False),
        ("10.0.2.100", 24, "", False),
        (None, 24, "eth0", False),
        ("vip.example.com", 24, "eth0", False),
        ("10.0.2.100", 33, "eth0", False),
    ],
)
def test_virtual_ip_is_an_ip_with_mask_and_interface_or_nothing(address, mask, interface, ok):
    if ok:
        rules.validate_virtual_ip(address, mask, interface)
    else:
        with pytest.raises(ValidationError):
            rules.validate_virtual_ip(address, mask, interface)


@pytest.mark.parametrize(
    ("status", "primary", "ok"),
    [
        ("Normal", True, True),
        ("Normal", False, False),
        ("Dejournaling", True, False),
        ("Dejournaling", False, True),
        ("Obsolete", True, True),
        ("Database Dismounted", False, True),
    ],
)
def test_database_statuses_fit_the_members_role(status, primary, ok):
    if ok:
        rules.validate_database_status(status, primary)
    else:
        assert error_code(rules.validate_database_status, status, primary) == (
            "invalid_database_status"
        )
