"""From an agent's instance records (GET /v1/status/stream, engine/agent/watch.py) to the
state of each mirror member, and from two states of a member to the events of its history.

Pure functions on plain dicts: the collector (monitor/collector.py) feeds them and writes what
they return. A state holds what the Mirror Monitor shows of a member (guide §5.1.1):

    {"status", "journal_transfer", "dejournaling", "transfer_lag_s", "dejournal_lag_s",
     "agent_reachable", "record": {rates, databases, missing report, pending members, ...}}
"""

from __future__ import annotations

from engine import rules as catalog
from monitor.models import Event

# what a member's record carries into MemberState.record (instance keys, then status keys)
RECORD_KEYS = (
    "state",
    "detail",
    "pid",
    "superserver",
    "certificate",
    "incoming_journal_rate",
    "incoming_journal_figures",
    "journal_end",
    "databases",
    "missing_mirrored_databases",
    "primary",
    "codec",
    "members",
    "waiting_reason",
    "pending_members",
    "dn_updates",
    "failover_mode",
    "arbiter_connection",
    "role",  # "primary", "backup"...: the member's own word, changed by every takeover
    "no_failover",
    "type",  # "Failover", "Disaster Recovery"...: changed by a promotion or demotion
    "took_over_from",  # a primary by takeover: whom it replaced, in its own word
)
INSTANCE_KEYS = ("state", "detail", "pid", "superserver", "certificate")


def members_of(record: dict, known_as: str | None) -> list[tuple[str, str, dict]]:
    """(mirror, member, flat status record) for each mirror the instance of `record` is in.

    A reporting async in several mirrors reports each under "mirrors"; a down instance reports
    no mirror and no member name, so `known_as` (the member name it last had) fills in, and the
    mirror is left "" for the caller to match every mirror the member is in."""
    per_mirror = record.get("mirrors")
    if isinstance(per_mirror, dict) and per_mirror:
        out = []
        for mirror, status in per_mirror.items():
            flat = {key: record.get(key) for key in INSTANCE_KEYS}
            flat.update(status)
            out.append((mirror, status.get("member") or record.get("member") or known_as, flat))
        return out
    member = record.get("member") or known_as or record.get("name")
    up = record.get("state") == "up" and record.get("type") != catalog.NOT_MEMBER
    return [(record.get("mirror") or "" if up else "", member, record)]


# the member types by the label a member reports (guide §5.1.1.1)
TYPES_BY_LABEL = {label: code for code, label in catalog.MEMBER_TYPE_LABELS.items()}


def reported_type(state: dict) -> str | None:
    """The member type the member reports itself ("failover", "dr"...), None when it says none
    the portal knows (not a member, not read yet), or is not up: a down instance's record keeps
    the last type it reported, which for an instance in several mirrors is its first mirror's."""
    record = state.get("record") or {}
    if record.get("state") != "up":
        return None
    return TYPES_BY_LABEL.get(record.get("type"))


def state_of(flat: dict, reachable: bool = True) -> dict:
    return {
        "status": flat.get("status") or "",
        "journal_transfer": flat.get("journal_transfer") or "",
        "dejournaling": flat.get("dejournaling") or "",
        "transfer_lag_s": flat.get("journal_transfer_latency_s"),
        "dejournal_lag_s": flat.get("dejournal_latency_s"),
        "agent_reachable": reachable,
        "record": {key: flat.get(key) for key in RECORD_KEYS if flat.get(key) is not None},
    }


# what a member that cannot answer does not say, but still has: shown as it was last seen
# (its role too: a primary that went down and comes back as primary took nothing over)
LAST_KNOWN = ("databases", "missing_mirrored_databases", "role")
PRIMARY_ROLE = "primary"
# the mark a takeover leaves on the new primary's record, for as long as it stays primary
TAKEOVER_KEYS = ("took_over_at", "took_over_from")


def keep_last_known(old: dict | None, new: dict) -> dict:
    """A member that does not answer (down, hung) reports no databases; its copies are not
    gone for that, so the last list it gave stays (its status says it is stale)."""
    if not old or new["record"].get("state") in (None, "up"):
        return new
    kept = {
        k: old["record"][k] for k in LAST_KNOWN if k in old["record"] and k not in new["record"]
    }
    return dict(new, record={**new["record"], **kept}) if kept else new


def took_over(old: dict | None, new: dict) -> bool:
    """The member's role became primary: it was seen in another role (backup, or a former
    primary restarted as backup), not first seen, nor a primary that comes back as primary."""
    was = ((old or {}).get("record") or {}).get("role")
    return new["record"].get("role") == PRIMARY_ROLE and was not in (None, PRIMARY_ROLE)


def follow_takeover(old: dict | None, new: dict, at: str) -> dict:
    """`new` with the mark of its takeover: set (`at`, and the primary it followed before) when
    its role becomes primary, kept while it stays primary, dropped once it is not."""
    rec_old = (old or {}).get("record") or {}
    if took_over(old, new):
        # the member's own word first: a sample taken after it lost the old primary has none
        former = new["record"].get("took_over_from") or rec_old.get("primary") or ""
        mark = {"took_over_at": at, "took_over_from": former}
    elif new["record"].get("role") == PRIMARY_ROLE and "took_over_at" in rec_old:
        mark = {k: rec_old[k] for k in TAKEOVER_KEYS if k in rec_old}
    else:
        return new
    return dict(new, record={**new["record"], **mark})


def unreachable(state: dict, reason: str) -> dict:
    """The member's last state, marked: its agent's stream cannot be followed."""
    out = dict(state, agent_reachable=False)
    out["record"] = dict(state.get("record") or {}, agent_error=reason)
    return out


def phase(value: str) -> str:
    """The kind of a journal transfer / dejournaling value: "5 s behind" and "6 s behind" are
    the same phase, so only a change of phase is an event (guide §5.1.1.1)."""
    if not value or value in (catalog.ACTIVE, catalog.CAUGHT_UP, catalog.NOT_APPLICABLE):
        return value
    if value.endswith("behind"):
        return "behind"
    if value.startswith("Disconnected"):
        return "disconnected"
    return value


def changes(member: str, old: dict | None, new: dict) -> list[tuple[str, str, str, str]]:
    """The events between two states of `member`: (kind, before, after, text)."""
    if not old:  # first sight: one line, not one per database and field
        return [(Event.STATUS, "", new["status"], f"{member}: {new['status']} (first seen)")]
    out = []
    before, after = old.get("status", ""), new["status"]
    if before != after:
        trouble = catalog.IN_TROUBLE in (before, after)
        kind = Event.TROUBLE if trouble else Event.STATUS
        out.append((kind, before, after, f"{member}: {before} → {after}"))
    for key, kind, label in (
        ("journal_transfer", Event.JOURNAL_TRANSFER, "journal transfer"),
        ("dejournaling", Event.DEJOURNALING, "dejournaling"),
    ):
        was, now = old.get(key, ""), new[key]
        if phase(was) != phase(now) and now:
            out.append((kind, was, now, f"{member}: {label} {now}"))
    if old.get("agent_reachable", True) != new["agent_reachable"]:
        if new["agent_reachable"]:
            out.append((Event.AGENT, "unreachable", "reachable", f"{member}: agent reachable"))
        else:
            reason = new["record"].get("agent_error", "")
            out.append((Event.AGENT, "reachable", "unreachable", f"{member}: agent {reason}"))
    rec_old, rec_new = old.get("record") or {}, new["record"]
    out += _database_changes(member, rec_old, rec_new)
    for key, name_key, kind in (
        ("pending_members", "name", Event.PENDING),
        ("dn_updates", "member", Event.DN_UPDATE),
    ):
        out += _named_list_changes(member, rec_old.get(key), rec_new.get(key), name_key, kind)
    for key, kind in (
        ("failover_mode", Event.FAILOVER_MODE),
        ("arbiter_connection", Event.ARBITER),
    ):
        was, now = rec_old.get(key), rec_new.get(key)
        if was != now and now is not None:
            out.append((kind, was or "", now, f"{member}: {now}"))
    if took_over(old, new):
        before = rec_old.get("role", "")
        was_primary = rec_old.get("primary")
        text = f"{member}: takeover, now the primary" + (
            f" (was {before}, following {was_primary})" if was_primary else f" (was {before})"
        )
        out.append((Event.TAKEOVER, before, PRIMARY_ROLE, text))
    was, now = _expiry(rec_old), _expiry(rec_new)
    if was != now and now:
        out.append((Event.CERTIFICATE, was, now, f"{member}: certificate valid until {now}"))
    return out


def _database_changes(member: str, old: dict, new: dict) -> list[tuple[str, str, str, str]]:
    was = {row["name"]: row.get("status", "") for row in old.get("databases") or []}
    now = {row["name"]: row.get("status", "") for row in new.get("databases") or []}
    out = []
    for name in sorted(set(was) | set(now)):
        before, after = was.get(name, ""), now.get(name, "")
        if before == after:
            continue
        text = f"{member}: {name} {before or 'added'} → {after or 'removed'}"
        out.append((Event.DATABASE, before, after, text))
    return out


def _named_list_changes(member, old, new, key, kind) -> list[tuple[str, str, str, str]]:
    was = {row.get(key) for row in old or []}
    now = {row.get(key) for row in new or []}
    what = "waits for authorization" if kind == Event.PENDING else "DN update waits"
    out = []
    for name in sorted(now - was):
        out.append((kind, "", "pending", f"{member}: {name} {what}"))
    for name in sorted(was - now):
        out.append((kind, "pending", "", f"{member}: {name} no longer pending"))
    return out


def _expiry(record: dict) -> str:
    cert = record.get("certificate") or {}
    return cert.get("not_after") or ""


def significant(old: dict | None, new: dict) -> bool:
    """Worth writing and publishing at once (else the collector batches it within a second):
    anything but lags, rates, journal positions and the "N s behind" counters."""
    if old is None:
        return True
    if (old["status"], old["agent_reachable"]) != (new["status"], new["agent_reachable"]):
        return True
    for key in ("journal_transfer", "dejournaling"):
        if phase(old[key]) != phase(new[key]):
            return True
    volatile = {
        "incoming_journal_rate",
        "incoming_journal_figures",
        "journal_end",
        "databases",
        "members",  # the primary's view of its links: each member's own state tells
    }
    rec_old, rec_new = old["record"], new["record"]
    if _db_statuses(rec_old) != _db_statuses(rec_new):
        return True
    if _links(rec_old) != _links(rec_new):  # the primary's word for a member that went down
        return True
    keys = (set(rec_old) | set(rec_new)) - volatile
    return any(rec_old.get(k) != rec_new.get(k) for k in keys)


def _links(record: dict) -> dict:
    """The primary's view of each other member, as phases (guide §5.1.1.1)."""
    return {
        row.get("member"): (row.get("status"), phase(row.get("journal_transfer") or ""))
        for row in record.get("members") or []
    }


def _db_statuses(record: dict) -> dict:
    return {row["name"]: row.get("status") for row in record.get("databases") or []}
