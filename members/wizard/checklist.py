"""The review after creation (guide §4.7.4): what a new mirror's members should say of
themselves, line by line, each line judged on what a review_mirror job read from them."""

from __future__ import annotations

from dataclasses import dataclass

from engine import rules as catalog

SETTLED_COPY = {"Normal", "Dejournaling"}  # the primary's copy, and a caught-up one elsewhere
ASYNC_TRANSFER = {catalog.ACTIVE, catalog.CAUGHT_UP}


@dataclass
class Line:
    text: str
    ok: bool | None  # None: nothing the members report can tell yet
    reason: str = ""


def _said(member: dict) -> str:
    return member["status"] or f"no answer ({member['problem'] or 'not reached'})"


def _member_lines(m: dict, want: str, role: str) -> list[Line]:
    lines = [
        Line(
            f"{m['name']} is {want}",
            m["status"] == want,
            "" if m["status"] == want else f"{role} says {_said(m)}",
        )
    ]
    if want == catalog.PRIMARY or m["status"] is None:
        return lines
    transfer_ok = {catalog.BACKUP: {catalog.ACTIVE}}.get(want, ASYNC_TRANSFER)
    lines.append(
        Line(
            f"{m['name']}'s journal transfer is {' or '.join(sorted(transfer_ok))}",
            m["journal_transfer"] in transfer_ok,
            "" if m["journal_transfer"] in transfer_ok else f"it is {m['journal_transfer']!r}",
        )
    )
    caught_up = m["dejournaling"] == catalog.CAUGHT_UP
    lines.append(
        Line(
            f"{m['name']}'s dejournaling is {catalog.CAUGHT_UP}",
            caught_up,
            "" if caught_up else f"it is {m['dejournaling']!r}",
        )
    )
    return lines


def _database_lines(members: list[dict], primary: dict | None) -> list[Line]:
    names = sorted(set((primary or {}).get("databases") or {}))
    must_hold = [m for m in members if m["type"] in catalog.PROMOTABLE_TYPES]
    lines = []
    for db in names:
        wrong = []
        for m in members:
            status = (m["databases"] or {}).get(db)
            if status is None:
                if m in must_hold:
                    wrong.append(f"{m['name']} holds no copy (failover and DR members hold all)")
            elif status not in SETTLED_COPY:
                wrong.append(f"{m['name']}: {status}")
        lines.append(Line(f"Database {db} is mirrored and caught up", not wrong, "; ".join(wrong)))
    if not names:
        lines.append(Line("The mirror has databases", False, "none yet: add one (guide §4.8)"))
    return lines


def review(result: dict, *, arbiter: str = "") -> list[Line]:
    """The checklist for a review_mirror job's result."""
    members = result.get("review") or []
    failover = [m for m in members if m["type"] == catalog.FAILOVER]
    primary = next((m for m in members if m["status"] == catalog.PRIMARY), None)
    lines = []
    if primary is None:
        lines.append(Line("A failover member is Primary", False, "no member says it is"))
    else:
        lines += _member_lines(primary, catalog.PRIMARY, "the first failover member")
    for m in failover:
        if m is not primary:
            lines += _member_lines(m, catalog.BACKUP, "the second failover member")
    for m in members:
        if m["type"] != catalog.FAILOVER:
            lines += _member_lines(m, catalog.CONNECTED, "the async member")
    if result.get("requires_tls"):
        waiting = [m["name"] for m in members if not m["authorized"]]
        lines.append(
            Line(
                "Every member is authorized by its certificate's DN",
                not waiting,
                f"waiting: {', '.join(waiting)}" if waiting else "",
            )
        )
    lines += _database_lines(members, primary)
    if arbiter:
        lines.append(Line(f"An arbiter is set: {arbiter}", True))
    else:
        lines.append(
            Line(
                "An arbiter is set",
                False,
                "none: without one the backup takes over only when the primary's agent "
                "confirms the primary is down (guide §4.2)",
            )
        )
    lines.append(
        Line(
            "Failover mode is Arbiter Controlled",
            None,
            "the members do not report a failover mode yet (arbiters come with automatic failover)",
        )
    )
    return lines
