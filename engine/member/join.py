"""Creating and joining a mirror from an instance (guide §4.7.1, §4.7.2, §4.7.5, limits §3.1.2).

    mirror_create {mirror, private, member?, settings?, secret?}   §4.7.1: this instance becomes
                                                                   the primary
    mirror_join {mirror, address, type, member?, private?, superserver?, secret?}   §4.7.2, §4.7.5

The mirror secret (engine/wire/mirror_secret.py) authenticates the data channel of a mirror
without TLS: the creator makes one (or takes the one it is given), and a join to a mirror
without TLS needs it, from the primary's agent.  It is kept in mirror.json and never travels
with the configuration.

Both write the new membership's mirror.json and ask the process to restart as that member
(engine/member/instance.py).  A joining instance first asks the member at `address` for the mirror's
configuration, so the limits and the TLS requirement are checked before anything is
written; the primary checks them again when the member connects.  An instance that already
belongs to a mirror may join another only as a reporting async of the same kind, under the
same member name, up to ten mirrors; a DR async or a failover member belongs to one mirror.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from engine import rules
from engine.client.app import AsyncClient, EngineError
from engine.member import mirror_file as ms
from engine.member.config import (
    ConfigError,
    MemberConfig,
    MirrorConfig,
    parse_agent_url,
    parse_fingerprint,
)
from engine.member.node import Node, peer_tls
from engine.storage.databases import Refused
from engine.wire import mirror_secret, tls

log = logging.getLogger("engine.member.instance")
JOIN_TIMEOUT_S = 5.0


def own_dn(node: Node, op: str) -> str:
    if not node.has_tls:
        raise Refused(op, None, "the mirror requires TLS: set up TLS on this instance first")
    try:
        info = tls.check_certificate(node.tls_cert, node.tls_ca)
    except tls.TLSError as exc:
        raise Refused(op, None, str(exc)) from None
    return tls.normalize_dn(info["subject_dn"])


def create(node: Node, arg, current: list[tuple[MirrorConfig, str]]) -> dict:
    op = "mirror_create"
    if not isinstance(arg, dict):
        raise Refused(op, None, "expected {mirror, private, member?, settings?}")
    name = ms.check_mirror_name(op, arg.get("mirror"))
    # the creator becomes the mirror's first failover member
    check_other_memberships(op, name, rules.FAILOVER, None, current)
    member = ms.check_member_name(op, arg.get("member") or node.name, "failover")
    private = ms.check_address(op, arg.get("private"), "private")
    settings = ms.check_settings(op, arg.get("settings") or {})
    if private == node.superserver:
        raise Refused(op, None, "the mirror private address must differ from the superserver")
    cfg = MirrorConfig(name=name, members=[], databases=[], dynamic=True, version=1)
    for key, value in settings.items():
        setattr(cfg, key, value)
    cfg.secret = _secret(op, arg.get("secret")) or mirror_secret.new_secret()
    m = MemberConfig(member, "failover", node.superserver, private, node.data_dir, [])
    m.agent, m.agent_cert_sha256 = _agent(op, arg.get("agent"), arg.get("agent_cert_sha256"))
    m.dn = own_dn(node, op) if cfg.tls else None
    cfg.members.append(m)
    ms.save_local(cfg, member, node.data_dir)
    log.warning("mirror %s created; restarting as its primary %s", name, member)
    return {"mirror": name, "member": member, "role": "primary", "dn": m.dn}


def _agent(op: str, value, fingerprint) -> tuple[str | None, str | None]:
    """The agent of this instance's host, which its failover partner may ask (docs/takeover.md),
    and the SHA-256 of its certificate when it serves https; the agent gives both when it
    creates or joins a mirror."""
    try:
        url = None if value is None else parse_agent_url(value, "agent")
        pin = None if fingerprint is None else parse_fingerprint(fingerprint, "agent_cert_sha256")
    except ConfigError as exc:
        raise Refused(op, None, str(exc)) from None
    return url, pin


def _secret(op: str, value) -> str | None:
    if value is None:
        return None
    try:
        return mirror_secret.check_secret(value)
    except mirror_secret.SecretError as exc:
        raise Refused(op, None, f"secret: {exc}") from None


def check_other_memberships(
    op: str, name: str, mtype: str, member: str | None, current: list
) -> None:
    """The rules for an instance already in a mirror (guide §3.1.2, §4.7.5, §4.10.3)."""
    if not current:
        return
    mine = [(cfg, cfg.member(me)) for cfg, me in current]
    others = [(cfg.name, m.type) for cfg, m in mine]
    ms.rule(op, rules.check_other_mirrors, name, mtype, others)
    names = {m.name for _, m in mine}
    if member is not None and member not in names:
        raise Refused(op, None, f"this instance is member {names.pop()} in its other mirrors")


async def join(node: Node, arg, current: list[tuple[MirrorConfig, str]]) -> dict:
    op = "mirror_join"
    if not isinstance(arg, dict):
        raise Refused(op, None, "expected {mirror, address, type, member?, private?}")
    name = ms.check_mirror_name(op, arg.get("mirror"))
    mtype = ms.check_type(op, arg.get("type"))
    default_name = current[0][1] if current else node.name
    member = ms.check_member_name(op, arg.get("member") or default_name, mtype)
    check_other_memberships(op, name, mtype, member, current)
    address = str(ms.check_address(op, arg.get("address"), "address"))
    superserver = node.superserver
    if arg.get("superserver"):
        superserver = ms.check_address(op, arg["superserver"], "superserver")
    private = ms.check_address(op, arg["private"], "private") if arg.get("private") else None
    if mtype == "failover" and private is None:
        raise Refused(op, None, "a failover member needs a mirror private address")
    info = await _mirror_info(op, address, node)
    if info.get("name") != name:
        raise Refused(op, None, f"the member at {address} is in mirror {info.get('name')}")
    directory = membership_dir(node, name, bool(current))
    try:
        cfg = ms.from_wire(info, node, member, directory)
    except rules.RuleError as exc:
        raise Refused(
            op, None, f"the mirror's configuration at {address}: {exc}", exc.reason
        ) from None
    ms.check_join(cfg, member, mtype, [a for a in (superserver, private) if a is not None])
    cfg.secret = _secret(op, arg.get("secret"))
    if cfg.secret is None and not cfg.tls:
        raise Refused(
            op,
            None,
            f"mirror {name} has no TLS, so its members prove themselves with the mirror secret: "
            "give 'secret' (the primary's agent answers it: GET /v1/instances/<primary>/mirror/"
            "secret)",
        )
    m = MemberConfig(member, mtype, superserver, private, directory, [])
    m.agent, m.agent_cert_sha256 = _agent(op, arg.get("agent"), arg.get("agent_cert_sha256"))
    m.dn = own_dn(node, op) if cfg.tls else None
    m.authorized, m.join_id = not cfg.tls, uuid.uuid4().hex
    cfg.members.append(m)
    directory.mkdir(parents=True, exist_ok=True)
    ms.save_local(cfg, member, directory)
    log.warning("joining mirror %s as %s (%s); restarting as that member", name, member, mtype)
    return {
        "mirror": name,
        "member": member,
        "type": mtype,
        "dn": m.dn,
        "pending": cfg.tls,
        "primary": info.get("primary"),
    }


def membership_dir(node: Node, mirror: str, another: bool) -> Path:
    """The first membership lives in the data directory; further ones (a reporting async in
    several mirrors) in mirrors/<MIRROR>/ under it, each with its own journal and databases."""
    return node.data_dir / ms.MIRRORS_DIR / mirror if another else node.data_dir


async def _mirror_info(op: str, address: str, node: Node) -> dict:
    client = AsyncClient(
        [address], follow_primary=False, timeout=JOIN_TIMEOUT_S, retries=0, **peer_tls(node)
    )
    try:
        await client.connect()
        info = await client.admin("mirror_info")
    except (EngineError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise Refused(op, None, f"cannot read the mirror from {address}: {reason}") from None
    finally:
        await client.close()
    if not isinstance(info, dict) or not info.get("dynamic"):
        raise Refused(op, None, f"the member at {address} is not configured through agents")
    return info
