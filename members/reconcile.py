"""Writing what the members answered (members/sync.py reads it) into the portal's rows.

Each function is one transaction. A change is audited with the member that reported it as the
actor ("member MIRRORA"); observations that change on every read (a member's status, an
instance's state) are stored without an event. Mirror settings are the exception to "the members
win": the portal keeps the value an operator set, and a primary that differs is a Drift row
until the value is re-applied to the primary or adopted here.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from accounts import audit
from engine import rules as catalog
from members import rules
from members.models import (
    DatabaseCopy,
    Drift,
    Host,
    Instance,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)

# The engine's setting names and the portal's fields (only `tls` is spelt differently).
SETTING_FIELDS = {key: ("requires_tls" if key == "tls" else key) for key in catalog.SETTINGS}


def split_address(text: str) -> tuple[str, int | None]:
    """ "host:port" as the engine writes it (engine/member/config.py Address)."""
    if not text:
        return "", None
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


@transaction.atomic
def record_instances(host: Host, rows: list[dict]) -> None:
    """The instances `host`'s agent reports, replacing what it reported before."""
    now = timezone.now()
    seen = []
    for row in rows:
        cert = row.get("certificate") or {}
        not_after = cert.get("not_after")
        Instance.objects.update_or_create(
            host=host,
            name=row["name"],
            defaults={
                "superserver": row.get("superserver") or "",
                "state": row.get("state") or "",
                "role": row.get("role") or "",
                "mirror_name": row.get("mirror") or "",
                "member_name": row.get("member") or "",
                "member_type": row.get("type") or "",
                "certificate_dn": cert.get("subject_dn") or "",
                "certificate_not_after": dt.datetime.fromisoformat(not_after)
                if not_after
                else None,
                "seen_at": now,
            },
        )
        seen.append(row["name"])
    Instance.objects.filter(host=host).exclude(name__in=seen).delete()


def _mirror_settings(settings: dict) -> dict:
    return {SETTING_FIELDS[key]: value for key, value in settings.items() if key in SETTING_FIELDS}


@transaction.atomic
def record_observed_mirror(view, *, adopt_settings=False) -> tuple[Mirror, list[str]]:
    """Make the portal's rows say what `view` (members/sync.py MirrorView) says; the lines
    describe each change. `adopt_settings` takes the primary's settings as the portal's: all of
    them (True: an import, or an operator adopting drift) or those named (the engine's names:
    the ones an edit just applied); a difference in any other is a Drift row."""
    changes: list[str] = []
    actor = f"member {view.source}"
    # NO KEY: the collector's Event rows refer to this row, and their foreign-key check (FOR
    # KEY SHARE) must not wait for a refresh that holds member rows it wants
    mirror = Mirror.objects.select_for_update(no_key=True).filter(name=view.name).first()
    observed = _mirror_settings(view.settings)
    if adopt_settings is True:
        adopted = set(observed)
    else:
        adopted = {SETTING_FIELDS[key] for key in adopt_settings or ()}
    if mirror is None:
        mirror = Mirror.objects.create(name=view.name, **observed)
        audit.record(actor, "mirror.import", mirror, after=audit.snapshot(mirror))
        changes.append(f"mirror {mirror} recorded")
    elif adopted:
        _adopt(actor, mirror, {k: v for k, v in observed.items() if k in adopted}, changes)
    _record_drift(mirror, {k: v for k, v in observed.items() if k not in adopted}, changes)
    members = _record_members(actor, mirror, view, changes)
    _record_dn_updates(actor, view, members, changes)
    _record_databases(actor, mirror, view, members, changes)
    return mirror, changes


def _adopt(actor, mirror: Mirror, observed: dict, changes: list[str]) -> None:
    differing = {k: v for k, v in observed.items() if getattr(mirror, k) != v}
    if not differing:
        return
    before = audit.snapshot(mirror)
    for key, value in differing.items():
        setattr(mirror, key, value)
    mirror.save()
    audit.record(actor, "mirror.update", mirror, before=before, after=audit.snapshot(mirror))
    changes.append(f"mirror settings taken from the primary: {', '.join(sorted(differing))}")


def _record_drift(mirror: Mirror, observed: dict, changes: list[str]) -> None:
    """Drift rows for the settings in `observed` that differ; any other row is settled."""
    kept = []
    for key, value in observed.items():
        desired = getattr(mirror, key)
        if desired == value:
            continue
        drift, created = Drift.objects.update_or_create(
            mirror=mirror, setting=key, defaults={"desired": str(desired), "observed": str(value)}
        )
        kept.append(drift.pk)
        if created:
            changes.append(f"drift: {key} is {value} on the primary, {desired} in the portal")
    Drift.objects.filter(mirror=mirror).exclude(pk__in=kept).delete()


def _record_members(actor, mirror: Mirror, view, changes: list[str]) -> dict[str, Member]:
    now = timezone.now()
    # every member row locked at once, in primary-key order: the collector writes statuses in
    # that order too (monitor/collector.py), so the two never wait for each other in a circle
    rows = Member.objects.select_for_update(no_key=True, of=("self",)).filter(mirror=mirror)
    rows = rows.order_by("pk")
    existing = {m.name: m for m in rows.select_related("host")}
    members = {}
    for seen in view.members:
        superserver, port = split_address(seen.superserver)
        private, _ = split_address(seen.private)
        wanted = {
            "member_type": seen.type,
            "superserver_address": superserver,
            "superserver_port": port or 0,
            "mirror_private_address": private,
            "x509_dn": seen.dn,
            "authorization": Member.AUTHORIZED if seen.authorized else Member.PENDING,
        }
        if seen.instance is not None:
            host = seen.instance.host
            wanted.update(host=host, agent_address=host.address, agent_port=host.agent_port)
        member = existing.pop(seen.name, None)
        if member is None:
            if "host" not in wanted:
                changes.append(f"member {seen.name}: not recorded, {seen.problem}")
                continue
            member = Member.objects.create(mirror=mirror, name=seen.name, **wanted)
            audit.record(actor, "member.add", member, after=audit.snapshot(member))
            changes.append(f"member {seen.name} recorded ({seen.type})")
        else:
            differing = {k: v for k, v in wanted.items() if getattr(member, k) != v}
            if differing:
                before = audit.snapshot(member)
                for key, value in differing.items():
                    setattr(member, key, value)
                member.save()
                audit.record(
                    actor, "member.update", member, before=before, after=audit.snapshot(member)
                )
                changes.append(f"member {seen.name}: {', '.join(sorted(differing))} changed")
        if seen.status is not None:
            Member.objects.filter(pk=member.pk).update(status=seen.status, observed_at=now)
            member.status, member.observed_at = seen.status, now
        members[seen.name] = member
    for gone in existing.values():
        audit.record(actor, "member.gone", gone, before=audit.snapshot(gone))
        changes.append(f"member {gone.name} is no longer in the mirror")
        gone.delete()
    return members


@transaction.atomic
def record_arbiter(mirror_name: str, arbiter: str | None) -> None:
    """The arbiter the primary answered that it keeps ("host:port" or none), as the mirror's."""
    mirror = Mirror.objects.select_for_update(no_key=True).filter(name=mirror_name).first()
    if mirror is None:
        return
    host, port = split_address(arbiter or "")
    before = {"arbiter_host": mirror.arbiter_host, "arbiter_port": mirror.arbiter_port}
    mirror.arbiter_host = host
    mirror.arbiter_port = port or mirror.arbiter_port
    after = {"arbiter_host": mirror.arbiter_host, "arbiter_port": mirror.arbiter_port}
    if after != before:
        mirror.save(update_fields=list(after))
        audit.record(f"mirror {mirror.name}", "mirror.arbiter", mirror, before=before, after=after)


@transaction.atomic
def record_no_failover(member: Member, value: bool) -> None:
    """The member's answer to a set or clear of "no failover", audited as its own word."""
    _record_own_word(member, "no_failover", value, "member.no_failover")


@transaction.atomic
def record_validated_cleared(member: Member) -> None:
    """The member's agent cleared its ValidatedMember (guide §6.3.1.1): its status does not
    report the flag and the portal keeps no field for it, so its answer is an audit event,
    with the member as the actor."""
    audit.record(
        f"member {member.name}",
        "member.clear_validated_member",
        member,
        after={"validated_member": False},
    )


@transaction.atomic
def record_member_type(member: Member, member_type: str) -> bool:
    """The type `member` reports itself (a promotion or demotion, guide §5.5, §5.6, makes it
    restart in another), audited as its own word; whether it changed."""
    if member_type not in catalog.MEMBER_TYPES:
        return False
    return _record_own_word(member, "member_type", member_type, "member.update")


def _record_own_word(member: Member, field: str, value, action: str) -> bool:
    """One field of `member` as the member itself answered it, audited with the member as the
    actor (only the field, not a whole snapshot); whether it changed."""
    before = getattr(member, field)
    if before == value:
        return False
    Member.objects.filter(pk=member.pk).update(**{field: value})
    setattr(member, field, value)
    audit.record(
        f"member {member.name}", action, member, before={field: before}, after={field: value}
    )
    return True


def _record_dn_updates(actor, view, members: dict[str, Member], changes: list[str]) -> None:
    open_rows = {
        u.member.name: u
        for u in PendingDNUpdate.objects.filter(
            member__in=members.values(), state=PendingDNUpdate.PENDING
        ).select_related("member")
    }
    for name, dn in view.dn_updates.items():
        member = members.get(name)
        if member is None:
            continue
        cert = view.dn_update_certs.get(name) or {}
        seen = {"fingerprint": cert.get("fingerprint") or "", "issuer": cert.get("issuer") or ""}
        row = open_rows.pop(name, None)
        if row is not None and row.new_dn == dn and row.fingerprint in ("", seen["fingerprint"]):
            if (row.fingerprint, row.issuer) != (seen["fingerprint"], seen["issuer"]):
                row.fingerprint, row.issuer = seen["fingerprint"], seen["issuer"]
                row.save(update_fields=["fingerprint", "issuer"])  # recorded before these were
            continue
        if row is not None:  # another certificate's request now: the older one was decided
            _decide(actor, row, PendingDNUpdate.REJECTED)
        update = PendingDNUpdate.objects.create(member=member, new_dn=dn, **seen)
        audit.record(actor, "dn_update.request", update, after=audit.snapshot(update))
        changes.append(
            f"member {name} presents a new DN, waiting for authorization: {dn}"
            + (f" (SHA-256 {seen['fingerprint']}, issuer {seen['issuer']})" if cert else "")
        )
    for name, row in open_rows.items():  # decided on the primary (here, or by someone else)
        member = members[name]
        state = (
            PendingDNUpdate.AUTHORIZED if member.x509_dn == row.new_dn else PendingDNUpdate.REJECTED
        )
        _decide(actor, row, state)
        changes.append(f"DN update of {name}: {state} on the primary")


DECISION_ACTIONS = {
    PendingDNUpdate.AUTHORIZED: "dn_update.authorize",
    PendingDNUpdate.REJECTED: "dn_update.reject",
}


def _decide(actor, row: PendingDNUpdate, state: str) -> None:
    before = audit.snapshot(row)
    row.state, row.decided_at = state, timezone.now()
    row.save(update_fields=["state", "decided_at"])
    audit.record(actor, DECISION_ACTIONS[state], row, before=before, after=audit.snapshot(row))


def _record_databases(actor, mirror: Mirror, view, members: dict[str, Member], changes) -> None:
    reached = {
        m.name: m.databases for m in view.members if m.databases is not None and m.name in members
    }
    names = sorted({db for copies in reached.values() for db in copies})
    databases = {d.name: d for d in MirroredDatabase.objects.filter(mirror=mirror)}
    for name in names:
        if name not in databases:
            databases[name] = MirroredDatabase.objects.create(mirror=mirror, name=name)
            audit.record(actor, "database.add", databases[name], after={"name": name})
            changes.append(f"database {name} recorded")
    copies = {
        (c.database.name, c.member.name): c
        for c in DatabaseCopy.objects.filter(database__mirror=mirror).select_related(
            "database", "member"
        )
    }
    for member_name, held in reached.items():
        member = members[member_name]
        for db, status in held.items():
            copy = copies.pop((db, member_name), None)
            if copy is None:
                DatabaseCopy.objects.create(
                    database=databases[db],
                    member=member,
                    status=status,
                    failover_db=member.member_type != rules.RW_REPORTING,
                )
                changes.append(f"{db} on {member_name}: {status}")
            elif copy.status != status:
                DatabaseCopy.objects.filter(pk=copy.pk).update(status=status)
                changes.append(f"{db} on {member_name}: {copy.status} -> {status}")
    # copies of members that answered and no longer list them are gone; others are unknown now
    for (db, member_name), copy in copies.items():
        if member_name in reached:
            copy.delete()
            changes.append(f"{db} on {member_name}: no longer there")
    for name, database in databases.items():
        if name not in names and not database.copies.exists() and len(reached) == len(members):
            audit.record(actor, "database.gone", database, before=audit.snapshot(database))
            database.delete()
            changes.append(f"database {name} is no longer in the mirror")
