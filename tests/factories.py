"""Builders for test data. They go through the services, so test data obeys every rule."""

import itertools

from members import services

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
