"""Member status with the values of guide §5.1.1.1 (the fixed strings are engine/rules.py's),
and the `status` command.

Journal Transfer (backup/asyncs; N/A on the primary):
    Active | Caught up | <time> behind | Disconnected on <time>
Dejournaling:
    Caught up | <time> behind | Disconnected on <time>
    | Warning! Some databases need attention. | Warning! Dejournaling is stopped.
<time> is a duration such as "12 seconds" or "3 minutes 5 seconds"; the time of a
disconnection is "YYYY-MM-DD HH:MM:SS UTC".  Incoming journal rate uses the formats of
guide §5.1.1.2 and, like the Mirror Monitor, covers the data since the previous status query.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from engine import rules
from engine.member.config import TYPE_LABELS
from engine.member.download import download_progress
from engine.member.hooks import installed_hooks
from engine.storage.databases import db_status, missing_databases
from engine.storage.journal_codec import pos_wire

if TYPE_CHECKING:
    from engine.member.membership import Membership

FIRST_RATE = "--- (will be displayed on refresh)"
RATE_STEP_S = 0.5
RATE_WINDOW_S = 10.0
# A member receiving records written less than this long ago is "Caught up".
CAUGHT_UP_SLACK_S = 1.0


def format_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} minute{'s' if m != 1 else ''} {s} second{'s' if s != 1 else ''}"
    h, m = divmod(m, 60)
    return f"{h} hour{'s' if h != 1 else ''} {m} minute{'s' if m != 1 else ''}"


def format_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def journal_transfer(membership: Membership) -> tuple[str, float | None]:
    """(Journal Transfer value, latency in seconds)."""
    link = membership.replica
    if link is None:
        return rules.NOT_APPLICABLE, None
    if not link.connected:
        return f"Disconnected on {format_time(link.disconnected_at or membership.started_at)}", None
    if link.active:
        return rules.ACTIVE, 0.0
    if link.caught_up:
        return rules.CAUGHT_UP, 0.0
    behind = max(0.0, time.time() - (link.last_block_time or link.primary_time or time.time()))
    if behind < CAUGHT_UP_SLACK_S:
        # streaming live: the primary's end position we know is just a heartbeat old
        return rules.CAUGHT_UP, behind
    return f"{format_duration(behind)} behind", behind


def dejournaling(membership: Membership) -> tuple[str, float | None]:
    """(Dejournaling value, latency in seconds)."""
    dj = membership.dejournal
    link = membership.replica
    if dj is None or link is None:
        return rules.NOT_APPLICABLE, None
    if dj.stopped:
        return rules.DEJOURNALING_STOPPED, None
    if dj.paused_databases() or any(
        db_status(membership, e) != "Dejournaling" for e in membership.catalog.entries.values()
    ):
        return rules.DATABASES_NEED_ATTENTION, None
    if not link.connected:
        return f"Disconnected on {format_time(link.disconnected_at or membership.started_at)}", None
    lag = dj.lag_seconds()
    if lag is None or dj.caught_up():
        return rules.CAUGHT_UP, 0.0
    return f"{format_duration(lag)} behind", lag


def incoming_rate(membership: Membership) -> tuple[str, dict | None]:
    link = membership.replica
    if link is None:
        return rules.NOT_APPLICABLE, None
    # Samples kept at most every RATE_STEP_S over the last RATE_WINDOW_S: many callers (the
    # agent polls every 20 ms) share them, so no caller's query resets another's interval.
    now = time.time()
    samples = membership.rate_samples
    first = not samples
    if first or now - samples[-1][0] >= RATE_STEP_S:
        samples.append((now, link.bytes_network, link.bytes_journal))
    while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
        samples.popleft()
    if first:
        return FIRST_RATE, None
    prev = samples[0]
    interval = max(now - prev[0], 1e-6)
    net_kb = (link.bytes_network - prev[1]) / 1024 / interval
    jrn_kb = (link.bytes_journal - prev[2]) / 1024 / interval
    figures = {
        "network_kb_s": round(net_kb, 1),
        "journal_kb_s": round(jrn_kb, 1),
        "interval_s": round(interval, 1),
    }
    secs = int(round(interval))
    if not link.codec:
        return f"{int(round(jrn_kb))} KB/s ({secs}s interval)", figures
    ratio = jrn_kb / net_kb if net_kb else 0.0
    figures["ratio"] = round(ratio, 2)
    return (
        f"{int(round(net_kb))} KB/s network; {int(round(jrn_kb))} KB/s journal; "
        f"ratio {ratio:.2f}:1 ({secs}s interval)",
        figures,
    )


def member_state(membership: Membership) -> str:
    if membership.transition is not None:
        return rules.TRANSITION  # engine/member/takeover.py
    if membership.role == "primary":
        if membership.writer is not None and membership.writer.frozen is not None:
            return rules.CRASHED  # guide §5.1.1.1: its journal froze on a write error (§3.2)
        rep = membership.replicator
        if rep is not None and rep.in_trouble:
            return rules.IN_TROUBLE
        return rules.PRIMARY
    if membership.mirroring_stopped:
        return rules.STOPPED
    if waiting_reason(membership):
        return rules.WAITING
    link = membership.replica
    if link is None or not link.connected or not link.caught_up_once:
        return rules.SYNCHRONIZING
    return rules.BACKUP if membership.role == "backup" else rules.CONNECTED


def waiting_reason(membership: Membership) -> str | None:
    """Why this member cannot go on without an operator (guide §5.1.1.1 Waiting), or None."""
    if membership.removed:
        return "removed from the mirror by the primary: remove the mirror configuration"
    if membership.hook_waiting is not None:
        return membership.hook_waiting
    watch = membership.failover
    if watch is not None and watch.waiting and membership.role == "backup":
        return watch.waiting
    link = membership.replica
    if link is not None and not link.connected and link.refusal:
        return link.refusal
    return membership.address_error


def member_status(membership: Membership) -> dict:
    jt, jt_lat = journal_transfer(membership)
    dj, dj_lat = dejournaling(membership)
    rate, figures = incoming_rate(membership)
    out = {
        "member": membership.member.name,
        "mirror": membership.cfg.name,
        "type": TYPE_LABELS[membership.member.type],
        "status": member_state(membership),
        "journal_transfer": jt,
        "dejournaling": dj,
        "journal_transfer_latency_s": None if jt_lat is None else round(jt_lat, 3),
        "dejournal_latency_s": None if dj_lat is None else round(dj_lat, 3),
        "incoming_journal_rate": rate,
        "incoming_journal_figures": figures,
        "journal_end": pos_wire(membership.journal.end_position),
        "journal_fsync_count": membership.journal.fsync_count,
        "databases": database_rows(membership),
        "started_at": membership.started_at,  # a restart changes it (engine/member/rebuild.py)
    }
    missing = missing_databases(membership)
    if missing is not None:
        out["missing_mirrored_databases"] = missing
    if membership.replica is not None:
        out["primary"] = membership.replica.primary_name
        out["codec"] = membership.replica.codec
        out["data_channel_refusals"] = membership.replica.refusals
    watch = membership.failover
    if membership.member.type == rules.FAILOVER and watch is not None:
        # engine/member/failover_watch.py: Agent Controlled without an arbiter (§3.3.5.1)
        out["failover_mode"] = watch.mode
        out["arbiter_connection"] = watch.arbiter_connection
        # who is primary at which term as this member knows, and "no failover" (docs/takeover.md)
        out["term"] = membership.fstate.term
        # set here, or on the primary and heard with its heartbeats (guide §6.1.3: either one)
        heard = membership.replica is not None and membership.replica.primary_no_failover
        out["no_failover"] = membership.fstate.no_failover or heard
        out["hooks"] = installed_hooks(membership)  # engine/member/hooks.py
        if membership.role == "primary" and membership.took_over_from:
            out["took_over_from"] = membership.took_over_from  # the monitor's takeover alert
    if membership.dejournal is not None:  # under the mirror's parallel_dejournaling (guide §4.16)
        out["dejournaling_parallel"] = membership.dejournal.dj.parallel
    if membership.replicator is not None:
        out["members"] = primary_view(membership)
    reason = waiting_reason(membership)
    if reason:
        out["waiting_reason"] = reason
    if membership.cfg.dynamic:
        out["tls"] = membership.tls_info()
        out["mirror_version"] = membership.cfg.version
        # with the certificate each asked with (fingerprint, issuer, not_after: issue 12)
        out["pending_members"] = [
            {"name": m.name, "type": m.type, "dn": m.dn, **_cert_fields(m.cert)}
            for m in membership.cfg.members
            if not m.authorized
        ]
        certs = membership.cfg.dn_update_certs
        out["dn_updates"] = [
            {"member": k, "dn": v, **_cert_fields(certs.get(k))}
            for k, v in membership.cfg.dn_updates.items()
        ]
    return out


def _cert_fields(cert: dict | None) -> dict:
    """A certificate's fingerprint, issuer and not_after, when the primary recorded them (not
    for a primary's DN update as a member sees it, nor one recorded before they were)."""
    return {k: cert.get(k) for k in ("fingerprint", "issuer", "not_after")} if cert else {}


def database_rows(membership: Membership) -> list[dict]:
    """One row per mirrored database (guide §5.1.1.3); `records_applied`, `download`, `error` and
    `failover_db` only when they say something (a catch-up running; a download in flight:
    `{received_bytes, total_bytes, source}`; a failed one; a FailoverDB flag cleared)."""
    rows = []
    for db, entry in membership.catalog.entries.items():
        store = membership.stores.get(db)
        row = {
            "name": db,
            "status": db_status(membership, entry),
            "applied": None if store is None else pos_wire(store.applied_position),
        }
        if db in membership.catching_up:
            row["records_applied"] = membership.catching_up[db]
        progress = download_progress(membership, db)
        if progress is not None:
            row["download"] = progress
        if db in membership.db_errors:
            row["error"] = membership.db_errors[db]
        if not entry.failover_db and membership.member.type == "ro_reporting":
            row["failover_db"] = False
        rows.append(row)
    return rows


def primary_view(membership: Membership) -> list[dict]:
    """The primary's view of the other members (connected links and known disconnections)."""
    rep = membership.replicator
    end = membership.journal.end_position
    rows = []
    for m in membership.cfg.members:
        if m.name == membership.member.name:
            continue
        link = rep.links.get(m.name)
        row = {"member": m.name, "type": TYPE_LABELS[m.type], "authorized": m.authorized}
        if link is None:
            gone = rep.disconnected.get(m.name)
            transfer = f"Disconnected on {format_time(gone)}" if gone else rules.NOT_APPLICABLE
            row.update(status=rules.DOWN, journal_transfer=transfer)
        else:
            # what was sent, not the journal's end: an async's chunk held back (at most 20 ms,
            # engine/replication/member_link.py) is not lag
            sent = link.sent_end if link.sent_end is not None else end
            caught = link.live and (sent is None or (link.acked is not None and link.acked >= sent))
            if rep.active is link:
                jt = "Active"
            elif caught:
                jt = rules.CAUGHT_UP
            else:
                jt = f"{format_duration(time.time() - link.last_ack_at)} behind"
            state = (
                (rules.BACKUP if m.is_failover else rules.CONNECTED)
                if caught or rep.active is link
                else rules.SYNCHRONIZING
            )
            row.update(
                status=state, journal_transfer=jt, acked=pos_wire(link.acked), codec=link.codec
            )
        rows.append(row)
    return rows


# -- command line ------------------------------------------------------------------


def render_table(rows: list[dict], mirror: str) -> str:
    head = f"Status of Mirror {mirror} at {time.strftime('%H:%M:%S on %m/%d/%Y')}"
    cols = ("Member Name+Type", "Status", "Journal Transfer", "Dejournaling")
    lines = []
    for r in rows:
        lines.append(
            (
                r["member"],
                r.get("status", ""),
                r.get("journal_transfer", ""),
                r.get("dejournaling", ""),
            )
        )
        lines.append((f"  {r.get('type', '')}", "", "", ""))
    widths = [max(len(c), *(len(x[i]) for x in lines)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [head, "", fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*x).rstrip() for x in lines]
    extra = [r for r in rows if r.get("incoming_journal_rate") not in (None, rules.NOT_APPLICABLE)]
    if extra:
        out.append("")
        out += [
            f"Incoming journal transfer rate for {r['member']}: {r['incoming_journal_rate']}"
            for r in extra
        ]
    out += failover_lines(rows)
    out += database_lines(rows)
    return "\n".join(out)


def failover_lines(rows: list[dict]) -> list[str]:
    """Each failover member's failover mode and arbiter connection (guide §5.1.1, the catalog's
    strings), "no failover", and why a member waits."""
    out = []
    for r in rows:
        if r.get("failover_mode"):
            out += ["", f"Failover mode on {r['member']}: {r['failover_mode']}"]
            out.append(f"Arbiter connection of {r['member']}: {r.get('arbiter_connection', '')}")
            if r.get("no_failover"):
                out.append(f"No failover is set on {r['member']}")
        if r.get("waiting_reason"):
            out.append(f"{r['member']} is waiting: {r['waiting_reason']}")
    return out


def database_lines(rows: list[dict]) -> list[str]:
    """The Mirrored Databases list of each member, and its missing databases (guide §5.1.1.3)."""
    out = []
    for r in rows:
        dbs = r.get("databases")
        if dbs:
            out += ["", f"Mirrored databases on {r['member']}:"]
            out += [f"  {d['name']:<20} {d['status']}" for d in dbs]
        if r.get("missing_mirrored_databases"):
            names = ", ".join(r["missing_mirrored_databases"])
            out.append(f"Missing mirrored databases on {r['member']}: {names}")
    return out


def query_status(members, timeout: float = 3.0, ssl_for=None) -> list[dict]:
    """Ask each member for its status over the protocol; unreachable ones are Down.

    `members`: anything with name, type and superserver (a mirror file's MemberConfig or a
    build plan's PlanMember); `ssl_for(member)`: the TLS context for its superserver, if any
    (engine/wire/tls.py superserver_client_context)."""
    from engine.client.app import Client, EngineError
    from engine.wire.tls import TLSError

    rows = []
    for m in members:
        try:
            ssl = ssl_for(m) if ssl_for is not None else None
            with Client([str(m.superserver)], follow_primary=False, timeout=timeout, ssl=ssl) as c:
                rows.append(c.status())
        except (EngineError, OSError, TLSError) as exc:
            rows.append(
                {
                    "member": m.name,
                    "type": TYPE_LABELS[m.type],
                    "status": rules.DOWN,
                    "journal_transfer": "",
                    "dejournaling": "",
                    "error": str(exc),
                }
            )
    return rows


def status_command(mirror: str, members, as_json: bool, ssl_for=None) -> int:
    rows = query_status(members, ssl_for=ssl_for)
    if as_json:
        print(json.dumps({"mirror": mirror, "members": rows}, indent=2))
    else:
        print(render_table(rows, mirror))
    return 0
