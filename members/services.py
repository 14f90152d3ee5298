"""Every change to the mirror configuration, as one verb-named function each.

Each runs in one transaction: validate the whole object (`full_clean`, which applies
`members.rules`), save, and write the audit event. Views, API views and tasks call these and
nothing else to change configuration; the admin only shows it.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import audit
from members import rules
from members.models import (
    DatabaseCopy,
    Host,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)
from portal.exceptions import StateConflict

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
MEMBER_EDITABLE = {
    "superserver_address",
    "superserver_port",
    "mirror_private_address",
    "agent_address",
    "agent_port",
}
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
def create_mirror(actor, **fields) -> Mirror:
    mirror = _save(Mirror(**fields))
    audit.record(actor, "mirror.create", mirror, after=audit.snapshot(mirror))
    return mirror


@transaction.atomic
def update_mirror(actor, mirror: Mirror, **changes) -> Mirror:
    if "name" in changes and rules.normalize_mirror_name(changes["name"]) == mirror.name:
        changes.pop("name")
    return _update(
        actor, mirror, changes, MIRROR_EDITABLE, "A mirror's name never changes.", "mirror.update"
    )


@transaction.atomic
def delete_mirror(actor, mirror: Mirror) -> None:
    before = audit.snapshot(mirror)
    audit.record(actor, "mirror.delete", mirror, before=before)
    mirror.delete()


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


# --- Members ----------------------------------------------------------------------------------
@transaction.atomic
def add_member(actor, mirror: Mirror, **fields) -> Member:
    """Add a member; on a TLS mirror every member but the first waits for authorization (§4.7.3)."""
    # Lock the mirror row so two concurrent joins cannot both squeeze under a limit.
    Mirror.objects.select_for_update().filter(pk=mirror.pk).first()
    first = not mirror.members.exists()
    fields.setdefault(
        "authorization", Member.PENDING if mirror.requires_tls and not first else Member.AUTHORIZED
    )
    if first and fields.get("member_type") != rules.FAILOVER:
        raise rules.field_error(
            "member_type", "A mirror's first member is a failover member.", "first_member_failover"
        )
    member = _save(Member(mirror=mirror, **fields))
    audit.record(actor, "member.add", member, after=audit.snapshot(member))
    return member


@transaction.atomic
def update_member(actor, member: Member, **changes) -> Member:
    for field in ("name", "member_type"):
        if field in changes and str(changes[field]).upper() == str(getattr(member, field)).upper():
            changes.pop(field)
    return _update(
        actor,
        member,
        changes,
        MEMBER_EDITABLE,
        "Only a member's network addresses can be edited; remove and re-add it otherwise.",
        "member.update",
    )


@transaction.atomic
def remove_member(actor, member: Member) -> None:
    audit.record(actor, "member.remove", member, before=audit.snapshot(member))
    member.delete()


@transaction.atomic
def authorize_member(actor, member: Member) -> Member:
    # A conditional update, so that of two decisions made at once exactly one wins.
    before = audit.snapshot(member)
    won = Member.objects.filter(pk=member.pk, authorization=Member.PENDING).update(
        authorization=Member.AUTHORIZED, updated_at=timezone.now()
    )
    if not won:
        raise StateConflict("This member is not waiting for authorization.", code="not_pending")
    member.refresh_from_db()
    audit.record(actor, "member.authorize", member, before=before, after=audit.snapshot(member))
    return member


@transaction.atomic
def reject_member(actor, member: Member) -> None:
    # Locked while still pending (a queryset's delete() selects first and deletes by id, so it
    # would remove a member authorized in between).
    pending = Member.objects.select_for_update().filter(pk=member.pk, authorization=Member.PENDING)
    member = pending.first()
    if member is None:
        raise StateConflict("Only a pending member can be rejected.", code="not_pending")
    audit.record(actor, "member.reject", member, before=audit.snapshot(member))
    member.delete()


# --- X.509 DN updates (guide §5.4) ------------------------------------------------------------
@transaction.atomic
def request_dn_update(actor, member: Member, new_dn: str) -> PendingDNUpdate:
    update = PendingDNUpdate(member=member, new_dn=new_dn)
    _save(update)
    audit.record(actor, "dn_update.request", update, after=audit.snapshot(update))
    return update


@transaction.atomic
def decide_dn_update(actor, update: PendingDNUpdate, *, authorize: bool) -> PendingDNUpdate:
    # A conditional update, so that of two decisions made at once exactly one wins.
    before = audit.snapshot(update)
    won = PendingDNUpdate.objects.filter(pk=update.pk, state=PendingDNUpdate.PENDING).update(
        state=PendingDNUpdate.AUTHORIZED if authorize else PendingDNUpdate.REJECTED,
        decided_at=timezone.now(),
    )
    if not won:
        raise StateConflict("This DN update has already been decided.", code="not_pending")
    update.refresh_from_db()
    if authorize:
        member = update.member
        member_before = audit.snapshot(member)
        member.x509_dn = update.new_dn
        member.save(update_fields=["x509_dn", "updated_at"])
        audit.record(
            actor, "member.update", member, before=member_before, after=audit.snapshot(member)
        )
    action = "dn_update.authorize" if authorize else "dn_update.reject"
    audit.record(actor, action, update, before=before, after=audit.snapshot(update))
    return update


# --- Mirrored databases -----------------------------------------------------------------------
@transaction.atomic
def create_mirrored_database(actor, mirror: Mirror, **fields) -> MirroredDatabase:
    database = _save(MirroredDatabase(mirror=mirror, **fields))
    audit.record(actor, "database.create", database, after=audit.snapshot(database))
    return database


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


@transaction.atomic
def remove_mirrored_database(actor, database: MirroredDatabase) -> None:
    audit.record(actor, "database.remove", database, before=audit.snapshot(database))
    database.delete()


@transaction.atomic
def add_database_copy(
    actor, database: MirroredDatabase, member: Member, status: str = "Needs Activation"
) -> DatabaseCopy:
    copy = DatabaseCopy(
        database=database,
        member=member,
        status=status,
        failover_db=member.member_type != rules.RW_REPORTING,
    )
    _save(copy)
    audit.record(actor, "database_copy.add", copy, after=audit.snapshot(copy))
    return copy


@transaction.atomic
def remove_database_copy(actor, copy: DatabaseCopy) -> None:
    """The member stops holding this mirrored database (the database stays in the mirror)."""
    audit.record(actor, "database_copy.remove", copy, before=audit.snapshot(copy))
    copy.delete()
