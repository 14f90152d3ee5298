"""The agent's configuration file (TOML).

    [agent]
    listen = "127.0.0.1:2188"          # default "0.0.0.0:2188": all interfaces (guide §4.14.2)
    probe_timeout_ms = 1000             # an instance silent this long is "hung"
    max_request_bytes = 65536           # larger request bodies get 413
    stream_interval_ms = 20             # status stream: how often each instance is polled
    stream_queue = 256                  # events a stream subscriber may lag before it is cut off
    stream_heartbeat_ms = 10000         # keep-alive comment on an idle stream
    max_connections = 256               # connections open at once; one more is closed at once
    max_streams = 64                    # status streams at once; one more is answered 503
    header_timeout_ms = 10000           # connect (TLS handshake included) to a whole request head
    idle_timeout_ms = 75000             # a kept-alive connection with no request
    body_timeout_ms = 30000             # a request head to the last byte of its body
    arbiter = "0.0.0.0:2189"            # optional: an arbiter there (engine/failover/arbiter.py),
                                        # or [agent.arbiter] listen, cert, key, ca: mutual TLS

    [agent.tls]                         # mutual TLS: identity = client certificate DN
    cert = "agent.pem"
    key = "agent-key.pem"
    ca = "ca.pem"                       # clients must present a certificate from this CA
    allowed_dns = ["CN=portal,O=Mirror Portal"]

    # ... or, without a client CA, a bearer credential (TLS cert/key stay optional):
    # [agent.auth]
    # credential_file = "agent.credential"   # or credential = "..." (at least 16 chars)

    [[instances]]                       # the instances on this host
    name = "A"
    superserver = "127.0.0.1:21100"
    data_dir = "var/demo/A"             # relative paths are relative to this file
    mirror = "DEMO"                     # optional: the mirror whose journal it holds
    cert = "A.pem"                      # optional: its certificate (expiry in the status stream)

The API is always authenticated: a configuration without a client CA and without a
credential is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.failover.arbiter import ArbiterConfigError, ArbiterSettings, parse_arbiter_setting
from engine.member.config import Address, ConfigError, parse_address, read_toml
from engine.wire.tls import TLSError, normalize_dn

DEFAULT_PORT = 2188
MIN_CREDENTIAL = 16


@dataclass
class InstanceEntry:
    name: str
    superserver: Address
    data_dir: Path
    mirror: str | None = None
    cert: Path | None = None  # the instance's certificate, for its expiry in the status stream


@dataclass
class AgentConfig:
    listen: Address
    instances: list[InstanceEntry]
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    allowed_dns: frozenset[str] = field(default_factory=frozenset)
    credential: str | None = None
    probe_timeout_s: float = 1.0
    max_request_bytes: int = 65536
    stream_interval_s: float = 0.02  # the file default too: p99 change-to-event within 50 ms
    stream_queue: int = 256
    stream_heartbeat_s: float = 10.0
    # the listener's limits (engine/agent/limits.py); a stream is long-lived by design, so it
    # has its own cap instead of the idle and body timeouts
    max_connections: int = 256
    max_streams: int = 64
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    body_timeout_s: float = 30.0
    arbiter: ArbiterSettings | None = None  # the arbiter this agent runs (None: none)
    source: Path | None = None

    @property
    def mutual_tls(self) -> bool:
        return self.ca is not None

    @property
    def auth_mode(self) -> str:
        return "mutual-tls" if self.mutual_tls else "credential"

    def instance(self, name: str) -> InstanceEntry | None:
        for entry in self.instances:
            if entry.name == name.upper():
                return entry
        return None


def _path(value: object, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a file path")
    p = Path(value)
    return p if p.is_absolute() else base / p


def _int(table: dict, key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: must be an integer from {low} to {high}")
    return value


def _listen(value: object) -> Address:
    if value is None:
        return Address("0.0.0.0", DEFAULT_PORT)
    if isinstance(value, str) and ":" not in value:
        return Address(value, DEFAULT_PORT)  # a bare host: the default port
    return parse_address(value, "agent.listen")


def _tls(cfg: AgentConfig, tls: object, base: Path) -> None:
    if not isinstance(tls, dict):
        raise ConfigError("agent.tls: expected a table")
    if ("cert" in tls) != ("key" in tls):
        raise ConfigError("agent.tls: cert and key go together")
    if "cert" in tls:
        cfg.cert = _path(tls["cert"], base, "agent.tls.cert")
        cfg.key = _path(tls["key"], base, "agent.tls.key")
    if "ca" in tls:
        if cfg.cert is None:
            raise ConfigError("agent.tls.ca: mutual TLS needs the agent's own cert and key too")
        cfg.ca = _path(tls["ca"], base, "agent.tls.ca")
        dns = tls.get("allowed_dns")
        if not isinstance(dns, list) or not dns:
            raise ConfigError(
                "agent.tls.allowed_dns: mutual TLS needs a non-empty list of client "
                "certificate DNs (RFC 4514, e.g. 'CN=portal,O=Mirror Portal')"
            )
        try:
            cfg.allowed_dns = frozenset(normalize_dn(d) for d in dns)
        except TLSError as exc:
            raise ConfigError(f"agent.tls.allowed_dns: {exc}") from None
    elif "allowed_dns" in tls:
        raise ConfigError("agent.tls.allowed_dns: only meaningful with a client CA (agent.tls.ca)")


def _credential(auth: object, base: Path) -> str:
    if not isinstance(auth, dict):
        raise ConfigError("agent.auth: expected a table")
    if ("credential" in auth) == ("credential_file" in auth):
        raise ConfigError("agent.auth: give exactly one of credential or credential_file")
    if "credential_file" in auth:
        path = _path(auth["credential_file"], base, "agent.auth.credential_file")
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"agent.auth.credential_file: cannot read {path}: {exc}") from None
    else:
        value = auth["credential"]
        if not isinstance(value, str):
            raise ConfigError("agent.auth.credential: expected a string")
    if len(value) < MIN_CREDENTIAL or not value.isprintable() or " " in value:
        raise ConfigError(
            f"agent credential: at least {MIN_CREDENTIAL} printable characters without spaces"
        )
    return value


def _instances(raw: object, base: Path) -> list[InstanceEntry]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("instances: expected [[instances]] tables")
    out: list[InstanceEntry] = []
    for i, item in enumerate(raw):
        where = f"instances[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > 32 or not name.isprintable():
            raise ConfigError(f"{where}.name: expected a name of 1-32 printable characters")
        mirror = item.get("mirror")
        if mirror is not None and (not isinstance(mirror, str) or not mirror.isalnum()):
            raise ConfigError(f"{where}.mirror: expected an alphanumeric mirror name")
        out.append(
            InstanceEntry(
                name=name.upper(),
                superserver=parse_address(item.get("superserver"), f"{where}.superserver"),
                data_dir=_path(item.get("data_dir"), base, f"{where}.data_dir"),
                mirror=mirror.upper() if mirror else None,
                cert=_path(item["cert"], base, f"{where}.cert") if "cert" in item else None,
            )
        )
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ConfigError("instances: names must be unique on a host")
    return out


def parse_agent_config(data: dict, base: Path, source: Path | None = None) -> AgentConfig:
    agent = data.get("agent", {})
    if not isinstance(agent, dict):
        raise ConfigError("agent: expected a table")
    cfg = AgentConfig(
        listen=_listen(agent.get("listen")),
        instances=_instances(data.get("instances"), base),
        probe_timeout_s=_int(agent, "probe_timeout_ms", 1000, 50, 60000, "agent") / 1000,
        max_request_bytes=_int(agent, "max_request_bytes", 65536, 1024, 16 << 20, "agent"),
        stream_interval_s=_int(agent, "stream_interval_ms", 20, 10, 60000, "agent") / 1000,
        stream_queue=_int(agent, "stream_queue", 256, 1, 100000, "agent"),
        stream_heartbeat_s=_int(agent, "stream_heartbeat_ms", 10000, 100, 600000, "agent") / 1000,
        max_connections=_int(agent, "max_connections", 256, 1, 100000, "agent"),
        max_streams=_int(agent, "max_streams", 64, 1, 10000, "agent"),
        header_timeout_s=_int(agent, "header_timeout_ms", 10000, 100, 3600000, "agent") / 1000,
        idle_timeout_s=_int(agent, "idle_timeout_ms", 75000, 100, 86400000, "agent") / 1000,
        body_timeout_s=_int(agent, "body_timeout_ms", 30000, 100, 3600000, "agent") / 1000,
        source=source,
    )
    try:
        cfg.arbiter = parse_arbiter_setting(agent.get("arbiter"), base)
    except ArbiterConfigError as exc:
        raise ConfigError(str(exc)) from None
    if "tls" in agent:
        _tls(cfg, agent["tls"], base)
    if "auth" in agent:
        if cfg.mutual_tls:
            raise ConfigError(
                "agent.auth: with mutual TLS the identity is the client certificate; "
                "remove the credential or the client CA"
            )
        cfg.credential = _credential(agent["auth"], base)
    if not cfg.mutual_tls and cfg.credential is None:
        raise ConfigError(
            "the agent API is always authenticated: configure [agent.tls] with ca and "
            "allowed_dns (mutual TLS), or [agent.auth] with a credential"
        )
    return cfg


def load_agent_config(path: str | Path) -> AgentConfig:
    data, resolved = read_toml(path, "agent configuration file")
    return parse_agent_config(data, resolved.parent, resolved)
