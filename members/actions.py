"""What an operator may ask of the members, one verb-named function per operation.

Each checks the request with the shared rules (members.rules over engine/rules.py) and what the
portal last saw, then starts the job that does it (members.operations) and returns the job.
Nothing here changes a mirror's rows: the job records what the members answer. Decisions on one
member (authorize, reject, a DN) are serialized: while one is under way, another is a 409.
Destructive ones (remove or reject a member, remove or forget the mirror, turn TLS off, remove a
database copy, revoke an application credential) go ahead only when the caller typed the mirror's
name (`check_confirmed`).
"""

from __future__ import annotations

import re

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts import audit
from engine import rules as catalog
from members import reconcile, rules, services
from members.access import check_may_run, shown_mirror_name
from members.models import DatabaseCopy, Host, Instance, Member, Mirror, PendingDNUpdate
from members.operations import app_credentials
from portal.exceptions import StateConflict
from tasks.models import Job
from tasks.services import start_job

ACTIVE = [Job.QUEUED, Job.RUNNING]
DECISIONS = [
    "authorize_member",
    "reject_member",
    "authorize_dn_update",
    "reject_dn_update",
    "remove_member",
]
ENGINE_NAMES = {field: key for key, field in reconcile.SETTING_FIELDS.items()}
MIRROR_SWITCHES = {"stop_mirroring", "start_mirroring", "stop_dejournaling", "start_dejournaling"}
COPY_OPERATIONS = {
    "download": "download_database",
    "activate": "activate_database",
    "mount": "mount_database",
    "dismount": "dismount_database",
    "remove": "remove_database",
    "pause": "pause_dejournaling",
    "resume": "resume_dejournaling",
}


def _member_job(actor, kind: str, member: Member, params=None) -> Job:
    check_may_run(actor, kind, member.mirror_id, member)
    return start_job(actor, kind, member, params=params, mirror=member.mirror, member=member)


def _mirror_job(actor, kind: str, mirror: Mirror, params=None) -> Job:
    return start_job(actor, kind, mirror, params=params, mirror=mirror)


def claim(member: Member, kinds=DECISIONS) -> None:
    """Serialize decisions on `member`: the write takes the row lock (PostgreSQL) or the
    database's write lock (SQLite) first, so a second request sees the first one's job."""
    Member.objects.filter(pk=member.pk).update(updated_at=timezone.now())
    running = Job.objects.filter(member=member, kind__in=kinds, state__in=ACTIVE).first()
    if running is not None:
        raise StateConflict(
            f"A decision on {member.name} is already under way (job {running.pk}, {running.kind}).",
            code="in_progress",
        )


def check_confirmed(mirror: Mirror, confirm: str) -> None:
    """The guard on every destructive operation: the caller types the mirror's name (any case).
    Missing or wrong, the request is refused with `not_confirmed` and nothing starts."""
    if (confirm or "").strip().upper() != mirror.name:
        raise rules.field_error(
            "confirm", f"Type the mirror's name, {mirror.name}, to confirm.", "not_confirmed"
        )


# --- Hosts and reading the members ------------------------------------------------------------
def check_host(actor, host: Host, *, send: bool = True) -> Job:
    return start_job(actor, "check_host", host, send=send)


def import_mirror(actor, host: Host, instance: str, mirror: str = "", send=True) -> Job:
    instance = instance.strip().upper()
    if not instance:
        raise rules.field_error("instance", "Name the instance to import from.", "required")
    params = {"host": host.pk, "instance": instance}
    if mirror:
        with rules.about("mirror"):
            params["mirror"] = rules.normalize_mirror_name(mirror)
    return start_job(actor, "import_mirror", host, params=params, send=send)


def set_instance_tls(actor, instance: Instance, *, cert: str, key: str, ca: str) -> Job:
    for field, path in (("cert", cert), ("key", key), ("ca", ca)):
        if not path.startswith("/"):
            raise rules.field_error(field, "An absolute path on the instance's host.", "invalid")
    params = {"cert": cert, "key": key, "ca": ca}
    return start_job(actor, "set_instance_tls", instance, params=params)


def refresh_mirror(actor, mirror: Mirror) -> Job:
    return _mirror_job(actor, "refresh_mirror", mirror)


def review_mirror(actor, mirror: Mirror) -> Job:
    return _mirror_job(actor, "review_mirror", mirror)


def adopt_settings(actor, mirror: Mirror) -> Job:
    return _mirror_job(actor, "adopt_settings", mirror)


def reapply_settings(actor, mirror: Mirror) -> Job:
    return _mirror_job(actor, "reapply_settings", mirror)


# --- Creating, joining, deciding ------------------------------------------------------------
def _engine_settings(fields: dict) -> dict:
    """Portal field names to the engine's, each value checked by the catalog."""
    out = {}
    for field, value in fields.items():
        key = ENGINE_NAMES[field]
        with rules.about(field):
            out[key] = rules.check_setting(key, value)
    return out


def _address(field: str, value: str) -> str:
    host, port = reconcile.split_address(value or "")
    with rules.about(field):
        if not host or port is None:
            raise ValidationError("Give an address as host:port.", code="invalid")
        rules.validate_host_address(host)
        rules.validate_port(port)
    return f"{host}:{port}"


@transaction.atomic
def create_mirror(actor, *, host: Host, instance: str, name: str, private: str, **settings) -> Job:
    with rules.about("name"):
        name = rules.normalize_mirror_name(name)
    if Mirror.objects.filter(name=name).exists():
        raise rules.field_error("name", f"Mirror {name} is already registered.", "unique")
    own = {k: v for k, v in settings.items() if k not in ENGINE_NAMES}
    Mirror(name=name, **own).full_clean(exclude=["name"], validate_unique=False)
    params = {
        "host": host.pk,
        "instance": instance.strip().upper(),
        "name": name,
        "private": _address("private", private),
        "settings": _engine_settings({k: v for k, v in settings.items() if k in ENGINE_NAMES}),
        "portal_settings": own,
    }
    if own.get("arbiter_host"):
        params["arbiter"] = arbiter_address(Mirror(**own))
    return start_job(actor, "create_mirror", host, params=params)


def arbiter_address(mirror: Mirror) -> str:
    """The arbiter as the primary is given it ("host:port"), "" for none."""
    if not mirror.arbiter_host:
        return ""
    host = mirror.arbiter_host
    return f"[{host}]:{mirror.arbiter_port}" if ":" in host else f"{host}:{mirror.arbiter_port}"


@transaction.atomic
def join_mirror(
    actor,
    mirror: Mirror,
    *,
    host: Host,
    instance: str,
    member_type: str,
    private: str = "",
    member: str = "",
) -> Job:
    if member_type not in catalog.MEMBER_TYPES:
        valid = ", ".join(catalog.MEMBER_TYPES)
        raise rules.field_error(
            "member_type", f"{member_type!r} is not a member type ({valid}).", "invalid_choice"
        )
    name = (member or instance).strip()
    with rules.about("member"):
        name = rules.normalize_member_name(name, member_type)
    if member_type == catalog.FAILOVER and not private:
        raise rules.field_error(
            "private", "A failover member needs a mirror private address.", "required"
        )
    siblings = Member.objects.filter(mirror=mirror)
    if siblings.filter(name=name).exists():
        raise rules.field_error("member", f"{mirror.name} already has a member {name}.", "unique")
    others = Member.objects.filter(host=host, name=name).exclude(mirror=mirror)
    rules.check_member_limits(
        mirror=mirror.name,
        member_type=member_type,
        mirror_members=siblings.values_list("member_type", flat=True),
        instance_memberships=[
            (shown_mirror_name(actor, mirror_id, other), kind)
            for mirror_id, other, kind in others.values_list(
                "mirror_id", "mirror__name", "member_type"
            )
        ],
    )
    if member_type in rules.PROMOTABLE_TYPES:
        with rules.about("host"):
            rules.check_arbiter_placement(mirror.arbiter_host, [host.address, host.name])
    seen = host.instances.filter(name=instance.strip().upper()).first()
    if seen is not None and seen.superserver:
        address, port = reconcile.split_address(seen.superserver)
        probe = Member(name=name, superserver_address=address, superserver_port=port or 0)
        probe.host, probe.agent_port = host, host.agent_port
        rules.check_member_addresses(
            probe, siblings.values_list("name", "superserver_address", "superserver_port")
        )
    params = {"host": host.pk, "instance": instance.strip().upper(), "type": member_type}
    if private:
        params["private"] = _address("private", private)
    if member:
        params["member"] = name
    return _mirror_job(actor, "join_mirror", mirror, params)


@transaction.atomic
def authorize_member(actor, member: Member) -> Job:
    claim(member)
    member.refresh_from_db()
    if member.authorization != Member.PENDING:
        raise StateConflict("This member is not waiting for authorization.", code="not_pending")
    if member.mirror.requires_tls and not member.x509_dn:
        raise ValidationError(
            f"{member.name} presented no certificate DN: on a TLS mirror a member is "
            "authorized by the DN it presents (guide §4.7.3).",
            code="no_dn",
        )
    return _member_job(actor, "authorize_member", member)


@transaction.atomic
def reject_member(actor, member: Member, *, confirm: str) -> Job:
    """Dangerous: the member's configuration is refused and removed on the primary."""
    check_confirmed(member.mirror, confirm)
    claim(member)
    member.refresh_from_db()
    if member.authorization != Member.PENDING:
        raise StateConflict("Only a pending member can be rejected.", code="not_pending")
    return _member_job(actor, "reject_member", member)


@transaction.atomic
def decide_dn_update(actor, update: PendingDNUpdate, *, authorize: bool) -> Job:
    claim(update.member)
    update.refresh_from_db()
    if update.state != PendingDNUpdate.PENDING:
        raise StateConflict("This DN update has already been decided.", code="not_pending")
    kind = "authorize_dn_update" if authorize else "reject_dn_update"
    return _member_job(actor, kind, update.member, {"update": update.pk})


# --- Settings and addresses -------------------------------------------------------------------
@transaction.atomic
def edit_mirror(
    actor, mirror: Mirror, *, skip_verify: bool = False, confirm: str = "", **changes
) -> Job:
    """The settings the engine keeps go to the primary (the job records them once the primary
    has them); the portal's own (arbiter, VIP) are saved here, checked with the rest.
    Turning TLS off is dangerous (members are no longer authenticated by their certificate's
    DN, guide §4.7): it needs the mirror's name typed."""
    if mirror.requires_tls and changes.get("requires_tls") is False:
        check_confirmed(mirror, confirm)
    engine = {k: v for k, v in changes.items() if k in ENGINE_NAMES}
    own = {k: v for k, v in changes.items() if k not in ENGINE_NAMES}
    if own:
        services.update_mirror(actor, mirror, **own)
    params = {"settings": _engine_settings(engine), "skip_verify": bool(skip_verify)}
    if {"arbiter_host", "arbiter_port"} & set(own):
        params["arbiter"] = arbiter_address(mirror)  # the engine keeps it too: it uses it
    return _mirror_job(actor, "edit_mirror", mirror, params)


def update_member_address(actor, member: Member, *, superserver="", private="") -> Job:
    params = {}
    if superserver:
        params["superserver"] = _address("superserver", superserver)
        address, port = reconcile.split_address(params["superserver"])
        probe = Member(name=member.name, superserver_address=address, superserver_port=port)
        probe.host, probe.agent_port = member.host, member.host.agent_port
        siblings = Member.objects.filter(mirror=member.mirror_id).exclude(pk=member.pk)
        rules.check_member_addresses(
            probe, siblings.values_list("name", "superserver_address", "superserver_port")
        )
    if private:
        params["private"] = _address("private", private)
    if not params:
        raise ValidationError("Give a new superserver or private address.", code="required")
    return _member_job(actor, "update_member_address", member, params)


def set_superserver_port(actor, member: Member, port: int) -> Job:
    with rules.about("port"):
        rules.validate_port(port)
    return _member_job(actor, "set_superserver_port", member, {"port": int(port)})


# --- Leaving and removing ---------------------------------------------------------------------
@transaction.atomic
def remove_member(actor, member: Member, *, confirm: str) -> Job:
    """Dangerous: the primary removes the member; its copies are no longer mirrored there."""
    check_confirmed(member.mirror, confirm)
    claim(member)
    return _member_job(actor, "remove_member", member)


def leave_mirror(actor, member: Member, *, remove_db_attribute: bool = False) -> Job:
    return _member_job(
        actor, "leave_mirror", member, {"remove_db_attribute": bool(remove_db_attribute)}
    )


def remove_mirror(actor, mirror: Mirror, *, confirm: str, **flags) -> Job:
    """Remove the mirror from every member (an engine operation; the portal forgets it after)."""
    check_confirmed(mirror, confirm)
    params = {k: bool(flags.get(k)) for k in ("remove_db_attribute", "remove_tls")}
    return _mirror_job(actor, "remove_mirror", mirror, params)


def forget_mirror(actor, mirror: Mirror, *, confirm: str) -> None:
    """Unregister the mirror from the portal; nothing happens to its members."""
    check_confirmed(mirror, confirm)
    services.forget_mirror(actor, mirror, reason="forgotten by an operator")


def switch_member(actor, member: Member, kind: str) -> Job:
    if kind not in MIRROR_SWITCHES:
        raise ValueError(kind)
    return _member_job(actor, kind, member)


# --- Databases ------------------------------------------------------------------------------
def create_database(actor, mirror: Mirror, *, name: str, how: str = "create", members=None) -> Job:
    """`members`: who else gets a copy now (None: every other member; [] none yet)."""
    with rules.about("name"):
        name = rules.normalize_database_name(name)
    if how not in ("create", "add"):
        raise rules.field_error("how", "How is 'create' or 'add'.", "invalid_choice")
    known = set(mirror.members.values_list("name", flat=True))
    wanted = [m.upper() for m in members or ()]
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise rules.field_error(
            "members", f"Not members of {mirror.name}: {', '.join(unknown)}.", "unknown_member"
        )
    params = {"name": name, "how": how, "members": None if members is None else wanted}
    return _mirror_job(actor, "create_database", mirror, params)


def add_database_copy(actor, member: Member, name: str) -> Job:
    """An existing database (restored from the primary's files) added on a member."""
    with rules.about("name"):
        name = rules.normalize_database_name(name)
    return _member_job(actor, "add_database_copy", member, {"name": name})


def copy_operation(
    actor, copy: DatabaseCopy, operation: str, *, confirm: str = "", **params
) -> Job:
    """One member's copy. Removing it is dangerous (the member stops holding the database, and
    adding it back means restoring it, guide §4.10.5): it needs the mirror's name typed."""
    kind = COPY_OPERATIONS[operation]
    member = copy.member
    if operation == "remove":
        check_confirmed(member.mirror, confirm)
    return start_job(actor, kind, copy, params=params, mirror=member.mirror, member=member)


@transaction.atomic
def copy_operations(actor, copies, operation: str, *, confirm: str = "", **params) -> list[Job]:
    """The same operation on several copies, one job each: all start, or none (a page's
    multi-select, as the Mirror Monitor's "Select an action" does, guide §4.8.5)."""
    copies = list(copies)
    if not copies:
        raise rules.field_error("copies", "Select at least one database.", "required")
    return [copy_operation(actor, c, operation, confirm=confirm, **params) for c in copies]


def catchup_databases(actor, member: Member, databases: list[str], restored=()) -> Job:
    """Catch up (activating what needs it) copies the member holds; `restored`: databases whose
    files were restored there from the primary's, added first (guide §4.8.4)."""
    names = sorted({d.upper() for d in databases} | {d.upper() for d in restored})
    mirrored = set(member.mirror.databases.values_list("name", flat=True))
    held = set(member.database_copies.values_list("database__name", flat=True))
    held |= {d.upper() for d in restored} & mirrored
    unknown = sorted(set(names) - held)
    if not names or unknown:
        raise rules.field_error(
            "databases",
            f"{member.name} holds no copy of {', '.join(unknown)}."
            if unknown
            else "Name the databases.",
            "unknown_database" if unknown else "required",
        )
    params = {"databases": names}
    if restored:
        params["restored"] = sorted({d.upper() for d in restored})
    return _member_job(actor, "catchup_databases", member, params)


def clear_failover_db(actor, member: Member, databases: list[str] | None = None) -> Job:
    names = sorted({d.upper() for d in databases or ()})
    return _member_job(actor, "clear_failover_db", member, {"databases": names})


# --- Application credentials ----------------------------------------------------------------
# The instance's rule for a credential's name (engine/member/app_auth.py), checked here so that
# a name it would refuse starts no job. Names are kept as typed: the instance tells case apart.
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _credential_name(value) -> str:
    name = (value or "").strip()
    if not name:
        raise rules.field_error("name", "Name the application's credential.", "required")
    if not CREDENTIAL_NAME.fullmatch(name):
        raise rules.field_error(
            "name",
            "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            "invalid_credential_name",
        )
    return name


def list_app_credentials(actor, member: Member) -> Job:
    """Read the credentials the member's instance holds (names and creation times)."""
    return _member_job(actor, app_credentials.LIST, member)


def create_app_credential(actor, member: Member, name: str) -> Job:
    """A credential for one application on the member's instance; its secret waits, sealed on
    the job's row, for the operator who asked (`reveal_app_credential`)."""
    app_credentials.erase_expired_secrets()
    return _member_job(actor, app_credentials.CREATE, member, {"name": _credential_name(name)})


def revoke_app_credential(actor, member: Member, name: str, *, confirm: str) -> Job:
    """Dangerous: the application is refused from then on, and its open connections are closed
    at once; a new credential means a new secret to give it."""
    check_confirmed(member.mirror, confirm)
    return _member_job(actor, app_credentials.REVOKE, member, {"name": _credential_name(name)})


def reveal_app_credential(actor, job: Job) -> dict:
    """The secret of the credential `job` made, once, to the operator who asked for it; it is
    erased from the row as it is read (audited, naming the credential, never the secret)."""
    app_credentials.erase_expired_secrets()
    return _take_secret(actor, job)


@transaction.atomic
def _take_secret(actor, job: Job) -> dict:
    # the write lock first (PostgreSQL's row lock, SQLite's database lock), as claim does: a
    # second request waits, then finds the secret gone
    Job.objects.filter(pk=job.pk).update(progress=F("progress"))
    job = Job.objects.select_for_update(of=("self",)).select_related("member").get(pk=job.pk)
    if job.kind != app_credentials.CREATE:
        raise ValueError(job.kind)
    if job.requested_by_id is None or job.requested_by_id != getattr(actor, "pk", None):
        raise PermissionDenied("Only the operator who created the credential sees its secret.")
    if not job.is_final:
        raise StateConflict(
            f"The credential is not made yet: job {job.pk} is {job.state}.", code="not_ready"
        )
    if job.state != Job.SUCCEEDED:
        raise StateConflict(f"Job {job.pk} made no credential: {job.error}", code="no_secret")
    if not app_credentials.waiting_secret(job) or app_credentials.expired(job):
        raise StateConflict(
            "The secret is no longer kept: it is shown once, within "
            f"{app_credentials.REVEAL_WITHIN.seconds // 60} minutes of its making. If it is "
            "lost, revoke the credential and make a new one.",
            code="secret_gone",
        )
    secret = app_credentials.take_secret(job)
    name = job.params["name"]
    audit.record(actor, "app_credential.reveal", job.member or job, after={"credential": name})
    result = job.result or {}
    return {
        "job": job.pk,
        "member": result.get("member"),
        "instance": result.get("instance"),
        "host": result.get("host"),
        "name": name,
        "secret": secret,
    }
