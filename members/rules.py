"""Every naming rule, setting rule and membership limit of a mirror, in one place.

Model validators and `clean()` call these, so forms, the admin, serializers and services all
enforce the same rules. Section numbers point into shared/SPEC.md.
"""

import ipaddress
import re
from contextlib import contextmanager

from django.core.exceptions import ValidationError

# --- Limits (SPEC §1.4) -----------------------------------------------------------------------
MAX_MEMBERS_PER_MIRROR = 16
MAX_FAILOVER_MEMBERS = 2
MAX_ASYNC_MEMBERS = 14
MAX_MIRRORS_PER_REPORTING_ASYNC = 10
MAX_MIRROR_NAME_LENGTH = 15
MAX_MEMBER_NAME_LENGTH = 32
MAX_DATABASE_NAME_LENGTH = 64  # the guide sets none; a bound keeps paths and UIs sane
DEFAULT_AGENT_PORT = 2188
DEFAULT_QOS_TIMEOUT_MS = 8000
QOS_TIMEOUT_RANGE_MS = (100, 600_000)

# Member types (SPEC §1.3) and the groups the limits talk about.
FAILOVER = "failover"
DR = "dr"
RO_REPORTING = "ro_reporting"
RW_REPORTING = "rw_reporting"
MEMBER_TYPES = [
    (FAILOVER, "Failover"),
    (DR, "Disaster Recovery (DR)"),
    (RO_REPORTING, "Read-Only Reporting"),
    (RW_REPORTING, "Read-Write Reporting"),
]
ASYNC_TYPES = {DR, RO_REPORTING, RW_REPORTING}
REPORTING_TYPES = {RO_REPORTING, RW_REPORTING}
# Members an arbiter must never share a host with: they may become primary (SPEC §1.6).
PROMOTABLE_TYPES = {FAILOVER, DR}

# Compression (SPEC §3.4).
SYSTEM_SELECTED = "system_selected"
COMPRESSION_MODES = [
    (SYSTEM_SELECTED, "System Selected"),
    ("uncompressed", "Uncompressed"),
    ("compressed", "Compressed"),
]
COMPRESSION_TYPES = [("zlib", "zlib"), ("zstd", "Zstd"), ("lz4", "LZ4")]

# Allow Parallel Dejournaling (SPEC §3.6).
PARALLEL_DEJOURNALING = [
    ("failover_dr", "Failover members and DR asyncs"),
    ("all", "All members, reporting asyncs included"),
    ("failover_only", "Failover members only"),
]

# Mirrored database copy status, exactly as the Mirror Monitor shows it (SPEC §2.4).
DATABASE_STATUSES = [
    (s, s)
    for s in (
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
]
PRIMARY_ONLY_DATABASE_STATUSES = {"Normal"}
NON_PRIMARY_DATABASE_STATUSES = {
    "Dejournaling",
    "Needs Catchup",
    "Needs Activation",
    "Catchup Running",
    "Needs Download",
    "Downloading",
    "Dejournaling Stopped",
    "Orphaned",
}
# System databases that can never be mirrored (SPEC §6.7).
SYSTEM_DATABASES = {"IRISSYS", "IRISLIB", "IRISLOCALDATA", "IRISTEMP", "IRISAUDIT", "ENSLIB"}


def field_error(field: str, message: str, code: str) -> ValidationError:
    """A ValidationError about one field that keeps its machine-readable code."""
    return ValidationError({field: ValidationError(message, code=code)})


@contextmanager
def about(field: str):
    """Attach any ValidationError raised inside to `field`, keeping its codes."""
    try:
        yield
    except ValidationError as exc:
        raise ValidationError({field: exc.error_list}) from None


# --- Names ------------------------------------------------------------------------------------
_MIRROR_NAME = re.compile(r"[A-Za-z0-9]+")
_FAILOVER_NAME_FORBIDDEN = set(" \t:[]#;/*=^~,")
_ASYNC_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def normalize_mirror_name(value: str) -> str:
    """Mirror names are 1-15 letters or digits, stored uppercase (SPEC §5.1)."""
    name = (value or "").strip()
    if not name:
        raise ValidationError("A mirror name is required.", code="required")
    if len(name) > MAX_MIRROR_NAME_LENGTH:
        raise ValidationError(
            f"A mirror name has at most {MAX_MIRROR_NAME_LENGTH} characters.", code="too_long"
        )
    if not _MIRROR_NAME.fullmatch(name):
        raise ValidationError("A mirror name may contain only letters and digits.", code="invalid")
    return name.upper()


def normalize_member_name(value: str, member_type: str) -> str:
    """Member names: at most 32 characters, stored uppercase (SPEC §5.2).

    Failover members may use anything but whitespace and ``: [ ] # ; / * = ^ ~ ,``; asyncs only
    letters, digits, underscores and hyphens — the guide states the two rules differently.
    """
    name = value or ""
    if not name:
        raise ValidationError("A member name is required.", code="required")
    if len(name) > MAX_MEMBER_NAME_LENGTH:
        raise ValidationError(
            f"A member name has at most {MAX_MEMBER_NAME_LENGTH} characters.", code="too_long"
        )
    if member_type == FAILOVER:
        bad = sorted(set(name) & _FAILOVER_NAME_FORBIDDEN)
        if bad or not name.isprintable():
            shown = " ".join(repr(c) for c in bad) or "a control character"
            raise ValidationError(
                f"A failover member name may not contain {shown}.", code="invalid_character"
            )
    elif not _ASYNC_NAME.fullmatch(name):
        raise ValidationError(
            "An async member name may contain only letters, digits, underscores and hyphens.",
            code="invalid_character",
        )
    return name.upper()


def normalize_database_name(value: str) -> str:
    """Mirror DB names start with a letter or underscore, then letters, digits, - or _ (§5.3)."""
    name = (value or "").strip()
    if not name:
        raise ValidationError("A mirror database name is required.", code="required")
    if len(name) > MAX_DATABASE_NAME_LENGTH:
        raise ValidationError(
            f"A mirror database name has at most {MAX_DATABASE_NAME_LENGTH} characters.",
            code="too_long",
        )
    if not _DATABASE_NAME.fullmatch(name):
        raise ValidationError(
            "A mirror database name starts with a letter or underscore and continues with "
            "letters, digits, hyphens or underscores.",
            code="invalid",
        )
    if name.upper() in SYSTEM_DATABASES:
        raise ValidationError(
            f"{name.upper()} is a system database and cannot be mirrored.", code="system_database"
        )
    return name.upper()


# --- Addresses and settings -------------------------------------------------------------------
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def validate_host_address(value: str) -> None:
    """An IP address or a DNS host name (SPEC §5.2: names may stand in for IPs)."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253 or not all(_HOST_LABEL.fullmatch(lb) for lb in labels):
        raise ValidationError(
            f"{value!r} is neither an IP address nor a host name.", code="invalid_address"
        )


def validate_port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValidationError("A port is a number from 1 to 65535.", code="invalid_port")


def validate_qos_timeout(value: int) -> None:
    low, high = QOS_TIMEOUT_RANGE_MS
    if not low <= value <= high:
        raise ValidationError(
            f"The QoS timeout is between {low} and {high} ms.", code="invalid_qos_timeout"
        )


def validate_x509_dn(value: str) -> None:
    """An X.509 distinguished name in RFC 4514 form, e.g. ``CN=node1,O=Example``."""
    if not value:
        return
    from cryptography import x509

    try:
        name = x509.Name.from_rfc4514_string(value)
    except ValueError as exc:
        raise ValidationError(
            f"Not an X.509 distinguished name: {exc}", code="invalid_dn"
        ) from None
    if not list(name):
        raise ValidationError(
            "An X.509 distinguished name needs at least one attribute.", code="invalid_dn"
        )


def validate_virtual_ip(address: str | None, mask: int | None, interface: str) -> None:
    """The VIP is all-or-nothing; it must be an IP, never a host name (SPEC §5.2, §5.4)."""
    given = [address not in (None, ""), mask is not None, bool(interface)]
    if not any(given):
        return
    if not all(given):
        raise field_error(
            "vip_address",
            "A virtual IP needs an address, a CIDR mask and an interface, or none.",
            "incomplete_vip",
        )
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise field_error(
            "vip_address", "The virtual IP must be an IP address.", "invalid_vip"
        ) from None
    if not 0 <= mask <= ip.max_prefixlen:
        raise field_error(
            "vip_mask",
            f"A CIDR mask for IPv{ip.version} is 0 to {ip.max_prefixlen}.",
            "invalid_vip_mask",
        )


def validate_database_status(status: str, member_is_primary: bool) -> None:
    if member_is_primary and status in NON_PRIMARY_DATABASE_STATUSES:
        raise ValidationError(
            f"{status!r} is not a status a primary's copy can have.", code="invalid_status"
        )
    if not member_is_primary and status in PRIMARY_ONLY_DATABASE_STATUSES:
        raise ValidationError("Only the primary's copy is Normal.", code="invalid_status")


# --- Membership limits (SPEC §1.4, §1.6) ------------------------------------------------------
def check_member_limits(*, mirror, member_type, instance_memberships, mirror_members) -> None:
    """Refuse a membership that breaks a limit.

    `mirror_members` are the mirror's other members (type strings); `instance_memberships` are
    the (mirror name, type) pairs of every other mirror the same instance already belongs to.
    """
    types = list(mirror_members)
    if len(types) + 1 > MAX_MEMBERS_PER_MIRROR:
        raise ValidationError(
            f"Mirror {mirror} already has {MAX_MEMBERS_PER_MIRROR} members.",
            code="too_many_members",
        )
    if member_type == FAILOVER and types.count(FAILOVER) >= MAX_FAILOVER_MEMBERS:
        raise ValidationError(
            f"Mirror {mirror} already has two failover members.", code="too_many_failover_members"
        )
    if member_type in ASYNC_TYPES and sum(t in ASYNC_TYPES for t in types) >= MAX_ASYNC_MEMBERS:
        raise ValidationError(
            f"Mirror {mirror} already has {MAX_ASYNC_MEMBERS} async members.",
            code="too_many_async_members",
        )
    others = list(instance_memberships)
    if not others:
        return
    where = ", ".join(sorted(name for name, _ in others))
    if member_type == FAILOVER:
        raise ValidationError(
            f"A failover member belongs to one mirror; this instance is already in {where}.",
            code="failover_in_one_mirror",
        )
    if member_type == DR:
        raise ValidationError(
            f"A DR async belongs to one mirror; this instance is already in {where}.",
            code="dr_in_one_mirror",
        )
    if any(t not in REPORTING_TYPES for _, t in others):
        raise ValidationError(
            f"This instance is a failover or DR member of {where} and cannot join another mirror.",
            code="instance_not_reporting",
        )
    if any(t != member_type for _, t in others):
        raise ValidationError(
            "A reporting async joins further mirrors only as the same kind of reporting member.",
            code="reporting_kind_mismatch",
        )
    if len(others) + 1 > MAX_MIRRORS_PER_REPORTING_ASYNC:
        raise ValidationError(
            f"A reporting async belongs to at most {MAX_MIRRORS_PER_REPORTING_ASYNC} mirrors.",
            code="too_many_mirrors",
        )


def check_arbiter_placement(arbiter_host: str, promotable_member_hosts) -> None:
    """The arbiter may not run on a host of a failover or DR member of the same mirror (§1.6)."""
    if not arbiter_host:
        return
    if arbiter_host.lower() in {h.lower() for h in promotable_member_hosts if h}:
        raise ValidationError(
            f"The arbiter cannot run on {arbiter_host}: a failover or DR member of this mirror "
            f"runs there.",
            code="arbiter_on_member_host",
        )
