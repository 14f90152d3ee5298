"""The certificates the agent reports: its instances' (their expiry and DN, in the status
stream and in GET /v1/instances) and, through the status stream, its own."""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine.agent.config import InstanceEntry
from engine.member.node import NODE_FILE
from engine.wire.tls import TLSError, cert_info, load_certificate


def node_certificate(data_dir) -> Path | None:
    """The certificate an instance configured through the agent was given (set_tls), as
    its <data_dir>/node.json records it (engine/member/node.py); None without one."""
    try:
        raw = json.loads((Path(data_dir) / NODE_FILE).read_text())
    except (OSError, ValueError):
        return None
    value = raw.get("tls_cert") if isinstance(raw, dict) else None
    return Path(value) if isinstance(value, str) and value else None


def certificate_summary(path) -> dict | None:
    """Expiry of the certificate at `path` (None without one), in whole days so that the
    record does not change on every poll; an unreadable file is reported, not raised."""
    if path is None:
        return None
    try:
        info = cert_info(load_certificate(path))
    except (TLSError, OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}
    return {
        "subject_dn": info["subject_dn"],
        "not_after": info["not_after"],
        "expired": info["expired"],
        "days_left": math.floor(info["days_left"]),
    }


def instance_certificate(entry: InstanceEntry) -> dict | None:
    """The certificate named in the agent's configuration, else the one the instance was
    given through the agent (node.json); None when it has neither."""
    path = entry.cert if entry.cert is not None else node_certificate(entry.data_dir)
    return certificate_summary(path)
