"""A mirror's configuration as the engine holds it (MirrorConfig, MemberConfig, Address), and
the mirror file it can be read from.

A mirror file starts every member of a local mirror without agents (`python -m engine
instance --config FILE --member NAME`, engine/cluster/launcher.py); an instance configured
through its agent keeps the same configuration in mirror.json (engine/member/mirror_file.py).

Example (see examples/cluster.toml):

    [mirror]
    name = "DEMO"
    qos_timeout_ms = 8000
    databases = ["USER", "APP"]
    failover_compression = "System Selected"     # or "Uncompressed" / "Compressed"
    failover_compression_type = "zlib"            # zlib | zstd | lz4 (for "Compressed")
    async_compression = "System Selected"
    async_compression_type = "zlib"
    parallel_dejournaling = "failover+dr"         # or "all" / "failover"
    tls = false                                   # true: mutual TLS on every data channel
    tls_ca = "certs/ca.pem"                       # with tls: the CA that signs member certs
    data_root = "var/demo"                        # relative to this file
    secret_file = "secret"                        # the mirror secret (with tls: for agents only)
    arbiter = "127.0.0.1:2189"                    # optional: the arbiter (docs/failover.md)

    [[members]]
    name = "A"
    type = "failover"                            # failover | dr | ro_reporting | rw_reporting
    superserver = "127.0.0.1:21100"
    private = "127.0.0.1:21101"                  # mirror private address (data channel)

Member keys: data_dir (default data_root/NAME), agent (the host agent's address, for a
failover member's partner: docs/takeover.md), databases (subset, reporting only),
dejournal_filter ("module:function", reporting only), codecs (codecs this member can
decompress; default all three), dejournal_workers, and with tls: tls_cert and tls_key
(the member's certificate, whose subject CN is the member name, and its key).
`[members.hooks]` names executables run around becoming primary (can_become_primary,
check_become_primary, notify_become_primary, notify_become_primary_failed: engine/member/
hooks.py).  Relative paths are relative to the configuration file.
`secret_file` holds the mirror secret
(engine/wire/mirror_secret.py; make one with `python -c "from engine.wire.mirror_secret import
new_secret; print(new_secret())"`); without TLS and without a secret the data channel is not
authenticated, and each member says so in its log at start.  With TLS the secret is what a
member shows its partner's agent (docs/takeover.md, "Agents on a TLS mirror made from a file").
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from engine import rules
from engine.rules import COMPRESSION_TYPES as CODECS
from engine.rules import MAX_MEMBERS
from engine.rules import MEMBER_TYPE_LABELS as TYPE_LABELS
from engine.wire import mirror_secret


class ConfigError(ValueError):
    """The configuration file is invalid; the message names the offending key."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class MemberConfig:
    name: str
    type: str
    superserver: Address
    private: Address | None
    data_dir: Path
    databases: list[str]
    dejournal_filter: str | None = None
    codecs: list[str] = field(default_factory=lambda: list(CODECS))
    dejournal_workers: int = 4
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # membership as the primary keeps it (engine/member/mirror_file.py): the member's certificate
    # DN on a TLS mirror, whether the primary authorized it, and the id of its join request
    dn: str | None = None
    authorized: bool = True
    join_id: str | None = None
    # on the primary, while pending: the certificate it asked with (sha256 fingerprint, issuer
    # DN, not_after: engine/member/membership_ops.py cert_record); kept locally, never sent
    cert: dict | None = None
    # the agent on the member's host (guide §3.1.3): a failover member that loses its
    # partner asks it whether the partner is down (engine/member/agent_confirm.py)
    agent: str | None = None  # "http(s)://host:port"
    # the SHA-256 of that agent's certificate (hex), when it serves https: the partner pins it
    # (an agent's certificate need not come from the mirror's CA; a mirror may have none)
    agent_cert_sha256: str | None = None
    # executables run around becoming primary (engine/member/hooks.py), by hook name
    hooks: dict[str, str] = field(default_factory=dict)

    @property
    def is_failover(self) -> bool:
        return self.type == "failover"

    @property
    def is_reporting(self) -> bool:
        return self.type in rules.REPORTING_TYPES

    @property
    def type_label(self) -> str:
        return TYPE_LABELS[self.type]

    @property
    def data_address(self) -> Address:
        """Where this member's data channel listens (private, else superserver port + 1)."""
        return self.private or self.superserver


@dataclass
class MirrorConfig:
    name: str
    members: list[MemberConfig]
    databases: list[str]
    # the settings (engine/rules.py SETTINGS and their defaults)
    qos_timeout_ms: int = rules.SETTINGS["qos_timeout_ms"]
    failover_compression: str = rules.SETTINGS["failover_compression"]
    failover_compression_type: str = rules.SETTINGS["failover_compression_type"]
    async_compression: str = rules.SETTINGS["async_compression"]
    async_compression_type: str = rules.SETTINGS["async_compression_type"]
    parallel_dejournaling: str = rules.SETTINGS["parallel_dejournaling"]
    tls: bool = rules.SETTINGS["tls"]
    tls_ca: Path | None = None
    # authenticates the data channel without TLS (engine/wire/mirror_secret.py); never travels
    # with the configuration
    secret: str | None = None
    # the arbiter the failover members keep contact with (engine/member/failover_watch.py)
    arbiter: Address | None = None
    journal_file_bytes: int = 64 * 1024 * 1024
    source: Path | None = None
    # configured through the agent (kept in <data_dir>/mirror.json) rather than from a file
    dynamic: bool = False
    version: int = 0  # raised by the primary on every change it propagates
    rejected: list[str] = field(default_factory=list)  # join ids the primary rejected
    dn_updates: dict[str, str] = field(default_factory=dict)  # member -> new DN awaiting
    rejected_dns: dict[str, list[str]] = field(default_factory=dict)  # member -> DNs refused
    # member -> the certificate of its pending DN update (fingerprint, issuer, not_after)
    dn_update_certs: dict[str, dict] = field(default_factory=dict)
    # certificate fingerprint -> when (monotonic) it last registered a pending member; memory only
    join_times: dict[str, float] = field(default_factory=dict)

    def find(self, name: str) -> MemberConfig | None:
        for m in self.members:
            if m.name == name.upper():
                return m
        return None

    def member(self, name: str) -> MemberConfig:
        found = self.find(name)
        if found is not None:
            return found
        known = ", ".join(m.name for m in self.members)
        raise ConfigError(f"no member named {name!r} in mirror {self.name} (members: {known})")

    @property
    def failover_members(self) -> list[MemberConfig]:
        return [m for m in self.members if m.is_failover]

    @property
    def first_primary(self) -> MemberConfig:
        return self.failover_members[0]

    def parallel_for(self, member: MemberConfig) -> bool:
        """Whether `member` dejournals in parallel under the mirror's setting (guide §4.16)."""
        if member.is_failover:
            return True
        if self.parallel_dejournaling == rules.PARALLEL_ALL:
            return True
        return self.parallel_dejournaling == rules.PARALLEL_FAILOVER_DR and member.type == rules.DR


def parse_address(text: object, where: str) -> Address:
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(f"{where}: expected 'host:port', got {text!r}")
    host, _, port = text.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"{where}: port {port!r} is not a number") from None
    if not 0 < p < 65536:
        raise ConfigError(f"{where}: port {p} out of range 1-65535")
    return Address(host or "127.0.0.1", p)


def _rule(where: str, check, *args):
    """A rule of engine/rules.py; a broken one is a ConfigError naming the key."""
    try:
        return check(*args)
    except rules.RuleError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _setting(mirror: dict, key: str):
    try:
        return rules.check_setting(key, mirror.get(key, rules.SETTINGS[key]))
    except rules.RuleError as exc:  # the message starts with the key
        raise ConfigError(f"mirror.{exc.message}") from None


def _db_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of database names")
    out = []
    for db in value:
        out.append(_rule(where, rules.check_database_name, db))
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: database names must be unique (case-insensitively)")
    return out


def _member(
    raw: dict, mirror_dbs: list[str], data_root: Path, index: int, base_dir: Path
) -> MemberConfig:
    where = f"members[{index}]"
    mtype = _rule(f"{where}.type", rules.check_member_type, raw.get("type"))
    name = _rule(f"{where}.name", rules.check_member_name, raw.get("name"), mtype)
    superserver = parse_address(raw.get("superserver"), f"{where}.superserver")
    private = parse_address(raw["private"], f"{where}.private") if "private" in raw else None
    data_dir = Path(raw.get("data_dir", data_root / name))
    if not data_dir.is_absolute():
        data_dir = data_root / data_dir
    dbs = mirror_dbs
    if "databases" in raw:
        if mtype not in rules.REPORTING_TYPES:
            raise ConfigError(
                f"{where}.databases: only reporting asyncs may hold a subset of databases"
            )
        dbs = _db_list(raw["databases"], f"{where}.databases")
        unknown = set(dbs) - set(mirror_dbs)
        if unknown:
            raise ConfigError(
                f"{where}.databases: not mirrored databases: {', '.join(sorted(unknown))}"
            )
    flt = raw.get("dejournal_filter")
    if flt is not None:
        if mtype not in rules.REPORTING_TYPES:
            raise ConfigError(
                f"{where}.dejournal_filter: filters are allowed on reporting asyncs only"
            )
        if not isinstance(flt, str) or ":" not in flt:
            raise ConfigError(f"{where}.dejournal_filter: expected 'module:function', got {flt!r}")
    codecs = raw.get("codecs", list(CODECS))
    if not isinstance(codecs, list) or any(c not in CODECS for c in codecs):
        raise ConfigError(f"{where}.codecs: expected a list drawn from {', '.join(CODECS)}")
    workers = raw.get("dejournal_workers", 4)
    if not isinstance(workers, int) or not 1 <= workers <= rules.MAX_DEJOURNAL_JOBS:
        raise ConfigError(f"{where}.dejournal_workers: must be 1-{rules.MAX_DEJOURNAL_JOBS}")
    m = MemberConfig(name, mtype, superserver, private, data_dir, dbs, flt, codecs, workers)
    m.tls_cert = _path(raw.get("tls_cert"), base_dir, f"{where}.tls_cert")
    m.tls_key = _path(raw.get("tls_key"), base_dir, f"{where}.tls_key")
    if "agent" in raw:
        m.agent = parse_agent_url(raw["agent"], f"{where}.agent")
    if "agent_cert_sha256" in raw:
        m.agent_cert_sha256 = parse_fingerprint(raw["agent_cert_sha256"], f"{where}.agent")
    m.hooks = _hooks(raw.get("hooks", {}), base_dir, f"{where}.hooks")
    return m


HOOK_NAMES = (
    "can_become_primary",
    "check_become_primary",
    "notify_become_primary",
    "notify_become_primary_failed",
)


def _hooks(value: object, base_dir: Path, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table of hook = executable")
    unknown = sorted(set(value) - set(HOOK_NAMES))
    if unknown:
        raise ConfigError(
            f"{where}: unknown hook(s) {', '.join(unknown)} (known: {', '.join(HOOK_NAMES)})"
        )
    return {k: str(_path(v, base_dir, f"{where}.{k}")) for k, v in value.items()}


def parse_fingerprint(value: object, where: str) -> str:
    """A certificate's SHA-256, 64 hex digits (colons allowed), in lower case."""
    text = value.replace(":", "").lower() if isinstance(value, str) else ""
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(f"{where}: expected a SHA-256 fingerprint (64 hex digits), got {value!r}")
    return text


def parse_agent_url(value: object, where: str) -> str:
    """An agent's address: "http://host:port" or "https://host:port" (https: its certificate
    is checked against the mirror's CA)."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: expected 'http(s)://host:port', got {value!r}")
    parse_address(value.split("://", 1)[1].rstrip("/"), where)
    return value.rstrip("/")


def _path(value: object, base_dir: Path, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a file path")
    p = Path(value)
    return p if p.is_absolute() else base_dir / p


def _secret(value: object, base_dir: Path) -> str | None:
    """The mirror secret kept in the file `mirror.secret_file` names (a file, so that the
    configuration itself can be shared without it)."""
    path = _path(value, base_dir, "mirror.secret_file")
    if path is None:
        return None
    try:
        return mirror_secret.check_secret(path.read_text().strip())
    except OSError as exc:
        raise ConfigError(f"mirror.secret_file: cannot read {path}: {exc.strerror}") from None
    except mirror_secret.SecretError as exc:
        raise ConfigError(f"mirror.secret_file: {path}: {exc}") from None


def parse_config(data: dict, base_dir: Path, source: Path | None = None) -> MirrorConfig:
    mirror = data.get("mirror")
    if not isinstance(mirror, dict):
        raise ConfigError("missing [mirror] table")
    name = _rule("mirror.name", rules.check_mirror_name, mirror.get("name"))
    dbs = _db_list(mirror.get("databases"), "mirror.databases")
    data_root = Path(mirror.get("data_root", "var"))
    if not data_root.is_absolute():
        data_root = (base_dir / data_root).resolve()
    cfg = MirrorConfig(
        name=name,
        members=[],
        databases=dbs,
        **{key: _setting(mirror, key) for key in rules.SETTINGS},
        tls_ca=_path(mirror.get("tls_ca"), base_dir, "mirror.tls_ca"),
        journal_file_bytes=int(mirror.get("journal_file_bytes", 64 * 1024 * 1024)),
        source=source,
    )
    cfg.secret = _secret(mirror.get("secret_file"), base_dir)
    if mirror.get("arbiter") is not None:
        cfg.arbiter = parse_address(mirror["arbiter"], "mirror.arbiter")
    raw_members = data.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        raise ConfigError("missing [[members]] entries")
    if len(raw_members) > MAX_MEMBERS:
        raise ConfigError(f"a mirror has at most {MAX_MEMBERS} members, got {len(raw_members)}")
    for i, raw in enumerate(raw_members):
        if not isinstance(raw, dict):
            raise ConfigError(f"members[{i}]: expected a table")
        cfg.members.append(_member(raw, dbs, data_root, i, base_dir))
    names = [m.name for m in cfg.members]
    if len(set(names)) != len(names):
        raise ConfigError("member names must be unique")
    nfail = len(cfg.failover_members)
    if not 1 <= nfail <= rules.MAX_FAILOVER:
        raise ConfigError(f"a mirror needs 1 or 2 failover members, got {nfail}")
    _rule("members", rules.check_member_mix, cfg.name, [m.type for m in cfg.members])
    for m in cfg.failover_members:
        if m.private is None:
            raise ConfigError(
                f"member {m.name}: failover members need a mirror private address ('private')"
            )
    if cfg.tls:
        if cfg.tls_ca is None:
            raise ConfigError("mirror.tls_ca: a mirror that requires TLS needs its CA certificate")
        for m in cfg.members:
            if m.tls_cert is None or m.tls_key is None:
                raise ConfigError(f"member {m.name}: tls_cert and tls_key are required with TLS")
    ports = [a for m in cfg.members for a in (m.superserver, m.private) if a is not None]
    if len(set(ports)) != len(ports):
        raise ConfigError("every superserver and private address must be distinct")
    return cfg


def read_toml(path: str | Path, what: str) -> tuple[dict, Path]:
    """The parsed TOML file and its resolved path, or a ConfigError naming `what` it was."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return data, path.resolve()


def load_config(path: str | Path) -> MirrorConfig:
    data, resolved = read_toml(path, "configuration file")
    return parse_config(data, resolved.parent, resolved)
