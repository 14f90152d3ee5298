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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.member.config import Address, ConfigError, parse_address
from engine.wire.limits import LimitError, LimitSettings

NODE_FILE = "node.json"
AUTH_MODES = ("auto", "required", "off")  # engine/member/app_auth.py


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

    @property
    def has_tls(self) -> bool:
        return None not in (self.tls_cert, self.tls_key, self.tls_ca)

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
):
    """The node of `data_dir`; name and superserver are required on the first start; a
    superserver given later replaces the recorded one, and so do superserver `limits`
    (checked; only those apart from their defaults are recorded).  A running instance changes its
    port with set_superserver_port (engine/member/port.py), which records it here and
    restarts without --superserver, so that the new port is the one read back."""
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
        if name is not None and name.upper() != node.name:
            raise ConfigError(f"{path} belongs to instance {node.name}, not {name.upper()}")
        if superserver is not None:
            node.superserver = parse_address(superserver, "--superserver")
        if limits:
            merged = {**node.superserver_limits, **limits}
            node.superserver_limits = limit_settings(merged, "superserver limit ").changed()
        if auth is not None:
            node.superserver_auth = _auth_mode(auth, "--superserver-auth ")
        if superserver is not None or limits or auth is not None:
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
    node.save()
    return node


def _auth_mode(value: object, where: str) -> str:
    if value not in AUTH_MODES:
        raise ConfigError(f"{where}superserver_auth: one of {', '.join(AUTH_MODES)}, got {value!r}")
    return value  # type: ignore[return-value]
