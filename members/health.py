"""A mirror's health at a glance, from what its members said at the last refresh."""

from __future__ import annotations

from dataclasses import dataclass

from engine import rules as catalog

WANTED = {catalog.FAILOVER: (catalog.PRIMARY, catalog.BACKUP)}


@dataclass
class Health:
    level: str  # "ok", "warn", "bad" or "unknown"
    text: str


def mirror_health(members) -> Health:
    """`members`: the mirror's Member rows. Healthy: one Primary, the other failover member
    Backup, every async Connected, nobody waiting for authorization (guide §4.7.4)."""
    if not members:
        return Health("unknown", "no members")
    if all(m.observed_at is None for m in members):
        return Health("unknown", "not read from its members yet")
    statuses = [m.status for m in members]
    if statuses.count(catalog.PRIMARY) != 1:
        return Health("bad", "no primary" if catalog.PRIMARY not in statuses else "two primaries")
    wrong = []
    for m in members:
        if m.authorization == "pending":
            wrong.append(f"{m.name} waits for authorization")
        elif m.member_type == catalog.FAILOVER:
            if m.status not in WANTED[catalog.FAILOVER]:
                wrong.append(f"{m.name} {m.status or 'not reached'}")
        elif m.status != catalog.CONNECTED:
            wrong.append(f"{m.name} {m.status or 'not reached'}")
    if wrong:
        return Health("warn", "; ".join(wrong))
    return Health("ok", "healthy")
