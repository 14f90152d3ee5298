"""The mirroring rules, written once: names (guide §4.7.1, §4.7.5, §4.8.2), member limits
(§3.1.2), member types, mirror settings and their ranges (§3.5.3, §4.7.1, §4.15, §4.16), the
fixed status strings of a member (§5.1.1.1) and the database statuses of §5.1.1.3.

Plain Python, importing nothing from the engine or Django: the engine's bottom layer.  A broken
rule raises RuleError(reason, message); the engine maps it to Refused or ConfigError, the portal
(members/rules.py) to ValidationError(message, code=reason), so both give the same verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class RuleError(ValueError):
    """A rule the input breaks: `reason` is a stable code, `message` says it in plain words."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- member types (guide §3.1.1, §3.1.2) ----------------------------------------------------
FAILOVER = "failover"
DR = "dr"
RO_REPORTING = "ro_reporting"
RW_REPORTING = "rw_reporting"
MEMBER_TYPES = (FAILOVER, DR, RO_REPORTING, RW_REPORTING)
# as the Mirror Monitor shows them (guide §5.1.1.1)
MEMBER_TYPE_LABELS = {
    FAILOVER: "Failover",
    DR: "Disaster Recovery",
    RO_REPORTING: "Read-Only Reporting",
    RW_REPORTING: "Read-Write Reporting",
}
ASYNC_TYPES = frozenset({DR, RO_REPORTING, RW_REPORTING})
REPORTING_TYPES = frozenset({RO_REPORTING, RW_REPORTING})
PROMOTABLE_TYPES = frozenset({FAILOVER, DR})  # may become primary (guide §3.3.4)

# -- member status, journal transfer and dejournaling (guide §5.1.1.1) ----------------------
PRIMARY, BACKUP, CONNECTED = "Primary", "Backup", "Connected"
IN_TROUBLE, SYNCHRONIZING, WAITING, STOPPED = "In Trouble", "Synchronizing", "Waiting", "Stopped"
DOWN, ERROR = "Down", "Error"  # no answer: the instance is down, or it is hung
# mirroring halted by an unexpected condition (the primary's journal could not be written)
CRASHED = "Crashed"
# changing role (a backup becoming primary); re-query soon
TRANSITION = "Transition"
NOT_MEMBER, NOT_INITIALIZED = "Not Member", "Not Initialized"  # an instance in no mirror
# the type of an instance whose mirror configuration could not be loaded (status Not Initialized)
INDETERMINATE = "Indeterminate"
MEMBER_STATUSES = (
    PRIMARY,
    BACKUP,
    CONNECTED,
    IN_TROUBLE,
    SYNCHRONIZING,
    WAITING,
    STOPPED,
    DOWN,
    ERROR,
    CRASHED,
    TRANSITION,
    NOT_INITIALIZED,
)
# what a primary says of itself: In Trouble is a primary that lost its Active backup
PRIMARY_STATUSES = (PRIMARY, IN_TROUBLE)
# the fixed values; the others read "<time> behind" or "Disconnected on <time>"
ACTIVE, CAUGHT_UP, NOT_APPLICABLE = "Active", "Caught up", "N/A"
DEJOURNALING_STOPPED = "Warning! Dejournaling is stopped."
DATABASES_NEED_ATTENTION = "Warning! Some databases need attention."

# -- failover mode and the arbiter connection, as a failover member reports them (guide §3.3.5,
# §5.1.1); a mirror starts Agent Controlled, and "not connected" also means no arbiter at all
ARBITER_CONTROLLED, AGENT_CONTROLLED = "Arbiter Controlled", "Agent Controlled"
FAILOVER_MODES = (ARBITER_CONTROLLED, AGENT_CONTROLLED)
ARBITER_BOTH = "Both failover members are connected to the arbiter"
ARBITER_ONLY_THIS = "Only this member is connected to the arbiter"
ARBITER_NOT_CONNECTED = "This member is not connected to the arbiter"
ARBITER_CONNECTION_STATUSES = (ARBITER_BOTH, ARBITER_ONLY_THIS, ARBITER_NOT_CONNECTED)
# the arbiter listens on a port of its own, next to its host agent's HTTP API (2188)
ARBITER_PORT = 2189

# -- limits (guide §3.1.2) ------------------------------------------------------------------
MAX_MEMBERS = 16
MAX_FAILOVER = 2
MAX_ASYNC = 14  # beside a failover pair, and also beside a single failover member
MAX_REPORTING_MIRRORS = 10
MAX_DEJOURNAL_JOBS = 16
MAX_MIRROR_NAME = 15
MAX_MEMBER_NAME = 32
MAX_DATABASE_NAME = 64  # the guide sets none; a bound keeps paths and screens sane

# -- membership requests on a TLS mirror (issue 12) -----------------------------------------
# Pending entries (new members, and members re-pending after TLS was turned on) are bounded
# apart from the member limit, so that junk requests never fill the mirror's 16 places; and one
# certificate registers at most one new pending member per interval.
MAX_PENDING_JOINS = 4
PENDING_JOIN_INTERVAL_S = 60.0
# A member's certificate serves its mirror private port and connects to the primary's: an
# extended key usage of both.  Client-only identities (the portal's, the launcher's) and
# server-only ones (the agents') cannot ask to be a member.
SERVER_AUTH, CLIENT_AUTH = "serverAuth", "clientAuth"
MEMBER_KEY_USAGES = (SERVER_AUTH, CLIENT_AUTH)


# -- settings (guide §3.5.3, §4.7.1, §4.15, §4.16) ------------------------------------------
SYSTEM_SELECTED, UNCOMPRESSED, COMPRESSED = "System Selected", "Uncompressed", "Compressed"
COMPRESSION_MODES = (SYSTEM_SELECTED, UNCOMPRESSED, COMPRESSED)
COMPRESSION_TYPES = ("zlib", "zstd", "lz4")
PARALLEL_FAILOVER_DR, PARALLEL_ALL, PARALLEL_FAILOVER = "failover+dr", "all", "failover"
PARALLEL_DEJOURNALING = (PARALLEL_FAILOVER_DR, PARALLEL_ALL, PARALLEL_FAILOVER)
# The guide sets no range.  An upper bound keeps the watchdogs that sleep a QoS awake (a QoS
# of 2**62 ms once put one to sleep for 10**15 s); ten minutes is far beyond any sane wait.
QOS_TIMEOUT_MS = (100, 600_000)
# every mirror setting and its default; the default's type is the setting's JSON type
SETTINGS = {
    "qos_timeout_ms": 8000,
    "failover_compression": SYSTEM_SELECTED,
    "failover_compression_type": "zlib",
    "async_compression": SYSTEM_SELECTED,
    "async_compression_type": "zlib",
    "parallel_dejournaling": PARALLEL_FAILOVER_DR,
    "tls": False,
}
_CHOICES = {
    "failover_compression": ("invalid_compression_mode", COMPRESSION_MODES),
    "async_compression": ("invalid_compression_mode", COMPRESSION_MODES),
    "failover_compression_type": ("invalid_compression_type", COMPRESSION_TYPES),
    "async_compression_type": ("invalid_compression_type", COMPRESSION_TYPES),
    "parallel_dejournaling": ("invalid_parallel_dejournaling", PARALLEL_DEJOURNALING),
}

# -- mirrored databases (guide §4.8, §5.1.1.3) ----------------------------------------------
DATABASE_STATUSES = (
    "Normal",
    "Dejournaling",
    "Needs Catchup",
    "Needs Activation",
    "Catchup Running",
    "Needs Download",
    "Downloading",
    "Dejournaling Stopped",
    "Database Dismounted",
    "Orphaned",
    "Obsolete",
)
PRIMARY_ONLY_STATUSES = frozenset({"Normal"})
NON_PRIMARY_STATUSES = frozenset(DATABASE_STATUSES) - {"Normal", "Database Dismounted", "Obsolete"}
SYSTEM_DATABASES = frozenset(
    {"IRISSYS", "IRISLIB", "IRISLOCALDATA", "IRISTEMP", "IRISAUDIT", "ENSLIB"}
)

# -- names (guide §4.7.1, §4.7.5, §4.8.2) ---------------------------------------------------
_MIRROR_NAME = re.compile(r"[A-Za-z0-9]{1,15}")
_FAILOVER_FORBIDDEN = frozenset(" \t:[]#;/*=^~,")
_ASYNC_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def check_mirror_name(name) -> str:
    """1-15 letters or digits; the name as stored, in uppercase."""
    if not isinstance(name, str) or not _MIRROR_NAME.fullmatch(name):
        raise RuleError(
            "invalid_mirror_name", f"mirror name {name!r} must be 1-15 letters or digits"
        )
    return name.upper()


def check_member_type(member_type) -> str:
    if member_type not in MEMBER_TYPES:
        raise RuleError(
            "invalid_member_type",
            f"member type {member_type!r} is not one of {', '.join(MEMBER_TYPES)}",
        )
    return member_type


def check_member_name(name, member_type: str) -> str:
    """At most 32 characters.  Failover members: no spaces, tabs, control characters or
    ``: [ ] # ; / * = ^ ~ ,``; asyncs: letters, digits, _ and - (the guide states the two
    rules differently).  The name as stored, in uppercase."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_MEMBER_NAME:
        raise RuleError("invalid_member_name", f"member name {name!r} must be 1-32 characters")
    if member_type == FAILOVER:
        if set(name) & _FAILOVER_FORBIDDEN or not name.isprintable():
            raise RuleError(
                "invalid_member_name",
                f"failover member name {name!r} may not contain spaces, tabs, control "
                "characters or : [ ] # ; / * = ^ ~ ,",
            )
    elif not _ASYNC_NAME.fullmatch(name):
        raise RuleError(
            "invalid_member_name", f"async member name {name!r}: letters, digits, _ and - only"
        )
    return name.upper()


def check_database_name(name) -> str:
    """A letter or _, then letters, digits, - or _ (at most 64); never a system database.
    The name as stored, in uppercase."""
    if (
        not isinstance(name, str)
        or not _DATABASE_NAME.fullmatch(name)
        or len(name) > MAX_DATABASE_NAME
    ):
        raise RuleError(
            "invalid_database_name",
            f"invalid database name {name!r}: the first character must be a letter or _, "
            f"the rest letters, digits, - or _ (at most {MAX_DATABASE_NAME})",
        )
    if name.upper() in SYSTEM_DATABASES:
        raise RuleError(
            "system_database",
            f"{name.upper()}: system databases cannot be mirrored (guide §4.8.1)",
        )
    return name.upper()


# -- member limits (guide §3.1.2) -----------------------------------------------------------
def check_mirror_limits(mirror: str, member_type: str, member_types: Iterable[str]) -> None:
    """May `mirror`, whose members have `member_types`, take one more of `member_type`?"""
    types = list(member_types)
    if len(types) >= MAX_MEMBERS:
        raise RuleError(
            "too_many_members", f"mirror {mirror} already has {MAX_MEMBERS} members, the most"
        )
    if member_type == FAILOVER and types.count(FAILOVER) >= MAX_FAILOVER:
        raise RuleError(
            "too_many_failover_members",
            f"mirror {mirror} already has {MAX_FAILOVER} failover members, the most",
        )
    if member_type != FAILOVER and sum(t != FAILOVER for t in types) >= MAX_ASYNC:
        raise RuleError(
            "too_many_asyncs", f"mirror {mirror} already has {MAX_ASYNC} async members, the most"
        )


def check_member_mix(mirror: str, member_types: Iterable[str]) -> None:
    """A whole mirror's members, each as if it joined after the ones before it."""
    types = list(member_types)
    for i, member_type in enumerate(types):
        check_mirror_limits(mirror, member_type, types[:i])


def check_other_mirrors(mirror: str, member_type: str, others: Iterable[tuple[str, str]]) -> None:
    """May an instance that is already a member of other mirrors, `others` being their
    (mirror name, member type), join `mirror` as `member_type`?  Only a reporting async of
    the same kind, in at most ten mirrors."""
    others = list(others)
    if not others:
        return
    names = sorted({name for name, _ in others})
    if mirror in names:
        raise RuleError(
            "already_in_mirror", f"this instance is already a member of mirror {mirror}"
        )
    where = f"this instance is already a member of mirror {', '.join(names)}"
    kinds = {kind for _, kind in others}
    if FAILOVER in kinds:
        raise RuleError(
            "failover_in_one_mirror",
            f"a failover member belongs to one mirror only (docs/mirroring-model.md §2); {where}",
        )
    if DR in kinds:
        raise RuleError(
            "dr_in_one_mirror", f"a DR async belongs to one mirror only (guide §3.1.2.1); {where}"
        )
    if member_type not in kinds:
        raise RuleError(
            "reporting_kind_mismatch",
            f"a reporting async joins further mirrors as the same kind "
            f"({', '.join(sorted(kinds))}) only; {where}",
        )
    if len(others) >= MAX_REPORTING_MIRRORS:
        raise RuleError(
            "too_many_mirrors",
            f"a reporting async belongs to at most {MAX_REPORTING_MIRRORS} mirrors; {where}",
        )


# -- settings -------------------------------------------------------------------------------
def check_arbiter_placement(arbiter_host: str | None, promotable_member_hosts) -> None:
    """The arbiter may not run on a host of a failover or DR member of the same mirror: losing
    that host would take the arbiter with it (guide §3.3.4)."""
    if not arbiter_host:
        return
    if arbiter_host.lower() in {h.lower() for h in promotable_member_hosts if h}:
        raise RuleError(
            "arbiter_on_member_host",
            f"The arbiter cannot run on {arbiter_host}: a failover or DR member of this mirror "
            "runs there.",
        )


def check_setting(key: str, value):
    """The value of one mirror setting, checked.  The message starts with the key."""
    if key not in SETTINGS:
        raise RuleError(
            "unknown_setting", f"{key}: unknown setting (settings: {', '.join(SETTINGS)})"
        )
    if key in _CHOICES:
        reason, allowed = _CHOICES[key]
        if not isinstance(value, str) or value not in allowed:
            raise RuleError(reason, f"{key}: {value!r} is not one of {', '.join(allowed)}")
    elif key == "qos_timeout_ms":
        low, high = QOS_TIMEOUT_MS
        if type(value) is not int or not low <= value <= high:
            raise RuleError(
                "invalid_qos_timeout",
                f"qos_timeout_ms: must be an integer of milliseconds from {low} to {high}, "
                f"got {value!r}",
            )
    elif type(value) is not bool:
        raise RuleError(f"invalid_{key}", f"{key}: must be true or false, got {value!r}")
    return value


def check_settings(changes) -> dict:
    """Mirror settings to set, checked; the mirror name is not one of them (§4.10.4)."""
    if not isinstance(changes, dict):
        raise RuleError("invalid_settings", "expected a map of settings")
    if "name" in changes:
        raise RuleError("mirror_name_immutable", "the mirror name cannot be changed after creation")
    return {key: check_setting(key, value) for key, value in changes.items()}


# -- membership requests --------------------------------------------------------------------
def check_pending_joins(mirror: str, pending: int) -> None:
    """May `mirror`, with `pending` members awaiting authorization, take one more?"""
    if pending >= MAX_PENDING_JOINS:
        raise RuleError(
            "too_many_pending_members",
            f"mirror {mirror} already has {pending} members awaiting authorization (at most "
            f"{MAX_PENDING_JOINS}): authorize or reject them first",
        )


def check_join_interval(dn: str, since_last: float | None) -> None:
    """May the certificate `dn`, whose last new pending entry was `since_last` seconds ago
    (None: never), register another now?"""
    if since_last is not None and since_last < PENDING_JOIN_INTERVAL_S:
        raise RuleError(
            "pending_join_too_soon",
            f"certificate {dn!r} registered a pending member {since_last:.0f} s ago: one new "
            f"pending member per certificate every {PENDING_JOIN_INTERVAL_S:g} s",
        )


def check_member_certificate(dn: str, usages: Iterable[str] | None) -> None:
    """May a certificate of subject `dn` whose extended key usages are `usages` (names such
    as "serverAuth"; None: the certificate has no such extension) be a mirror member?"""
    missing = [u for u in MEMBER_KEY_USAGES if u not in set(usages or ())]
    if missing:
        has = "no extended key usage" if usages is None else ", ".join(sorted(usages)) or "none"
        raise RuleError(
            "not_a_member_certificate",
            f"certificate {dn!r} is not a member certificate: a member's needs the extended "
            f"key usages {' and '.join(MEMBER_KEY_USAGES)} (it has {has})",
        )


# -- database statuses (guide §5.1.1.3) -----------------------------------------------------
def check_database_status(status: str, on_primary: bool) -> str:
    """A status a copy can have on a primary (`on_primary`) or on another member."""
    if status not in DATABASE_STATUSES:
        raise RuleError("invalid_database_status", f"{status!r} is not a database status")
    if on_primary and status in NON_PRIMARY_STATUSES:
        raise RuleError(
            "invalid_database_status", f"{status!r} is not a status a primary's copy can have"
        )
    if not on_primary and status in PRIMARY_ONLY_STATUSES:
        raise RuleError("invalid_database_status", "only the primary's copy is Normal")
    return status
