"""What an instance knows about itself before and apart from any mirror: <data_dir>/node.json.

An instance configured through the agent starts with

    python -m engine instance --data-dir DIR [--name NAME --superserver HOST:PORT]

The first start records its name and superserver address in node.json; later starts (and the
restart after a mirror is created, joined or left, or the superserver port changed) read
them from there.  The member's TLS files ("Set up SSL/TLS", guide §4.5) are recorded here
too, so they never travel with the mirror configuration: each member has its own
(remove_mirror_config may forget them, engine/member/remove.py).

The superserver's connection limits (engine/wire/limits.py, docs/hardening.md) are the
instance's own too: `superserver_limits` holds those set apart from their defaults, given as
--superserver-* options (python -m engine instance --help) and recorded here like
--superserver, so that later starts keep them.

`superserver_auth` is the application port's authentication mode (engine/member/app_auth.py):
`required` or `off` as given with --superserver-auth; absent means `auto` (required as soon as
the instance holds an application credential or has TLS configured).  The credentials
themselves are kept beside this file, in app_credentials.json.

`superserver_tls` is the application port's TLS (engine/member/instance.py, docs/hardening.md
"Application port TLS"): `required` or `off` as given with --superserver-tls; absent means
`auto` (TLS as soon as the instance has TLS files or belongs to a mirror that requires TLS).
`superserver_client_cert`, given with --superserver-client-cert, is `optional` when clients
may connect without a certificate; absent means `required` (one from the instance's CA).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.member.app_auth import tls_configured
from engine.member.config import Address, ConfigError, parse_address
from engine.wire import tls
from engine.wire.limits import LimitError, LimitSettings

NODE_FILE = "node.json"
AUTH_MODES = ("auto", "required", "off")  # engine/member/app_auth.py
TLS_MODES = ("auto", "required", "off")  # the superserver's TLS (engine/member/instance.py)
CLIENT_CERT_MODES = ("required", "optional")


@dataclass
class Node:
    name: str
    superserver: Address
    data_dir: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    superserver_limits: dict = field(default_factory=dict)  # limits set apart from defaults
    superserver_auth: str = "auto"  # engine/member/app_auth.py: auto, required or off
    superserver_tls: str = "auto"  # TLS_MODES
    superserver_client_cert: str = "required"  # CLIENT_CERT_MODES

    @property
    def has_tls(self) -> bool:
        return None not in (self.tls_cert, self.tls_key, self.tls_ca)

    def client_context(self):
        """This instance's own certificate as a TLS client (asking other members), or None
        without TLS files."""
        if not self.has_tls:
            return None
        return tls.client_context(self.tls_cert, self.tls_key, self.tls_ca)

    def save(self) -> None:
        data = {
            "name": self.name,
            "superserver": str(self.superserver),
            "tls_cert": _text(self.tls_cert),
            "tls_key": _text(self.tls_key),
            "tls_ca": _text(self.tls_ca),
        }
        if self.superserver_limits:
            data["superserver_limits"] = self.superserver_limits
        if self.superserver_auth != "auto":
            data["superserver_auth"] = self.superserver_auth
        if self.superserver_tls != "auto":
            data["superserver_tls"] = self.superserver_tls
        if self.superserver_client_cert != "required":
            data["superserver_client_cert"] = self.superserver_client_cert
        write_json(self.data_dir / NODE_FILE, data)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def write_json(path: Path, data: dict) -> None:
    """Replace `path` atomically and durably: a crash leaves the old file or the new one."""
    tmp = path.with_suffix(".tmp")
    # owner only: mirror.json holds the mirror secret (engine/wire/mirror_secret.py)
    with open(tmp, "w", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class SuperserverTLS:
    """The application port's TLS as asked: node.json, or the options of an instance run from
    a mirror file.  What it comes to depends on the instance (context())."""

    mode: str = "auto"  # TLS_MODES
    client_cert: str = "required"  # CLIENT_CERT_MODES

    @classmethod
    def of(cls, node: Node) -> SuperserverTLS:
        return cls(node.superserver_tls, node.superserver_client_cert)

    def wanted(self, owner) -> bool:
        """auto: TLS when the instance has TLS configured, as for authentication (its own
        TLS files, or a mirror that requires TLS)."""
        return self.mode == "required" or (self.mode == "auto" and tls_configured(owner))

    def files(self, owner) -> tuple[Path, Path, Path] | None:
        """(cert, key, ca) the superserver would serve with: the node's, or with a mirror file
        the member's certificate and the mirror's CA."""
        node = getattr(owner, "node", None)
        if node is not None:
            return (node.tls_cert, node.tls_key, node.tls_ca) if node.has_tls else None
        member, cfg = getattr(owner, "member", None), getattr(owner, "cfg", None)
        if member is None or cfg is None:
            return None
        files = (member.tls_cert, member.tls_key, cfg.tls_ca)
        return None if None in files else files  # type: ignore[return-value]

    def context(self, owner, refusals=None):
        """(SSL context, its files) for the superserver, or (None, None) when it stays plain;
        ConfigError when TLS is wanted and the files are missing or unusable."""
        if not self.wanted(owner):
            return None, None
        files = self.files(owner)
        why = "--superserver-tls required" if self.mode == "required" else "TLS is configured"
        if files is None:
            raise ConfigError(
                f"superserver TLS: {why} but this instance has no TLS files (set_tls, or "
                "tls_cert, tls_key and the mirror's tls_ca); --superserver-tls off to listen in "
                "plain meanwhile"
            )
        try:
            ctx = tls.server_context(
                *files, require_client_cert=self.client_cert == "required", refusals=refusals
            )
        except tls.TLSError as exc:
            raise ConfigError(f"superserver TLS: {exc}") from None
        return ctx, files


class SuperserverRefusals:
    """Refused TLS handshakes on the superserver (engine/wire/tls.py hands them here), logged
    and counted with the listener's other refusals: one WARNING line each, rate-limited per
    kind by the limits' RateLimitedLog, the lines left out counted."""

    KIND = "TLS handshake refused"

    def __init__(self, limits):
        self.limits = limits

    def refused(self, where, reason: str) -> None:
        # naming the peer may search the heap (uvloop, engine/wire/tls.py, on a budget): only
        # for a line the rate limit lets through
        peer = where()[0] if self._will_log() else "?"
        self.limits.warn(
            self.KIND,
            f"{self.limits.listener} listener: refused {peer}: TLS handshake failed: {reason}",
        )

    def _will_log(self) -> bool:
        bucket = self.limits.log.buckets.get(self.KIND)
        if bucket is None:
            return True
        refilled = bucket.tokens + (bucket.clock() - bucket.stamp) * bucket.rate
        return min(bucket.burst, refilled) >= 1.0


def describe_superserver_tls(settings: SuperserverTLS, files) -> str:
    if files is None:
        return f"superserver TLS off (mode {settings.mode}): plain TCP"
    return (
        f"superserver TLS on (mode {settings.mode}): TLS 1.2+, certificate {files[0]}, client "
        f"certificate {settings.client_cert} (CA {files[2]})"
    )


def peer_tls(owner) -> dict:
    """How this instance (a Node, or a membership) asks another member's superserver for the
    open requests members ask each other (mirror_info, copy_info, STATUS, export_snapshot):
    AsyncClient options.  On a mirror that requires TLS, TLS with the member's certificate,
    since every member's superserver speaks it; otherwise, with TLS files, TLS first and plain
    when the peer answers in plain (a member without TLS files, or --superserver-tls off):
    those requests carry nothing secret, and which of the two a peer is cannot be known
    beforehand (a joining instance knows nothing of the mirror yet)."""
    cfg = getattr(owner, "cfg", None)
    if cfg is not None and cfg.tls:
        return {"ssl": owner.tls_client_context()}
    node = owner if isinstance(owner, Node) else getattr(owner, "node", None)
    if node is not None and node.has_tls:
        try:
            return {"ssl": node.client_context(), "plain_fallback": True}
        except tls.TLSError:
            return {}  # files that cannot be used: the peers that speak plain still answer
    return {}


def limit_settings(values: dict | None, where: str) -> LimitSettings:
    """Superserver limits from node.json or the command line, checked (ConfigError)."""
    try:
        return LimitSettings.from_mapping(values, where)
    except LimitError as exc:
        raise ConfigError(str(exc)) from None


def load_node(
    data_dir: str | Path,
    name: str | None = None,
    superserver: str | None = None,
    limits: dict | None = None,
    auth: str | None = None,
    tls_mode: str | None = None,
    client_cert: str | None = None,
):
    """The node of `data_dir`; name and superserver are required on the first start; a
    superserver given later replaces the recorded one, and so do superserver `limits`
    (checked; only those apart from their defaults are recorded), `auth`, `tls_mode` and
    `client_cert`.  A running instance changes its port with set_superserver_port
    (engine/member/port.py), which records it here and restarts without --superserver, so
    that the new port is the one read back."""
    data_dir = Path(data_dir).resolve()
    path = data_dir / NODE_FILE
    if path.exists():
        raw = json.loads(path.read_text())
        node = Node(
            raw["name"],
            parse_address(raw["superserver"], f"{path}: superserver"),
            data_dir,
            *(Path(raw[k]) if raw.get(k) else None for k in ("tls_cert", "tls_key", "tls_ca")),
        )
        recorded = raw.get("superserver_limits") or {}
        if not isinstance(recorded, dict):
            raise ConfigError(f"{path}: superserver_limits must be a map of limits")
        node.superserver_limits = limit_settings(recorded, f"{path}: ").changed()
        node.superserver_auth = _auth_mode(raw.get("superserver_auth", "auto"), f"{path}: ")
        node.superserver_tls = _choice(
            raw.get("superserver_tls", "auto"), TLS_MODES, f"{path}: superserver_tls"
        )
        node.superserver_client_cert = _choice(
            raw.get("superserver_client_cert", "required"),
            CLIENT_CERT_MODES,
            f"{path}: superserver_client_cert",
        )
        if name is not None and name.upper() != node.name:
            raise ConfigError(f"{path} belongs to instance {node.name}, not {name.upper()}")
        if superserver is not None:
            node.superserver = parse_address(superserver, "--superserver")
        if limits:
            merged = {**node.superserver_limits, **limits}
            node.superserver_limits = limit_settings(merged, "superserver limit ").changed()
        if auth is not None:
            node.superserver_auth = _auth_mode(auth, "--superserver-auth ")
        _set_tls_modes(node, tls_mode, client_cert)
        given = (auth, tls_mode, client_cert)
        if superserver is not None or limits or any(v is not None for v in given):
            node.save()
        return node
    if name is None or superserver is None:
        raise ConfigError(f"{path} does not exist: the first start needs --name and --superserver")
    if not name or len(name) > 32 or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"--name {name!r}: 1-32 letters, digits, _ or -")
    data_dir.mkdir(parents=True, exist_ok=True)
    node = Node(name.upper(), parse_address(superserver, "--superserver"), data_dir)
    node.superserver_limits = limit_settings(limits, "superserver limit ").changed()
    if auth is not None:
        node.superserver_auth = _auth_mode(auth, "--superserver-auth ")
    _set_tls_modes(node, tls_mode, client_cert)
    node.save()
    return node


def _set_tls_modes(node: Node, tls_mode: str | None, client_cert: str | None) -> None:
    if tls_mode is not None:
        node.superserver_tls = _choice(tls_mode, TLS_MODES, "--superserver-tls")
    if client_cert is not None:
        node.superserver_client_cert = _choice(
            client_cert, CLIENT_CERT_MODES, "--superserver-client-cert"
        )


def _choice(value: object, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: one of {', '.join(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def _auth_mode(value: object, where: str) -> str:
    if value not in AUTH_MODES:
        raise ConfigError(f"{where}superserver_auth: one of {', '.join(AUTH_MODES)}, got {value!r}")
    return value  # type: ignore[return-value]
