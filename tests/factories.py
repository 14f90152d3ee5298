"""Builders for test data.

A host is the portal's own record, so it is registered through the service (validated and
audited). A mirror's rows (the mirror, its members, DN updates, databases and copies) are what
its members answered, which only a job records (members.reconcile); here they are written
directly through the models, each validated with `full_clean()` first, so seeded data still
obeys every model-level rule (members/models.py `clean()`: names, member limits, the arbiter's
host, addresses). No audit event is written for them: no operator made them.

Instances and drifts are observations too, made here the way such a job records them."""

import itertools

from django.utils import timezone

from members import rules, services
from members.models import (
    DatabaseCopy,
    Drift,
    Instance,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)

_seq = itertools.count(1)


def _saved(obj):
    obj.full_clean()
    obj.save()
    return obj


def host(actor=None, **fields):
    n = next(_seq)
    fields.setdefault("name", f"host{n}")
    fields.setdefault("address", f"10.0.{n // 250}.{n % 250 + 1}")
    return services.register_host(actor, **fields)


def mirror(**fields):
    fields.setdefault("name", f"MIR{next(_seq)}")
    return _saved(Mirror(**fields))


def member(mirror_obj, **fields):
    """A member as its mirror reports it. `authorization` defaults to what a member answers:
    on a TLS mirror the first member (the primary) is authorized and every later one waits for
    authorization (guide §4.7.3); on a mirror without TLS every member is authorized."""
    n = next(_seq)
    fields.setdefault("member_type", rules.FAILOVER)
    fields.setdefault("name", f"NODE{n}")
    if "host" not in fields:
        fields["host"] = host()
    fields.setdefault("superserver_address", fields["host"].address)
    fields.setdefault("superserver_port", 1972)
    if "authorization" not in fields:
        first = not mirror_obj.members.exists()
        waits = mirror_obj.requires_tls and not first
        fields["authorization"] = Member.PENDING if waits else Member.AUTHORIZED
    return _saved(Member(mirror=mirror_obj, **fields))


def dn_update(member_obj, new_dn, **fields):
    """A new DN `member_obj` presents, waiting for authorization (guide §5.4)."""
    return _saved(PendingDNUpdate(member=member_obj, new_dn=new_dn, **fields))


def database(mirror_obj, **fields):
    fields.setdefault("name", f"DB{next(_seq)}")
    return _saved(MirroredDatabase(mirror=mirror_obj, **fields))


def copy(database_obj, member_obj, **fields):
    """`member_obj`'s copy of `database_obj`; FailoverDB is set except on a read-write
    reporting member (guide §4.10.1), as the members report it."""
    fields.setdefault("failover_db", member_obj.member_type != rules.RW_REPORTING)
    return _saved(DatabaseCopy(database=database_obj, member=member_obj, **fields))


def instance(host_obj, **fields):
    """An instance as `host_obj`'s agent reported it at its last check."""
    fields.setdefault("name", f"IRIS{next(_seq)}")
    fields.setdefault("superserver", f"{host_obj.address}:1972")
    fields.setdefault("state", "up")
    fields.setdefault("seen_at", timezone.now())
    return Instance.objects.create(host=host_obj, **fields)


def drift(mirror_obj, setting="qos_timeout_ms", **fields):
    """A setting whose value on the primary differs from the portal's (a refresh found it)."""
    fields.setdefault("desired", str(getattr(mirror_obj, setting)))
    fields.setdefault("observed", "12345")
    return Drift.objects.create(mirror=mirror_obj, setting=setting, **fields)


def member_state(member_obj, status, **fields):
    """What the collector would have written for a member its agent streamed (monitor/)."""
    from monitor.models import MemberState

    now = timezone.now()
    fields.setdefault("seen_at", now)
    fields.setdefault("changed_at", now)
    return MemberState.objects.create(member=member_obj, status=status, **fields)
