"""The mirroring rules as the portal applies them.

The rules shared with the engine (names, member limits, member types, setting values and
ranges, database statuses) are engine/rules.py's; this module turns its verdicts into
ValidationErrors whose code is the catalog's reason code, gives its values the portal's labels,
and keeps the portal's own rules: addresses, ports, X.509 DNs, the virtual IP and the arbiter's
host. members/actions.py checks every operator's request with them before its job starts,
serializers and model validators call them too, so a request the members would refuse is
refused here first with the same code. What the members answer (members/reconcile.py) is
recorded as they said it. Section numbers are the source guide's (see docs/mirroring-model.md).
"""

import ipaddress
import re
from contextlib import contextmanager

from django.core.exceptions import ValidationError

from engine import rules as catalog

DEFAULT_AGENT_PORT = 2188
DEFAULT_ARBITER_PORT = catalog.ARBITER_PORT

# The catalog's values, as stored and sent on the wire, with the portal's labels.
FAILOVER, DR = catalog.FAILOVER, catalog.DR
RO_REPORTING, RW_REPORTING = catalog.RO_REPORTING, catalog.RW_REPORTING
_TYPE_LABELS = {DR: "Disaster Recovery (DR)"}  # the guide's Async System Type wording (§4.7.5)
MEMBER_TYPES = [
    (t, _TYPE_LABELS.get(t, catalog.MEMBER_TYPE_LABELS[t])) for t in catalog.MEMBER_TYPES
]
ASYNC_TYPES = catalog.ASYNC_TYPES
# Members an arbiter must never share a host with: they may become primary (guide §3.3.4).
PROMOTABLE_TYPES = catalog.PROMOTABLE_TYPES
COMPRESSION_MODES = [(m, m) for m in catalog.COMPRESSION_MODES]
_CODEC_LABELS = {"zlib": "zlib", "zstd": "Zstd", "lz4": "LZ4"}
COMPRESSION_TYPES = [(c, _CODEC_LABELS[c]) for c in catalog.COMPRESSION_TYPES]
_PARALLEL_LABELS = {
    catalog.PARALLEL_FAILOVER_DR: "Failover members and DR asyncs",
    catalog.PARALLEL_ALL: "All members, reporting asyncs included",
    catalog.PARALLEL_FAILOVER: "Failover members only",
}
PARALLEL_DEJOURNALING = [(p, _PARALLEL_LABELS[p]) for p in catalog.PARALLEL_DEJOURNALING]
DATABASE_STATUSES = [(s, s) for s in catalog.DATABASE_STATUSES]


def verdict(check, *args):
    """What a catalog check returns, or its RuleError as a ValidationError with its code."""
    try:
        return check(*args)
    except catalog.RuleError as exc:
        raise ValidationError(exc.message, code=exc.reason) from None


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


# --- The catalog's rules ----------------------------------------------------------------------
def normalize_mirror_name(value) -> str:
    """Mirror names are 1-15 letters or digits, stored uppercase (guide §4.7.1)."""
    return verdict(catalog.check_mirror_name, value)


def normalize_member_name(value, member_type: str) -> str:
    """Member names: at most 32 characters, stored uppercase; failover and async rules differ
    (guide §4.7.1, §4.7.5)."""
    return verdict(catalog.check_member_name, value, member_type)


def normalize_database_name(value) -> str:
    """Mirror DB names start with a letter or underscore, then letters, digits, - or _ (§4.8.2)."""
    return verdict(catalog.check_database_name, value)


def check_setting(key: str, value):
    return verdict(catalog.check_setting, key, value)


def validate_qos_timeout(value: int) -> None:
    check_setting("qos_timeout_ms", value)


def validate_database_status(status: str, member_is_primary: bool) -> None:
    verdict(catalog.check_database_status, status, member_is_primary)


def check_member_limits(*, mirror, member_type, instance_memberships, mirror_members) -> None:
    """Refuse a membership that breaks a limit (guide §3.1.2).

    `mirror_members` are the mirror's other members (type strings); `instance_memberships` are
    the (mirror name, type) pairs of every other mirror the same instance already belongs to.
    """
    verdict(catalog.check_mirror_limits, mirror, member_type, mirror_members)
    verdict(catalog.check_other_mirrors, mirror, member_type, instance_memberships)


# --- The portal's own rules: addresses, ports, DNs, the VIP ---------------------------------------
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def validate_host_address(value: str) -> None:
    """An IP address or a DNS host name (guide §3.6: names may stand in for IPs)."""
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
    """The VIP is all-or-nothing; it must be an IP, never a host name (guide §3.6, §4.13)."""
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


# --- The arbiter (guide §3.3.4) ----------------------------------------------------------------
def check_arbiter_placement(arbiter_host: str, promotable_member_hosts) -> None:
    """The catalog's rule (guide §3.3.4), as a ValidationError with its code."""
    verdict(catalog.check_arbiter_placement, arbiter_host, promotable_member_hosts)


def check_member_addresses(member, siblings) -> None:
    """A member answers where no other member of its mirror does, and its agent is its host's.

    `siblings`: (name, superserver address, superserver port) of the mirror's other members.
    Two members at one superserver address would be one instance counted twice; an agent port
    other than the host's names an agent that is not there (guide §3.1.3: one agent per host).
    """
    here = (member.superserver_address.lower(), member.superserver_port)
    for name, address, port in siblings:
        if (address.lower(), port) == here:
            raise field_error(
                "superserver_port",
                f"Member {name} of this mirror already answers at {address}:{port}.",
                "address_in_use",
            )
    if member.agent_port != member.host.agent_port:
        raise field_error(
            "agent_port",
            f"The agent of host {member.host.name} listens on port {member.host.agent_port}, "
            f"not {member.agent_port}.",
            "agent_port_mismatch",
        )
