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
    # the primary is whoever says so now: roles change with every takeover
    primaries = [m for m in members if m.status in (catalog.PRIMARY, catalog.IN_TROUBLE)]
    if not primaries:
        becoming = [m.name for m in members if m.status == catalog.TRANSITION]
        if becoming:
            return Health("warn", f"{becoming[0]} is becoming primary")
        return Health("bad", "no primary")
    if len(primaries) > 1:
        return Health("bad", "two primaries")
    if primaries[0].status == catalog.IN_TROUBLE:
        return Health("bad", f"primary {primaries[0].name} In Trouble")
    wrong = []
    for m in members:
        if m in primaries:
            continue
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
