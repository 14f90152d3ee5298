"""Registering a mirror that `python -m engine cluster build -f PLAN` built (the demo mirror of
`make run`) in the portal: the mirror and its settings, the hosts with their agents, the members
with their types and addresses, the databases and each member's copy.

Everything goes through `members.services`, so the rules and the audit trail apply as to any
other change. It is an "ensure": what already matches the plan is left alone, an address or a
setting that differs is updated, and what cannot be updated (a member's type or host) is
refused with the reason, so running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from engine.cluster.hosts import ORG
from engine.cluster.plan import LOOPBACK, Plan, PlanHost, PlanMember
from members import services
from members.models import DatabaseCopy, Host, Member, Mirror, MirroredDatabase


class PlanMismatch(Exception):
    """The portal holds something under a plan's name that the plan cannot be made to fit."""


@dataclass
class Registration:
    """What `register_plan` did: a line per object it created or changed, and the counts."""

    lines: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0

    def note(self, line: str, *, created: bool) -> None:
        self.lines.append(line)
        if created:
            self.created += 1
        else:
            self.updated += 1

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def mirror_fields(plan: Plan) -> dict:
    """The plan's settings as the portal's fields: the values read the same (engine/rules.py),
    only the engine's `tls` is the portal's `requires_tls`."""
    fields = {"requires_tls": plan.tls}
    fields.update({key: value for key, value in plan.settings.items() if key != "tls"})
    return fields


def agent_dn(host: PlanHost) -> str:
    return f"CN=agent-{host.name},O={ORG}"  # engine/cluster/hosts.py make_pki


def member_dn(member: PlanMember) -> str:
    return f"CN={member.name},O={ORG}"


def _changes(obj, wanted: dict) -> dict:
    return {k: v for k, v in wanted.items() if getattr(obj, k) != v}


def _ensure_mirror(actor, plan: Plan, done: Registration) -> Mirror:
    wanted = mirror_fields(plan)
    mirror = Mirror.objects.filter(name=plan.mirror.upper()).first()
    if mirror is None:
        mirror = services.create_mirror(actor, name=plan.mirror, **wanted)
        tls = "TLS" if mirror.requires_tls else "no TLS"
        done.note(f"created mirror {mirror} ({tls})", created=True)
    elif changes := _changes(mirror, wanted):
        services.update_mirror(actor, mirror, **changes)
        done.note(f"updated mirror {mirror}: {', '.join(sorted(changes))}", created=False)
    return mirror


def _ensure_host(actor, host: PlanHost, done: Registration) -> Host:
    wanted = {"address": LOOPBACK, "agent_port": host.agent_port, "tls_dn": agent_dn(host)}
    existing = Host.objects.filter(name=host.name).first()
    if existing is None:
        existing = services.register_host(actor, name=host.name, **wanted)
        done.note(f"created host {existing} (agent {LOOPBACK}:{host.agent_port})", created=True)
    elif changes := _changes(existing, wanted):
        services.update_host(actor, existing, **changes)
        done.note(f"updated host {existing}: {', '.join(sorted(changes))}", created=False)
    return existing


def _ensure_member(actor, mirror, plan, m: PlanMember, hosts: dict, done) -> Member:
    host = hosts[m.host]
    addresses = {
        "superserver_address": LOOPBACK,
        "superserver_port": m.superserver_port,
        "mirror_private_address": LOOPBACK if m.private_port else "",
        "agent_address": LOOPBACK,
        "agent_port": host.agent_port,
    }
    member = Member.objects.filter(mirror=mirror, name=m.name.upper()).first()
    new = member is None
    if new:
        member = services.add_member(
            actor,
            mirror,
            name=m.name,
            member_type=m.type,
            host=host,
            x509_dn=member_dn(m) if plan.tls else "",
            **addresses,
        )
        where = f"on {host}, superserver {m.superserver}"
        done.note(
            f"created member {member} ({member.get_member_type_display()} {where})", created=True
        )
    else:
        if member.member_type != m.type or member.host_id != host.pk:
            raise PlanMismatch(
                f"member {member} is a {member.get_member_type_display()} on host "
                f"{member.host} in the portal, a {m.type} on host {host} in the plan: "
                "remove it from the portal and run this again"
            )
        if changes := _changes(member, addresses):
            services.update_member(actor, member, **changes)
            done.note(f"updated member {member}: {', '.join(sorted(changes))}", created=False)
    if member.authorization == Member.PENDING:  # the build authorized every member it joined
        services.authorize_member(actor, member)
        if new:
            done.lines[-1] += ", authorized"
        else:
            done.note(f"authorized member {member}", created=False)
    return member


def _ensure_databases(actor, mirror, plan: Plan, members: dict, done: Registration) -> None:
    primary = plan.primary.name
    for db in plan.databases:
        database = MirroredDatabase.objects.filter(mirror=mirror, name__iexact=db.name).first()
        if database is None:
            database = services.create_mirrored_database(actor, mirror, name=db.name)
            done.note(f"created database {database}", created=True)
        have = set(
            DatabaseCopy.objects.filter(database=database).values_list("member__name", flat=True)
        )
        added = []
        for name in db.members:
            if name in have:
                continue  # its status is the monitor's to keep, not the plan's
            # the build ends once every copy is Normal on the primary, Dejournaling elsewhere
            status = "Normal" if name == primary else "Dejournaling"
            services.add_database_copy(actor, database, members[name], status=status)
            added.append(f"{name} ({status})")
        if added:
            done.created += len(added)
            done.lines.append(f"  its copies on {', '.join(added)}")


@transaction.atomic
def register_plan(plan: Plan, actor=None) -> Registration:
    """Make the portal's configuration hold the mirror `plan` describes (all or nothing)."""
    done = Registration()
    try:
        mirror = _ensure_mirror(actor, plan, done)
        hosts = {h.name: _ensure_host(actor, h, done) for h in plan.hosts}
        # the primary first: a mirror's first member is its first failover member
        order = [plan.primary, *(m for m in plan.members if m is not plan.primary)]
        members = {m.name: _ensure_member(actor, mirror, plan, m, hosts, done) for m in order}
        _ensure_databases(actor, mirror, plan, members, done)
    except ValidationError as exc:
        raise PlanMismatch(f"the portal refuses the plan's mirror: {_reasons(exc)}") from None
    return done


def _reasons(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return " ".join(exc.messages)
