"""The portal's own records, one verb-named function per change.

A mirror's rows (its members, their DNs, databases and copies) are what its members answered:
operators ask for changes through members.actions (a job), and members.reconcile records the
answers. What the portal keeps for itself is changed here: the hosts (and what a "check host"
job found), the mirror settings the portal keeps (the arbiter, the VIP; members.actions sends
the engine's settings to the primary), a mirrored database's startup flag, and forgetting a
mirror. Each runs in one transaction: validate the whole object (`full_clean`, which applies
`members.rules`), save, and write the audit event.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import audit
from members import rules
from members.models import Host, Mirror, MirroredDatabase

MIRROR_EDITABLE = {
    "requires_tls",
    "arbiter_host",
    "arbiter_port",
    "vip_address",
    "vip_mask",
    "vip_interface",
    "failover_compression",
    "failover_compression_type",
    "async_compression",
    "async_compression_type",
    "qos_timeout_ms",
    "parallel_dejournaling",
}
HOST_EDITABLE = {"name", "address", "agent_port", "tls_dn", "credential"}
DATABASE_EDITABLE = {"mount_required_at_startup"}


def _update(actor, obj, changes: dict, editable: set, immutable_reason: str, action: str):
    """Apply `changes` (only `editable` fields), validate, save and audit before/after."""
    unknown = set(changes) - editable
    if unknown:
        raise ValidationError(
            {f: ValidationError(immutable_reason, code="immutable") for f in sorted(unknown)}
        )
    before = audit.snapshot(obj)
    for field, value in changes.items():
        setattr(obj, field, value)
    _save(obj)
    audit.record(actor, action, obj, before=before, after=audit.snapshot(obj))
    return obj


def _save(obj):
    obj.full_clean()
    obj.save()
    return obj


# --- Mirrors ----------------------------------------------------------------------------------
@transaction.atomic
def update_mirror(actor, mirror: Mirror, **changes) -> Mirror:
    if "name" in changes and rules.normalize_mirror_name(changes["name"]) == mirror.name:
        changes.pop("name")
    return _update(
        actor, mirror, changes, MIRROR_EDITABLE, "A mirror's name never changes.", "mirror.update"
    )


@transaction.atomic
def forget_mirror(actor, mirror: Mirror, *, reason: str) -> None:
    """The portal stops keeping the mirror (its members, databases, drift); the members are not
    told. Its jobs and audit events stay, pointing at nothing."""
    before = {**audit.snapshot(mirror), "reason": reason}
    audit.record(actor, "mirror.forget", mirror, before=before)
    mirror.delete()


# --- Hosts ------------------------------------------------------------------------------------
@transaction.atomic
def register_host(actor, **fields) -> Host:
    host = _save(Host(**fields))
    audit.record(actor, "host.create", host, after=audit.snapshot(host))
    return host


@transaction.atomic
def update_host(actor, host: Host, **changes) -> Host:
    return _update(
        actor, host, changes, HOST_EDITABLE, "This field cannot be changed.", "host.update"
    )


@transaction.atomic
def delete_host(actor, host: Host) -> None:
    if host.members.exists():
        raise ValidationError("Remove this host's members before the host.", code="host_in_use")
    audit.record(actor, "host.delete", host, before=audit.snapshot(host))
    host.delete()


def record_host_check(
    host: Host, *, reachable: bool, rtt_ms: float | None, error: str, tls_dn: str = ""
) -> Host:
    """Store what a "check host" job found. Observations are not configuration: no audit. A host
    registered without its agent's DN takes the one the agent presented (first use)."""
    Host.objects.filter(pk=host.pk).update(
        reachable=reachable, rtt_ms=rtt_ms, last_check_error=error, last_checked_at=timezone.now()
    )
    if tls_dn:
        Host.objects.filter(pk=host.pk, tls_dn="").update(tls_dn=tls_dn)
    host.refresh_from_db()
    return host


# --- Mirrored databases -----------------------------------------------------------------------
@transaction.atomic
def update_mirrored_database(actor, database: MirroredDatabase, **changes) -> MirroredDatabase:
    if "name" in changes and str(changes["name"]).upper() == database.name:
        changes.pop("name")
    return _update(
        actor,
        database,
        changes,
        DATABASE_EDITABLE,
        "A mirror database's name never changes.",
        "database.update",
    )
