"""The portal and the engine judge every input alike: one table of good and bad inputs, each fed
to the portal's validation (members/rules.py, the model's full_clean: the factories call it) and
to the engine's (the checks the agent and the instance call), with the verdict both must give:
OK, or the same reason code of engine/rules.py."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from engine import rules as catalog
from engine.member import join
from engine.member import mirror_file as engine_membership
from engine.member.config import Address, MemberConfig, MirrorConfig
from engine.storage import databases as engine_databases
from engine.storage.databases import Refused
from members import rules as portal_rules
from tests import factories

OK = "OK"
FO, DR, RO, RW = catalog.FAILOVER, catalog.DR, catalog.RO_REPORTING, catalog.RW_REPORTING
HUGE = 4611686018427387904  # 2**62: once put the engine's watchdog to sleep for 10**15 s

TABLE = [
    # what is judged, the input, the verdict of both sides
    ("a mirror name", "MIR21", OK),
    ("a mirror name", "mir21", OK),  # stored uppercase
    ("a mirror name", "A", OK),
    ("a mirror name", "ABCDEFGHIJKLMNO", OK),  # 15 characters
    ("a mirror name", "", "invalid_mirror_name"),
    ("a mirror name", "ABCDEFGHIJKLMNOP", "invalid_mirror_name"),  # 16 characters
    ("a mirror name", "MIR-1", "invalid_mirror_name"),
    ("a mirror name", "MIR_1", "invalid_mirror_name"),
    ("a mirror name", "MIR 1", "invalid_mirror_name"),
    ("a mirror name", "MÏR", "invalid_mirror_name"),
    ("a mirror name", None, "invalid_mirror_name"),
    ("a member name", ("node-a", FO), OK),
    ("a member name", ("node(1).x", FO), OK),  # failover names allow more than async names
    ("a member name", ("a" * 32, FO), OK),
    ("a member name", ("dr_site-2", DR), OK),
    ("a member name", ("Report1", RO), OK),
    ("a member name", ("", FO), "invalid_member_name"),
    ("a member name", ("a" * 33, FO), "invalid_member_name"),
    ("a member name", ("a" * 33, RW), "invalid_member_name"),
    ("a member name", ("node 1", FO), "invalid_member_name"),
    ("a member name", ("node\t1", FO), "invalid_member_name"),
    ("a member name", ("node:1", FO), "invalid_member_name"),
    ("a member name", ("node,1", FO), "invalid_member_name"),
    ("a member name", ("node\x071", FO), "invalid_member_name"),  # a control character
    ("a member name", ("node.1", DR), "invalid_member_name"),
    ("a member name", ("node(1)", RO), "invalid_member_name"),
    ("a member name", ("nöde", RW), "invalid_member_name"),
    ("a database name", "sales", OK),
    ("a database name", "_tmp", OK),
    ("a database name", "a-b_c9", OK),
    ("a database name", "X" * 64, OK),
    ("a database name", "", "invalid_database_name"),
    ("a database name", "X" * 65, "invalid_database_name"),
    ("a database name", "9lives", "invalid_database_name"),
    ("a database name", "-db", "invalid_database_name"),
    ("a database name", "db.1", "invalid_database_name"),
    ("a database name", "db 1", "invalid_database_name"),
    ("a database name", "irissys", "system_database"),
    ("a database name", "IRISTEMP", "system_database"),
    # a mirror whose members have these types takes one more of that type
    ("a member joining a mirror of", ([FO], FO), OK),
    ("a member joining a mirror of", ([FO, FO], FO), "too_many_failover_members"),
    ("a member joining a mirror of", ([FO, FO] + [DR] * 13, RO), OK),  # the 14th async
    ("a member joining a mirror of", ([FO, FO] + [RO] * 14, DR), "too_many_members"),
    ("a member joining a mirror of", ([FO] + [RW] * 13, DR), OK),
    ("a member joining a mirror of", ([FO] + [DR, RO, RW] * 4 + [DR, RO], FO), OK),  # 16th
    ("a member joining a mirror of", ([FO] + [DR, RO, RW] * 4 + [DR, RO], RW), "too_many_asyncs"),
    # an instance that is already these members of other mirrors joins one more as that type
    ("an instance of other mirrors joining as", ([("ONE", RO)], RO), OK),
    ("an instance of other mirrors joining as", ([("ONE", FO)], FO), "failover_in_one_mirror"),
    ("an instance of other mirrors joining as", ([("ONE", FO)], RO), "failover_in_one_mirror"),
    ("an instance of other mirrors joining as", ([("ONE", DR)], DR), "dr_in_one_mirror"),
    ("an instance of other mirrors joining as", ([("ONE", DR)], RO), "dr_in_one_mirror"),
    ("an instance of other mirrors joining as", ([("ONE", RO)], DR), "reporting_kind_mismatch"),
    ("an instance of other mirrors joining as", ([("ONE", RO)], FO), "reporting_kind_mismatch"),
    ("an instance of other mirrors joining as", ([("ONE", RO)], RW), "reporting_kind_mismatch"),
    ("an instance of other mirrors joining as", ([(f"M{i}", RW) for i in range(9)], RW), OK),
    (
        "an instance of other mirrors joining as",
        ([(f"M{i}", RW) for i in range(10)], RW),
        "too_many_mirrors",
    ),
    ("a mirror setting", ("qos_timeout_ms", 8000), OK),
    ("a mirror setting", ("qos_timeout_ms", 100), OK),
    ("a mirror setting", ("qos_timeout_ms", 600_000), OK),
    ("a mirror setting", ("qos_timeout_ms", 99), "invalid_qos_timeout"),
    ("a mirror setting", ("qos_timeout_ms", 50), "invalid_qos_timeout"),  # the engine's old low
    ("a mirror setting", ("qos_timeout_ms", 600_001), "invalid_qos_timeout"),
    ("a mirror setting", ("qos_timeout_ms", HUGE), "invalid_qos_timeout"),
    ("a mirror setting", ("qos_timeout_ms", -1), "invalid_qos_timeout"),
    ("a mirror setting", ("failover_compression", "System Selected"), OK),
    ("a mirror setting", ("failover_compression", "Compressed"), OK),
    ("a mirror setting", ("async_compression", "Uncompressed"), OK),
    ("a mirror setting", ("async_compression", "system_selected"), "invalid_compression_mode"),
    ("a mirror setting", ("failover_compression", "gzip"), "invalid_compression_mode"),
    ("a mirror setting", ("failover_compression_type", "zstd"), OK),
    ("a mirror setting", ("async_compression_type", "lz4"), OK),
    ("a mirror setting", ("async_compression_type", "LZ4"), "invalid_compression_type"),
    ("a mirror setting", ("failover_compression_type", "gzip"), "invalid_compression_type"),
    ("a mirror setting", ("parallel_dejournaling", "failover+dr"), OK),
    ("a mirror setting", ("parallel_dejournaling", "all"), OK),
    ("a mirror setting", ("parallel_dejournaling", "failover"), OK),
    ("a mirror setting", ("parallel_dejournaling", "failover_dr"), "invalid_parallel_dejournaling"),
    ("a mirror setting", ("parallel_dejournaling", "none"), "invalid_parallel_dejournaling"),
]


# -- the portal ---------------------------------------------------------------------------------
def portal_code(call) -> str:
    try:
        call()
    except ValidationError as exc:
        errors = exc.error_list if hasattr(exc, "error_list") else sum(exc.error_dict.values(), [])
        return " ".join(sorted({e.code for e in errors}))
    return OK


def portal_name(normalize, given, *args):
    def call():
        assert normalize(given, *args) == given.upper()

    return portal_code(call)


def portal_mirror_of(given):
    types, joining = given
    mirror = factories.mirror()
    for member_type in types:
        factories.member(mirror, member_type=member_type)
    return portal_code(lambda: factories.member(mirror, member_type=joining))


def portal_instance_in(given):
    others, joining = given
    host = factories.host()
    for name, member_type in others:
        mirror = factories.mirror(name=name)
        if member_type != FO:
            factories.member(mirror)  # a mirror's first member is a failover member
        factories.member(mirror, host=host, name="INST", member_type=member_type)
    target = factories.mirror(name="TARGET")
    factories.member(target)
    return portal_code(
        lambda: factories.member(target, host=host, name="INST", member_type=joining)
    )


def portal_setting(given):
    key, value = given
    from members import services

    mirror = factories.mirror()
    return portal_code(lambda: services.update_mirror(None, mirror, **{key: value}))


PORTAL = {
    "a mirror name": lambda given: portal_name(portal_rules.normalize_mirror_name, given),
    "a member name": lambda given: portal_name(portal_rules.normalize_member_name, *given),
    "a database name": lambda given: portal_name(portal_rules.normalize_database_name, given),
    "a member joining a mirror of": portal_mirror_of,
    "an instance of other mirrors joining as": portal_instance_in,
    "a mirror setting": portal_setting,
}


# -- the engine ---------------------------------------------------------------------------------
def engine_code(call) -> str:
    try:
        call()
    except Refused as exc:
        return exc.extra.get("rule", f"a refusal without a rule: {exc.message}")
    return OK


def engine_name(check, given, *args):
    def call():
        assert check("test", given, *args) == given.upper()

    return engine_code(call)


def member_config(name: str, member_type: str, port: int) -> MemberConfig:
    address = Address("127.0.0.1", port)
    return MemberConfig(name, member_type, address, None, Path("/nowhere"), [])


def mirror_config(name: str, types) -> MirrorConfig:
    members = [member_config(f"M{i}", t, 20000 + i) for i, t in enumerate(types)]
    return MirrorConfig(name=name, members=members, databases=[], dynamic=True)


def engine_mirror_of(given):
    types, joining = given
    cfg = mirror_config("TARGET", types)
    new = Address("127.0.0.1", 30000)
    return engine_code(lambda: engine_membership.check_join(cfg, "NEW", joining, [new]))


def engine_instance_in(given):
    others, joining = given
    current = []
    for name, member_type in others:
        cfg = mirror_config(name, [FO] if member_type != FO else [])
        cfg.members.append(member_config("INST", member_type, 30000))
        current.append((cfg, "INST"))
    return engine_code(
        lambda: join.check_other_memberships("mirror_join", "TARGET", joining, "INST", current)
    )


def engine_setting(given):
    key, value = given
    return engine_code(lambda: engine_membership.check_settings("edit_mirror", {key: value}))


ENGINE = {
    "a mirror name": lambda given: engine_name(engine_membership.check_mirror_name, given),
    "a member name": lambda given: engine_name(engine_membership.check_member_name, *given),
    "a database name": lambda given: engine_name(engine_databases.check_name, given),
    "a member joining a mirror of": engine_mirror_of,
    "an instance of other mirrors joining as": engine_instance_in,
    "a mirror setting": engine_setting,
}


def _id(row) -> str:
    what, given, verdict = row
    shown = repr(given)
    return f"{what} {shown[:40]} is {verdict}"


@pytest.mark.django_db
@pytest.mark.parametrize(("what", "given", "verdict"), TABLE, ids=[_id(r) for r in TABLE])
def test_the_portal_and_the_engine_give_the_same_verdict(what, given, verdict):
    assert (PORTAL[what](given), ENGINE[what](given)) == (verdict, verdict)


def test_the_table_covers_every_kind_of_rule():
    assert {row[0] for row in TABLE} == set(PORTAL) == set(ENGINE)
    assert set(catalog.SETTINGS) - {"tls"} <= {
        row[1][0] for row in TABLE if row[0] == "a mirror setting"
    }


# -- database statuses ---------------------------------------------------------------------------
def engine_status(role="backup", **entry_flags):
    """What engine/storage/databases.py db_status says of a copy in the given state."""
    entry = SimpleNamespace(
        name="SALES",
        mounted=True,
        obsolete=False,
        needs_download=False,
        activated=True,
        caught_up=True,
    )
    for key, value in entry_flags.items():
        setattr(entry, key, value)
    dj = SimpleNamespace(
        stopped=entry_flags.get("stopped", False), error=None, paused_databases=lambda: ()
    )
    inst = SimpleNamespace(
        role=role,
        downloading={"SALES"} if entry_flags.get("downloading") else set(),
        catching_up={"SALES"} if entry_flags.get("catching_up") else set(),
        primary_db_info=set() if entry_flags.get("orphaned") else None,
        dejournal=dj,
    )
    return engine_databases.db_status(inst, entry)


@pytest.mark.parametrize(
    ("state", "on_primary"),
    [
        ({"role": "primary"}, True),
        ({}, False),
        ({"mounted": False}, False),
        ({"obsolete": True}, False),
        ({"needs_download": True}, False),
        ({"downloading": True}, False),
        ({"catching_up": True}, False),
        ({"activated": False}, False),
        ({"caught_up": False}, False),
        ({"orphaned": True}, False),
        ({"stopped": True}, False),
        pytest.param(
            {"role": "primary", "downloading": True},
            True,
            marks=pytest.mark.xfail(
                strict=True,
                reason="the engine shows a primary's adopted copy as Downloading; guide §5.1.1.3 "
                "(and so the catalog) says Downloading is a non-primary status",
            ),
        ),
    ],
)
def test_every_status_the_engine_reports_is_one_the_portal_accepts(state, on_primary):
    status = engine_status(**state)

    assert status in dict(portal_rules.DATABASE_STATUSES)
    portal_rules.validate_database_status(status, on_primary)
