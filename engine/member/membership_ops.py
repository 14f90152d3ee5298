"""Membership operations of a member configured through the agent
(rules: engine/member/mirror_file.py).

On the primary (which owns the configuration):
    authorize_member / reject_member {member}      pending new members (guide §4.7.3)
    authorize_dn_update / reject_dn_update {member} a member's new certificate DN (§5.4)
    edit_mirror {settings, skip_verify?}            §4.10.4; compression restarts the links it
                                                    concerns (§3.5.3), TLS every link; TLS on
                                                    is verified first (§4.10.4 step b)
    update_member_address {member, superserver?, private?}   §5.2 (not the superserver
                                                    port: engine/member/port.py)
    remove_member {member}                          "Remove Other Mirror Member" (§4.10.4)
On any member:
    mirror_info                                     the mirror as this member knows it
    verify_tls                                      every member's TLS configuration
                                                    (engine/member/tls_check.py)
    set_tls {cert, key, ca} / reload_tls            its own TLS files; a new DN (§5.4)
    leave_mirror {remove_db_attribute}              §4.10.2–§4.10.4; restarts (removing the
                                                    whole configuration: engine/member/remove.py)
    authorize_dn_update {member}                    on a non-primary: the primary's new DN
    update_member_address {member: <primary>, ...}  on a disconnected member (§5.2 exc. 2)

The primary side of joining (a DC_HELLO from an unknown member carrying `join`) and the
member side of a configuration received from the primary are here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine import rules
from engine.member import mirror_file as ms
from engine.member import tls_check
from engine.member.changes import arg_map, config_changed, require_dynamic
from engine.member.config import MemberConfig, parse_agent_url, parse_fingerprint
from engine.member.port import learn_superserver_port
from engine.member.remove import leave_mirror
from engine.replication.gate import JoinRefused
from engine.storage.databases import Refused
from engine.wire import tls
from engine.wire.protocol import MsgType, encode_frame, read_frame, unpack

if TYPE_CHECKING:
    from engine.member.membership import Membership
    from engine.member.session import Connection

log = logging.getLogger("engine.member.mirror_file")


# -- helpers ------------------------------------------------------------------------------


def _primary_only(membership: Membership, op: str) -> None:
    require_dynamic(membership, op)
    if membership.role != "primary":
        raise Refused(
            op, None, f"only the primary changes the mirror configuration ({why(membership)})"
        )


def why(membership: Membership) -> str:
    me = membership.member.name
    return f"member {me} is the {membership.role}; the primary is {primary_name(membership)}"


def primary_name(membership: Membership) -> str:
    return membership.primary_member().name


def _other_member(membership: Membership, op: str, name) -> MemberConfig:
    member = membership.cfg.find(str(name))
    if member is None:
        known = ", ".join(m.name for m in membership.cfg.members)
        raise Refused(
            op, None, f"no member named {name!r} in mirror {membership.cfg.name} ({known})"
        )
    return member


# -- primary: joining and identities ----------------------------------------------------


def register_join(membership: Membership, conn: Connection, name: str, join) -> MemberConfig:
    """A DC_HELLO from a member the primary does not know: a join request.  Without TLS the
    member is authorized at once; with TLS it is pending with its certificate's DN."""
    cfg = membership.cfg
    if not cfg.dynamic or not isinstance(join, dict):
        raise ValueError(f"no member named {name!r} in mirror {cfg.name}")
    join_id = join.get("join_id")
    if join_id in cfg.rejected:
        raise JoinRefused(f"the primary rejected member {name}'s join request")
    mtype = ms.check_type("join", join.get("type"))
    name = ms.check_member_name("join", name, mtype)
    superserver = ms.check_address("join", join.get("superserver"), "superserver")
    private = join.get("private")
    private = ms.check_address("join", private, "private") if private else None
    if mtype == "failover" and private is None:
        raise Refused("join", None, "a failover member needs a mirror private address")
    ms.check_join(cfg, name, mtype, [a for a in (superserver, private) if a is not None])
    dn, cert = _pending_join_certificate(cfg, conn) if cfg.tls else (None, None)
    member = MemberConfig(
        name,
        mtype,
        superserver,
        private,
        membership.data_dir / "-",
        [],
        dn=dn,
        authorized=not cfg.tls,
        join_id=join_id,
        cert=cert,
        agent=parse_agent_url(join["agent"], "join.agent") if join.get("agent") else None,
        agent_cert_sha256=(
            parse_fingerprint(join["agent_cert_sha256"], "join.agent_cert_sha256")
            if join.get("agent_cert_sha256")
            else None
        ),
    )
    if cert is not None:
        cfg.join_times[cert["fingerprint"]] = time.monotonic()
    cfg.members.append(member)
    log.warning(
        "member %s (%s) joined mirror %s%s",
        name,
        mtype,
        cfg.name,
        f" and awaits authorization, DN {dn}" if cfg.tls else "",
    )
    config_changed(membership)
    return member


def _pending_join_certificate(cfg, conn: Connection) -> tuple[str, dict]:
    """The DN and cert_record of a certificate asking to join (issue 12): it must be a member
    certificate, the mirror must have room for one more pending member, and that certificate
    must not have registered another one within rules.PENDING_JOIN_INTERVAL_S."""
    dn, cert = _member_certificate(conn)
    pending = sum(not m.authorized for m in cfg.members)
    ms.rule("join", rules.check_pending_joins, cfg.name, pending)
    last = cfg.join_times.get(cert["fingerprint"])
    since = None if last is None else time.monotonic() - last
    ms.rule("join", rules.check_join_interval, dn, since)
    return dn, cert


_KEY_USAGES = {
    ExtendedKeyUsageOID.SERVER_AUTH: rules.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH: rules.CLIENT_AUTH,
}


def _member_certificate(conn: Connection) -> tuple[str, dict]:
    """The peer certificate's DN and cert_record, if it may be a member
    (rules.check_member_certificate: its extended key usages); else Refused."""
    ssl_object = conn.transport.get_extra_info("ssl_object") if conn.transport else None
    cert = tls.peer_certificate(ssl_object) if ssl_object is not None else None
    if cert is None:
        raise ValueError("no client certificate on a mirror that requires TLS")
    dn = tls.normalize_dn(cert.subject.rfc4514_string())
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = [_KEY_USAGES.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        usages = None
    ms.rule("join", rules.check_member_certificate, dn, usages)
    return dn, cert_record(cert)


def cert_record(cert: x509.Certificate) -> dict:
    """What the primary keeps beside the DN of a certificate awaiting authorization."""
    return {
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "issuer": tls.normalize_dn(cert.issuer.rfc4514_string()),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def _peer_dn(conn: Connection) -> str:
    ssl_object = conn.transport.get_extra_info("ssl_object") if conn.transport else None
    dn = tls.peer_dn(ssl_object) if ssl_object is not None else None
    if dn is None:
        raise ValueError("no client certificate on a mirror that requires TLS")
    return tls.normalize_dn(dn)


def check_identity(
    membership: Membership, conn: Connection, member: MemberConfig, hello: dict
) -> None:
    """Raise JoinRefused unless `member` may open its data channel now."""
    cfg = membership.cfg
    join = hello.get("join")
    if isinstance(join, dict) and join.get("join_id") in cfg.rejected:
        raise JoinRefused(f"the primary rejected member {member.name}'s join request")
    if cfg.tls:
        dn = _peer_dn(conn)
        if member.dn is None:  # TLS was enabled on the mirror after this member joined
            dn, member.cert = _identity_certificate(conn, member)
            member.dn = dn
            member.authorized = False
            config_changed(membership)
        elif dn != member.dn:
            if not member.authorized:
                raise JoinRefused(
                    f"certificate {dn!r} is not member {member.name}'s ({member.dn!r})"
                )
            if dn in cfg.rejected_dns.get(member.name, ()):
                raise JoinRefused(
                    f"member {member.name}'s certificate DN {dn!r} was rejected on the primary: "
                    "give it a certificate with another DN"
                )
            _, cert = _identity_certificate(conn, member)
            pending, known = cfg.dn_updates.get(member.name), cfg.dn_update_certs.get(member.name)
            if pending is not None and (pending != dn or (known or cert) != cert):
                # never replaced silently: the operator decides on the first one (issue 12)
                raise JoinRefused(
                    f"certificate {dn!r} (SHA-256 {cert['fingerprint']}) is not the one of "
                    f"member {member.name}'s pending DN update {pending!r}"
                    + (f" (SHA-256 {known['fingerprint']})" if known else "")
                    + ": authorize or reject that update first"
                )
            if pending is None or known is None:
                cfg.dn_updates[member.name] = dn
                cfg.dn_update_certs[member.name] = cert
                ms.save_local(cfg, membership.member.name, membership.data_dir)
                log.warning(
                    "member %s presents a new DN %s (SHA-256 %s, issuer %s): to authorize",
                    member.name,
                    dn,
                    cert["fingerprint"],
                    cert["issuer"],
                )
            raise JoinRefused(
                f"member {member.name}'s new certificate DN {dn!r} awaits authorization on "
                "the primary"
            )
    if not member.authorized:
        raise JoinRefused(f"member {member.name} awaits authorization on the primary")
    learn_superserver_port(membership, member, join)  # engine/member/port.py


def _identity_certificate(conn: Connection, member: MemberConfig) -> tuple[str, dict]:
    """_member_certificate, its refusal a JoinRefused naming the member."""
    try:
        return _member_certificate(conn)
    except Refused as exc:
        raise JoinRefused(f"member {member.name}: {exc.extra['reason']}") from None


# -- primary operations -----------------------------------------------------------------


def authorize_member(membership: Membership, arg):
    op = "authorize_member"
    _primary_only(membership, op)
    member = _other_member(membership, op, arg_map(op, arg, ("member",))["member"])
    if member.authorized:
        return {"member": member.name, "authorized": True, "already": True}
    if membership.cfg.tls and member.dn is None:
        # TLS was just turned on: its certificate is what gets authorized, so wait for it
        raise Refused(
            op, member.name, "the member has not connected with its certificate yet; try again"
        )
    member.authorized = True
    config_changed(membership)
    log.warning("member %s authorized (DN %s)", member.name, member.dn)
    return {"member": member.name, "authorized": True, "already": False}


def reject_member(membership: Membership, arg):
    op = "reject_member"
    _primary_only(membership, op)
    member = _other_member(membership, op, arg_map(op, arg, ("member",))["member"])
    if member.authorized:
        raise Refused(op, member.name, "the member is authorized; remove it instead")
    membership.cfg.members.remove(member)
    if member.join_id:
        membership.cfg.rejected.append(member.join_id)
    config_changed(membership)
    log.warning("join request of member %s rejected", member.name)
    return {"member": member.name, "rejected": True}


def authorize_dn_update(membership: Membership, arg):
    op = "authorize_dn_update"
    require_dynamic(membership, op)
    name = str(arg_map(op, arg, ("member",))["member"]).upper()
    dn = membership.cfg.dn_updates.get(name)
    if dn is None:
        raise Refused(op, name, "no DN update of this member is pending here")
    member = _other_member(membership, op, name)
    member.dn = dn
    del membership.cfg.dn_updates[name]
    cert = membership.cfg.dn_update_certs.pop(name, None) or {}
    if membership.role == "primary":
        config_changed(membership)
    else:
        ms.save_local(membership.cfg, membership.member.name, membership.data_dir)
    log.warning(
        "DN update of member %s authorized: %s (SHA-256 %s)", name, dn, cert.get("fingerprint")
    )
    return {"member": name, "dn": dn}


def reject_dn_update(membership: Membership, arg):
    op = "reject_dn_update"
    _primary_only(membership, op)  # a member cannot reject the primary's update (§5.4)
    name = str(arg_map(op, arg, ("member",))["member"]).upper()
    dn = membership.cfg.dn_updates.pop(name, None)
    if dn is None:
        raise Refused(op, name, "no DN update of this member is pending here")
    membership.cfg.dn_update_certs.pop(name, None)
    # remembered: the member asks again twice a second with the same certificate
    membership.cfg.rejected_dns.setdefault(name, []).append(dn)
    ms.save_local(membership.cfg, membership.member.name, membership.data_dir)
    log.warning("DN update of member %s rejected: %s", name, dn)
    return {"member": name, "rejected": True, "dn": dn}


def edit_mirror(membership: Membership, arg):
    """Turning TLS on first verifies every member's TLS configuration (guide §4.10.4 step b,
    engine/member/tls_check.py) and is refused while a reachable member has none that is
    valid, unless the request says `skip_verify`; the answer then carries the rows."""
    op = "edit_mirror"
    _primary_only(membership, op)
    arg = dict(arg) if isinstance(arg, dict) else arg
    skip = bool(arg.pop("skip_verify", False)) if isinstance(arg, dict) else False
    changes = ms.check_settings(op, arg)
    if changes.get("tls") and not membership.cfg.tls:
        _check_own_tls(membership, op)
        return asyncio.get_running_loop().create_task(_turn_tls_on(membership, changes, skip))
    return _apply_settings(membership, op, changes)


async def _turn_tls_on(membership: Membership, changes: dict, skip: bool) -> dict:
    op = "edit_mirror"
    report = await tls_check.check_members(membership, op)
    _primary_only(membership, op)  # still, after the members answered
    problem = tls_check.refusal(report)
    if problem and not skip:
        raise Refused(op, None, problem)
    return {**_apply_settings(membership, op, changes), "verified": report["members"]}


def _apply_settings(membership: Membership, op: str, changes: dict) -> dict:
    cfg = membership.cfg
    changed = {k: v for k, v in changes.items() if getattr(cfg, k) != v}
    if changed.get("tls"):
        _check_own_tls(membership, op)
    for key, value in changed.items():
        setattr(cfg, key, value)
    if "tls" in changed:
        # guide §4.10.4: after TLS is turned on every other member is authorized anew
        for m in cfg.members:
            if m.name != membership.member.name:
                m.dn, m.authorized = None, not cfg.tls
        membership.member.dn = _own_dn(membership) if cfg.tls else None
    if "qos_timeout_ms" in changed and membership.replicator is not None:
        membership.replicator.qos = cfg.qos_timeout_ms / 1000.0
    restart = ms.links_to_restart(cfg, changed, membership.member.name)
    if changed:
        config_changed(membership, restart_links=restart)
    if "tls" in changed:
        asyncio.get_running_loop().create_task(membership.relisten_private())
    return {"changed": sorted(changed), "version": cfg.version, "links_restarted": bool(restart)}


def update_member_address(membership: Membership, arg):
    op = "update_member_address"
    require_dynamic(membership, op)
    arg = arg_map(op, arg, ("member",))
    member = _other_member(membership, op, arg["member"])
    # guide §5.2 exception 3: with no primary running, a failover member may need its
    # addresses edited before it can become primary; its next configuration carries them
    no_primary = False
    if membership.role != "primary":
        connected = membership.replica is not None and membership.replica.connected
        no_primary = membership.member.is_failover and not connected
        # guide §5.2 exception 2: elsewhere, only the primary's addresses while disconnected
        if member.name != primary_name(membership) and not no_primary:
            raise Refused(
                op, member.name, f"addresses are edited on the primary ({why(membership)})"
            )
        if connected:
            raise Refused(op, member.name, "this member is connected to the primary")
    new = {}
    if arg.get("superserver") is not None:
        addr = ms.check_address(op, arg["superserver"], "superserver")
        if addr.port != member.superserver.port:
            raise Refused(
                op,
                member.name,
                "the superserver port is changed on the member itself (§5.2): "
                f"set_superserver_port on {member.name}",
            )
        new["superserver"] = addr
    if arg.get("private") is not None:
        new["private"] = ms.check_address(op, arg["private"], "private")
    if not new:
        raise Refused(op, member.name, "give superserver and/or private")
    others = [m for m in membership.cfg.members if m is not member]
    taken = {a for m in others for a in (m.superserver, m.private) if a is not None}
    for addr in new.values():
        if addr in taken:
            raise Refused(op, member.name, f"address {addr} is used by another member")
    for key, value in new.items():
        setattr(member, key, value)
    if membership.role == "primary":
        config_changed(membership)
        link = membership.replicator.links.get(member.name)
        if link is not None:
            link.close()  # it checks its addresses when it reconnects (§5.3)
    else:
        ms.save_local(membership.cfg, membership.member.name, membership.data_dir)
    return {"member": member.name, **{k: str(v) for k, v in new.items()}}


def remove_member(membership: Membership, arg):
    op = "remove_member"
    _primary_only(membership, op)
    member = _other_member(membership, op, arg_map(op, arg, ("member",))["member"])
    if member is membership.member:
        raise Refused(op, member.name, "the primary removes its own configuration instead")
    membership.cfg.members.remove(member)
    membership.cfg.dn_updates.pop(member.name, None)
    membership.cfg.dn_update_certs.pop(member.name, None)
    membership.cfg.rejected_dns.pop(member.name, None)
    config_changed(membership)  # the member hears it is no longer in the mirror
    link = membership.replicator.links.get(member.name)
    if link is not None:
        link.close()
    membership.replicator.disconnected.pop(member.name, None)
    log.warning("member %s removed from mirror %s", member.name, membership.cfg.name)
    return {"member": member.name, "removed": True}


# -- any member ---------------------------------------------------------------------------


def mirror_info(membership: Membership, arg):
    out = ms.to_wire(membership.cfg)
    out["primary"] = primary_name(membership)
    out["member"] = membership.member.name
    out["role"] = membership.role
    out["dynamic"] = membership.cfg.dynamic
    out["dn_updates"] = dict(membership.cfg.dn_updates)
    # the certificate of each (fingerprint, issuer, not_after), for the operator to compare
    out["dn_update_certs"] = dict(membership.cfg.dn_update_certs)
    return out


def set_arbiter(membership: Membership, arg) -> dict:
    """The arbiter the failover members keep contact with (guide §3.1.4; docs/failover.md), a
    mirror setting edited on the primary: {arbiter: "host:port"}, or null for none.  It travels
    with the configuration; each failover member follows it (engine/member/failover_watch.py)."""
    op = "set_arbiter"
    _primary_only(membership, op)
    value = arg.get("arbiter") if isinstance(arg, dict) else arg
    cfg = membership.cfg
    arbiter = None if value in (None, "") else ms.check_address(op, value, "arbiter")
    if arbiter is not None:
        hosts = {
            a.host
            for m in cfg.members
            if m.type in rules.PROMOTABLE_TYPES
            for a in (m.superserver, m.private)
            if a is not None
        }
        # a mirror entirely on this machine's loopback is a test or demo: one host by design
        if not all(h.startswith("127.") or h in ("::1", "localhost") for h in hosts):
            ms.rule(op, rules.check_arbiter_placement, arbiter.host, hosts)
    cfg.arbiter = arbiter
    config_changed(membership)
    log.warning("mirror %s: arbiter set to %s", cfg.name, cfg.arbiter or "none")
    return {"arbiter": None if cfg.arbiter is None else str(cfg.arbiter), "version": cfg.version}


def mirror_secret_of(membership: Membership, arg) -> dict:
    """The mirror secret, for the agent to hand to an instance that joins through this member
    (engine/member/join.py); every member holds the same.  An admin action: only the agent
    and operators ask it."""
    op = "mirror_secret"
    secret = membership.cfg.secret
    if secret is None:
        raise Refused(op, None, f"mirror {membership.cfg.name} has no secret")
    log.info("mirror %s: its secret was asked for by an admin", membership.cfg.name)
    return {"mirror": membership.cfg.name, "secret": secret}


def _check_own_tls(membership: Membership, op: str) -> None:
    node = membership.node
    if node is None or not node.has_tls:
        raise Refused(op, None, f"set up TLS on member {membership.member.name} first (set_tls)")
    try:
        tls.check_certificate(node.tls_cert, node.tls_ca)
    except tls.TLSError as exc:
        raise Refused(op, None, str(exc)) from None


def _own_dn(membership: Membership) -> str:
    return tls.normalize_dn(tls.load_certificate(membership.node.tls_cert).subject.rfc4514_string())


def set_tls(membership: Membership, arg):
    """Record this member's TLS files (or re-read them: reload_tls).  A new DN on the
    primary goes to the members at once (§5.4); on another member its data channel is
    reopened with the new certificate, and the primary holds it until authorized."""
    op = "set_tls"
    require_dynamic(membership, op)
    arg = arg_map(op, arg)
    node = membership.node
    paths = {k: arg.get(k) for k in ("cert", "key", "ca")}
    if any(paths.values()):
        apply_tls_paths(node, op, paths)
    _check_own_tls(membership, op)
    membership._tls_info = None  # the status shows the new certificate at once
    for m in (membership.member,):
        m.tls_cert, m.tls_key = node.tls_cert, node.tls_key
    membership.cfg.tls_ca = node.tls_ca
    dn = _own_dn(membership)
    changed = membership.cfg.tls and dn != membership.member.dn
    if membership.cfg.tls:
        membership.reload_tls()
        if membership.role == "primary" and changed:
            membership.member.dn = dn
            config_changed(membership)
        elif changed and membership.replica is not None:
            membership.replica.reconnect()
    return {"member": membership.member.name, "dn": dn, "dn_changed": bool(changed)}


def apply_tls_paths(node, op: str, paths: dict) -> dict:
    from pathlib import Path

    missing = [k for k, v in paths.items() if not v]
    if missing:
        raise Refused(op, None, f"give cert, key and ca (missing {', '.join(missing)})")
    cert, key, ca = (Path(paths[k]) for k in ("cert", "key", "ca"))
    try:
        info = tls.check_certificate(cert, ca)
        tls.server_context(cert, key, ca)  # the key must match the certificate
    except (tls.TLSError, OSError) as exc:
        raise Refused(op, None, str(exc)) from None
    node.tls_cert, node.tls_key, node.tls_ca = cert.resolve(), key.resolve(), ca.resolve()
    node.save()
    return info


# -- member side: configuration from the primary ------------------------------------------


def apply_config(membership: Membership, wire: dict) -> None:
    """A configuration the primary sent: save it, follow what changed."""
    cfg = membership.cfg
    if not cfg.dynamic or not isinstance(wire, dict) or wire.get("name") != cfg.name:
        return
    if int(wire.get("version", 0)) < cfg.version:
        return
    me = membership.member.name
    if not any(isinstance(m, dict) and m.get("name") == me for m in wire.get("members", [])):
        log.warning("the primary removed this member from mirror %s", cfg.name)
        membership.removed = True
        if membership.replica is not None:
            membership.replica.stopped = True
        return
    try:
        fresh = ms.from_wire(wire, membership.node, me, membership.data_dir)
    except (KeyError, TypeError, ValueError) as exc:  # rules.RuleError is a ValueError
        log.warning("refused a configuration of mirror %s from the primary: %s", cfg.name, exc)
        return
    # what this member keeps for itself (engine/member/mirror_file.py) does not travel
    fresh.dn_updates, fresh.rejected, fresh.rejected_dns = (
        cfg.dn_updates,
        cfg.rejected,
        cfg.rejected_dns,
    )
    fresh.dn_update_certs, fresh.join_times = cfg.dn_update_certs, cfg.join_times
    fresh.secret = cfg.secret
    fresh.source = cfg.source
    tls_changed = fresh.tls != cfg.tls
    old_private = membership.member.private
    old_type = membership.member.type
    cfg.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "members"})
    cfg.members = fresh.members
    membership.member = cfg.member(me)
    ms.save_local(cfg, me, membership.data_dir)
    if membership.member.type != old_type:
        # promoted or demoted (engine/member/failover_ops.py): run again in the new type
        log.warning("this member is now %s (was %s): restarting", membership.member.type, old_type)
        if membership.replica is not None:
            membership.replica.stopped = True
        membership.request_restart()
        return
    if membership.replica is not None:
        membership.replica.qos = cfg.qos_timeout_ms / 1000.0
    if membership.dejournal is not None:  # the next batch follows an edited parallel_dejournaling
        membership.dejournal.dj.parallel = cfg.parallel_for(membership.member)
    if tls_changed or membership.member.private != old_private:
        asyncio.get_running_loop().create_task(membership.relisten_private())  # then validates
    else:
        membership.check_addresses()
    if tls_changed:
        membership.reload_tls()
        if membership.replica is not None:
            membership.replica.reconnect()


def check_primary_dn(membership: Membership, server_dn: str | None) -> None:
    """On connecting: the primary's certificate must carry the DN this member knows.  A
    changed one waits here for authorization (§5.4: a member cannot reject it)."""
    cfg = membership.cfg
    if not (cfg.dynamic and cfg.tls) or server_dn is None:
        return
    # the member this data channel was opened to (it answers only if it is the primary)
    replica = membership.replica
    primary = replica.candidate if replica and replica.candidate else membership.primary_member()
    dn = tls.normalize_dn(server_dn)
    if primary.dn is None:
        primary.dn = dn
        ms.save_local(cfg, membership.member.name, membership.data_dir)
    elif dn != primary.dn:
        if cfg.dn_updates.get(primary.name) != dn:
            cfg.dn_updates[primary.name] = dn
            ms.save_local(cfg, membership.member.name, membership.data_dir)
        raise JoinRefused(
            f"the primary {primary.name} presents a new certificate DN {dn!r}: authorize the "
            "DN update on this member"
        )


async def address_problem(membership: Membership, what: str, addr, ssl) -> str | None:
    """None if this very process answers at `addr`; else what answers there (guide §5.3):
    another instance (a copied host) or nothing (the address changed, or the host is down)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(addr.host, addr.port, ssl=ssl), 2.0
        )
    except (OSError, TimeoutError) as exc:
        return f"nothing answers at this member's {what} address {addr} ({exc or 'timeout'})"
    try:
        writer.write(encode_frame(MsgType.INFO, 1, []))
        frame = await asyncio.wait_for(read_frame(reader), 2.0)
        body = unpack(frame.body)
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        return f"no engine answers at this member's {what} address {addr} ({exc})"
    finally:
        writer.close()
    if not isinstance(body, dict) or body.get("boot_id") != membership.boot_id:
        other = body.get("instance") if isinstance(body, dict) else None
        return (
            f"a different instance ({other or 'unknown'}) answers at this member's {what} "
            f"address {addr}: a copied host? update the address on the primary, or remove "
            "the local mirror configuration and join as a new member"
        )
    return None


ACTIONS = {
    "mirror_info": mirror_info,
    "mirror_secret": mirror_secret_of,
    "set_arbiter": set_arbiter,
    "authorize_member": authorize_member,
    "reject_member": reject_member,
    "authorize_dn_update": authorize_dn_update,
    "reject_dn_update": reject_dn_update,
    "edit_mirror": edit_mirror,
    "update_member_address": update_member_address,
    "remove_member": remove_member,
    "set_tls": set_tls,
    "reload_tls": set_tls,
    "leave_mirror": leave_mirror,
    "verify_tls": tls_check.verify_tls,
    # on an instance configured through the agent engine/member/remove.py answers this first;
    # here it is what a member configured by file hears (refused: not through the agent)
    "remove_mirror_config": leave_mirror,
}
