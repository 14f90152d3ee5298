"""Verify SSL (guide §4.10.4 step b, §4.5): before TLS is turned on for a running mirror, check
from the primary that every member has a TLS configuration the mirror can use.

    verify_tls {}        on any member configured through the agent (step b: the primary)

Every other member is asked for its STATUS over its superserver address, as recorded in
the mirror configuration.  A member's status carries its own certificate as its host reads
it (engine/member/membership.py tls_info): subject and issuer DN and validity, or the error that
makes its TLS files unusable (expired, not yet valid, not issued by its own CA file).  The
answer has one row per member, this one included:

    {member, reachable, ok, dn, not_after, problem}

`ok` is true when the member has a certificate that is valid now and issued by the same CA
as this member's, false with the `problem` otherwise, and null for a member that did not
answer: the guide's Verify SSL checks the members that can be contacted and reports the
others, so an unreachable member is a row, not an error.

The members' superservers speak TLS once they have TLS files (docs/hardening.md, "Application
port TLS"), so the question goes over TLS with this member's certificate (engine/member/node.py
peer_tls).  A member whose TLS handshake fails — its certificate from another CA, expired —
is judged by the certificate its superserver presents (read without verifying it): a reachable
member that fails, not an unreachable one.

The CA is compared by name (the certificate's issuer DN against the subject DN of this
member's CA certificate): each member's own status has already checked that its
certificate is directly issued by the CA file it holds.  A different CA that carries the
same name passes here and is caught at the first TLS handshake once TLS is on.

edit_mirror asks the same question before it turns TLS on (engine/member/membership_ops.py)
and refuses while a reachable member fails, naming it, unless told `skip_verify`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING

from engine.client.app import AsyncClient, EngineError
from engine.member.changes import require_dynamic
from engine.member.node import peer_tls
from engine.storage.databases import Refused
from engine.wire import tls

if TYPE_CHECKING:
    from engine.member.config import MemberConfig
    from engine.member.membership import Membership

ASK_TIMEOUT_S = 2.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def own_ca_dn(membership: Membership, op: str) -> str:
    """The subject DN of this member's CA certificate: what the others must be issued by."""
    node = membership.node
    if node is None or not node.has_tls:
        raise Refused(op, None, f"set up TLS on member {membership.member.name} first (set_tls)")
    try:
        return tls.normalize_dn(tls.load_certificate(node.tls_ca).subject.rfc4514_string())
    except (tls.TLSError, OSError, ValueError) as exc:
        raise Refused(op, None, f"cannot read this member's CA certificate: {exc}") from None


def judge(name: str, info: dict | None, ca_dn: str) -> dict:
    """The row of member `name` whose host reported certificate `info` (a status `tls`)."""
    row = {"member": name, "reachable": True, "ok": False, "dn": None, "not_after": None}
    if not info:
        return {**row, "problem": "no TLS configuration on this member (set_tls)"}
    if "error" in info:
        return {**row, "problem": info["error"]}
    row.update(dn=tls.normalize_dn(info["subject_dn"]), not_after=info["not_after"])
    issuer = tls.normalize_dn(info["issuer_dn"])
    # a member re-reads its files every few seconds: the date decides, not its last reading
    if info.get("expired") or dt.datetime.fromisoformat(info["not_after"]) <= _now():
        return {**row, "problem": f"certificate expired on {info['not_after']}"}
    if issuer != ca_dn:
        return {**row, "problem": f"certificate issued by {issuer}, not by the mirror's CA {ca_dn}"}
    return {**row, "ok": True, "problem": None}


async def _ask(mirror: str, member: MemberConfig, options: dict) -> dict:
    """What `member`'s host says about its certificate: {"tls": ...} or {"unreachable": why}
    or {"other": who answers instead}; {"tls": ..., "handshake": why} when only its
    superserver's certificate could be read."""
    client = AsyncClient(
        [str(member.superserver)],
        follow_primary=False,
        timeout=ASK_TIMEOUT_S,
        retries=0,
        **options,
    )
    try:
        await client.connect()
        status = await client.status(mirror)
    except (EngineError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        addr = member.superserver
        cert = None
        if options.get("ssl") is not None:
            cert = await tls.presented_certificate(addr.host, addr.port, ASK_TIMEOUT_S)
        if cert is not None:
            return {"tls": tls.cert_info(cert), "handshake": reason}
        return {"unreachable": reason}
    finally:
        await client.close()
    if status.get("mirror") != mirror or status.get("member") != member.name:
        who = status.get("member") or "an instance"
        return {"other": f"{who} (mirror {status.get('mirror')}) answers instead"}
    return {"tls": status.get("tls")}


async def check_members(membership: Membership, op: str = "verify_tls") -> dict:
    """Verify every member's TLS configuration from this member (see the module doc)."""
    ca_dn = own_ca_dn(membership, op)
    cfg = membership.cfg
    others = [m for m in cfg.members if m.name != membership.member.name]
    options = peer_tls(membership)
    answers = await asyncio.gather(*(_ask(cfg.name, m, options) for m in others))
    rows = [judge(membership.member.name, membership.tls_info(), ca_dn)]
    for member, answer in zip(others, answers, strict=True):
        where = f"superserver {member.superserver}"
        if "unreachable" in answer:
            row = {"member": member.name, "reachable": False, "ok": None, "dn": None}
            problem = f"not reachable at its {where}: {answer['unreachable']}"
            rows.append({**row, "not_after": None, "problem": problem})
        elif "other" in answer:
            row = judge(member.name, None, ca_dn)
            rows.append({**row, "problem": f"at its {where} {answer['other']}"})
        elif "handshake" in answer:
            row = judge(member.name, answer["tls"], ca_dn)
            if row["ok"]:  # a good certificate, refused for another reason: say that one
                problem = f"not reachable at its {where}: {answer['handshake']}"
                row.update(reachable=False, ok=None, problem=problem)
            else:
                row["problem"] += f" (the certificate its {where} presents)"
            rows.append(row)
        else:
            rows.append(judge(member.name, answer["tls"], ca_dn))
    _flag_shared_dns(rows)
    return {
        "mirror": cfg.name,
        "ca": ca_dn,
        "ok": all(r["ok"] is not False for r in rows),
        "members": rows,
        "failing": sorted(r["member"] for r in rows if r["ok"] is False),
        "unreachable": sorted(r["member"] for r in rows if not r["reachable"]),
    }


def _flag_shared_dns(rows: list[dict]) -> None:
    """Members are told apart by their certificate's DN: two sharing one cannot be."""
    seen: dict[str, str] = {}
    for row in rows:
        dn = row["dn"]
        if row["ok"] and dn in seen:
            row.update(ok=False, problem=f"same certificate DN {dn} as member {seen[dn]}")
        elif dn is not None:
            seen.setdefault(dn, row["member"])


def verify_tls(membership: Membership, arg):
    """The admin action: a task answering the verification."""
    require_dynamic(membership, "verify_tls")
    own_ca_dn(membership, "verify_tls")  # refused at once rather than from the task
    return asyncio.get_running_loop().create_task(check_members(membership))


def refusal(report: dict) -> str | None:
    """Why edit_mirror will not turn TLS on yet (None: every reachable member is fit)."""
    failing = sorted((r for r in report["members"] if r["ok"] is False), key=lambda r: r["member"])
    if not failing:
        return None
    named = "; ".join(f"{r['member']}: {r['problem']}" for r in failing)
    return (
        f"member(s) {', '.join(r['member'] for r in failing)} have no valid TLS configuration "
        f"({named}); set up TLS on them (set_tls) and verify again, or give skip_verify"
    )
