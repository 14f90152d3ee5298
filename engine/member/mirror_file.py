"""Mirror membership configured through the agent (guide §4.7, §4.9, §4.10.2–§4.10.4, §5.2, §5.4).

A member configured through the agent keeps its view of the mirror in <data_dir>/mirror.json:
the mirror's settings and every member (name, type, addresses, certificate DN, authorized or
pending).  The primary owns that view.  Every change is made there, raises `version`, and
goes to each connected member at once (DC_CONFIG) and to the others when they reconnect (in
DC_WELCOME); a member saves what it receives.  Some things stay on the member that holds them:
the mirror secret (`secret`, engine/wire/mirror_secret.py: it reaches a member from its agent
at the join, never over the data channel), the pending DN updates (`dn_updates`, with the
certificate of each: `dn_update_certs`, and a pending member's `cert`) and, on the primary,
the ids of rejected join requests (`rejected`) and the certificate DNs it rejected per member
(`rejected_dns`), so that a member presenting one again stays refused instead of coming back
as a new update; and the Join-Mirror flag (`join_mirror`, cleared only while the last
member's configuration is being removed).  A member's data directory and TLS files are its
own (engine/member/node.py) and never travel.

This module holds the file format and the refusals of the rules (names, limits of guide §3.1.2,
settings: engine/rules.py); engine/member/membership_ops.py holds the operations.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine import rules
from engine.member.config import (
    Address,
    ConfigError,
    MemberConfig,
    MirrorConfig,
    parse_address,
    parse_agent_url,
    parse_fingerprint,
)
from engine.member.node import Node, write_json
from engine.rules import SETTINGS
from engine.storage.databases import Refused
from engine.wire import mirror_secret

MIRROR_FILE = "mirror.json"
JOIN_FLAG = "join_mirror"  # local, like dn_updates: false once cleared (clear_join_flag)
MIRRORS_DIR = "mirrors"  # further memberships of a reporting async (engine/member/join.py)


# -- the file and the wire ----------------------------------------------------------


def to_wire(cfg: MirrorConfig) -> dict:
    """The mirror as every member may see it."""
    out = {"name": cfg.name, "version": cfg.version}
    out.update({key: getattr(cfg, key) for key in SETTINGS})
    out["arbiter"] = None if cfg.arbiter is None else str(cfg.arbiter)
    out["members"] = [
        {
            "name": m.name,
            "type": m.type,
            "superserver": str(m.superserver),
            "private": None if m.private is None else str(m.private),
            "agent": m.agent,
            "agent_cert_sha256": m.agent_cert_sha256,
            "dn": m.dn,
            "authorized": m.authorized,
        }
        for m in cfg.members
    ]
    return out


def from_wire(data: dict, node: Node, member: str, directory: Path | None = None) -> MirrorConfig:
    """A MirrorConfig for `member` (this node, its membership kept in `directory`, by
    default the data directory) from a wire or file form."""
    directory = node.data_dir if directory is None else directory
    cfg = MirrorConfig(name=data["name"], members=[], databases=[], dynamic=True)
    cfg.version = int(data.get("version", 0))
    # a configuration from the wire or a file is checked like one given by an operator: a
    # forged or stale one must not bring a 2**62 ms QoS (raises rules.RuleError, a ValueError)
    for key, value in rules.check_settings({k: data[k] for k in SETTINGS if k in data}).items():
        setattr(cfg, key, value)
    if data.get("arbiter") is not None:
        cfg.arbiter = parse_address(data["arbiter"], "arbiter")
    for raw in data["members"]:
        m = MemberConfig(
            name=raw["name"],
            type=raw["type"],
            superserver=parse_address(raw["superserver"], f"member {raw['name']}"),
            private=parse_address(raw["private"], raw["name"]) if raw.get("private") else None,
            data_dir=directory if raw["name"] == member else directory / "-",
            databases=[],
            dn=raw.get("dn"),
            authorized=bool(raw.get("authorized", True)),
            join_id=raw.get("join_id"),
            cert=raw["cert"] if isinstance(raw.get("cert"), dict) else None,
            agent=parse_agent_url(raw["agent"], raw["name"]) if raw.get("agent") else None,
            agent_cert_sha256=(
                parse_fingerprint(raw["agent_cert_sha256"], raw["name"])
                if raw.get("agent_cert_sha256")
                else None
            ),
        )
        if m.name == member:
            m.tls_cert, m.tls_key = node.tls_cert, node.tls_key
        cfg.members.append(m)
    cfg.tls_ca = node.tls_ca
    return cfg


def save_local(cfg: MirrorConfig, member: str, data_dir: Path) -> None:
    data = to_wire(cfg)
    data["member"] = member
    data["rejected"] = cfg.rejected
    data["dn_updates"] = cfg.dn_updates
    data["rejected_dns"] = cfg.rejected_dns
    data["dn_update_certs"] = cfg.dn_update_certs
    if cfg.secret is not None:
        data["secret"] = cfg.secret
    for raw, m in zip(data["members"], cfg.members, strict=True):
        raw["join_id"] = m.join_id
        if m.cert is not None:
            raw["cert"] = m.cert
    write_json(Path(data_dir) / MIRROR_FILE, data)


def load_all(node: Node) -> list[tuple[MirrorConfig, str]]:
    """Every membership of this node (mirror configuration, member name): none, one, or
    several for a reporting async."""
    dirs = [node.data_dir]
    extra = node.data_dir / MIRRORS_DIR
    if extra.is_dir():
        dirs += sorted(p for p in extra.iterdir() if p.is_dir())
    return [found for d in dirs if (found := load_local(node, d)) is not None]


def load_local(node: Node, directory: Path | None = None) -> tuple[MirrorConfig, str] | None:
    """The mirror configuration kept in `directory` (default: the data directory) and this
    node's member name there, or None: no membership there."""
    directory = node.data_dir if directory is None else directory
    path = directory / MIRROR_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        cfg = from_wire(data, node, data["member"], directory)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable mirror configuration: {exc}") from None
    cfg.rejected = list(data.get("rejected", []))
    cfg.dn_updates = dict(data.get("dn_updates", {}))
    cfg.rejected_dns = {k: list(v) for k, v in data.get("rejected_dns", {}).items()}
    cfg.dn_update_certs = {k: dict(v) for k, v in data.get("dn_update_certs", {}).items()}
    if data.get("secret") is not None:
        try:
            cfg.secret = mirror_secret.check_secret(data["secret"])
        except mirror_secret.SecretError as exc:
            raise ConfigError(f"{path}: the mirror secret: {exc}") from None
    cfg.source = path
    return cfg, data["member"]


def remove_local(data_dir: Path) -> None:
    (Path(data_dir) / MIRROR_FILE).unlink(missing_ok=True)


def clear_join_flag(directory: Path) -> None:
    """Clear the membership's Join-Mirror flag: from the next start the instance keeps the
    configuration but does not run as that member (the first step of removing the last
    member's configuration, guide §4.10.4; engine/member/remove.py).  Nothing saves the
    configuration of a membership that is not running, so the flag stays until removal."""
    path = Path(directory) / MIRROR_FILE
    data = json.loads(path.read_text())
    data[JOIN_FLAG] = False
    write_json(path, data)


def joins_at_start(cfg: MirrorConfig) -> bool:
    """Whether the membership loaded as `cfg` has its Join-Mirror flag set (the default)."""
    try:
        return json.loads(Path(cfg.source).read_text()).get(JOIN_FLAG, True) is not False
    except (OSError, TypeError, ValueError):
        return True


# -- rules --------------------------------------------------------------------------


def rule(op: str, check, *args):
    """A rule of engine/rules.py; a broken one is a refusal naming its reason code."""
    try:
        return check(*args)
    except rules.RuleError as exc:
        raise Refused.broken(op, exc) from None


def check_mirror_name(op: str, name) -> str:
    return rule(op, rules.check_mirror_name, name)


def check_member_name(op: str, name, mtype: str) -> str:
    return rule(op, rules.check_member_name, name, mtype)


def check_type(op: str, mtype) -> str:
    return rule(op, rules.check_member_type, mtype)


def check_address(op: str, value, what: str) -> Address:
    try:
        return parse_address(value, what)
    except ConfigError as exc:
        raise Refused(op, None, str(exc)) from None


def check_join(cfg: MirrorConfig, name: str, mtype: str, addresses: list[Address]) -> None:
    """Refuse a new member the mirror cannot take (guide §3.1.2), naming the limit."""
    op = "join"
    if any(m.name == name for m in cfg.members):
        raise Refused(op, None, f"mirror {cfg.name} already has a member named {name}")
    rule(op, rules.check_mirror_limits, cfg.name, mtype, [m.type for m in cfg.members])
    taken = {a for m in cfg.members for a in (m.superserver, m.private) if a is not None}
    for addr in addresses:
        if addr in taken:
            raise Refused(op, None, f"address {addr} is already used by a member of {cfg.name}")


def links_to_restart(cfg: MirrorConfig, changed, primary: str) -> frozenset[str]:
    """The members whose data channel an edit of the `changed` settings restarts: every one
    for TLS; for a compression setting only those it applies to (guide §3.5.3: the failover
    setting is primary to backup, the async one primary to asyncs)."""
    others = [m for m in cfg.members if m.name != primary]
    if "tls" in changed:
        return frozenset(m.name for m in others)
    failover = any(k.startswith("failover_compression") for k in changed)
    asyncs = any(k.startswith("async_compression") for k in changed)
    return frozenset(m.name for m in others if (failover if m.is_failover else asyncs))


def check_settings(op: str, changes) -> dict:
    """The mirror settings in `changes`, checked; the mirror name never changes (§4.10.4)."""
    return rule(op, rules.check_settings, changes)
