"""Builders for test data. They go through the services, so test data obeys every rule.

Instances and drifts are observations (what an agent or a primary answered), which only a job
writes; they are made here the way such a job records them."""

import itertools

from django.utils import timezone

from members import services
from members.models import Drift, Instance

_seq = itertools.count(1)


def mirror(actor=None, **fields):
    fields.setdefault("name", f"MIR{next(_seq)}")
    return services.create_mirror(actor, **fields)


def host(actor=None, **fields):
    n = next(_seq)
    fields.setdefault("name", f"host{n}")
    fields.setdefault("address", f"10.0.{n // 250}.{n % 250 + 1}")
    return services.register_host(actor, **fields)


def member(mirror_obj, actor=None, **fields):
    n = next(_seq)
    fields.setdefault("member_type", "failover")
    fields.setdefault("name", f"NODE{n}")
    if "host" not in fields:
        fields["host"] = host(actor)
    fields.setdefault("superserver_address", fields["host"].address)
    fields.setdefault("superserver_port", 1972)
    return services.add_member(actor, mirror_obj, **fields)


def database(mirror_obj, actor=None, **fields):
    fields.setdefault("name", f"DB{next(_seq)}")
    return services.create_mirrored_database(actor, mirror_obj, **fields)


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
