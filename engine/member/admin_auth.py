"""Who may send an instance its operator actions (ADMIN requests on the superserver port).

An instance writes a random admin token to `<data dir>/admin.token` (mode 0600) each time it
starts; an operator action must carry it.  Whoever can read the instance's files (the host
agent, an administrator on the host, `python -m engine admin`) can act on it; a member of the
mirror, a pending one, or anything else on the network cannot, so a pending member can never
authorize itself and nobody bypasses the agent's authentication.  The process may be given
its token in ENGINE_ADMIN_TOKEN instead (tests and benchmarks start many instances and share
one); the blocking operator Client takes it from there too when handed none, the engine's
own AsyncClient calls to other members never do.

A few actions stay open because members ask them of each other and they change nothing:
reading the mirror's configuration before joining, what a member holds of a database, and
the snapshot offer of a download (on a TLS mirror the snapshot is sent only to a member's
certificate).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from engine.wire.admin_token import TOKEN_ENV, TOKEN_FILE
from engine.wire.protocol import ErrorCode, RequestError

OPEN_ACTIONS = frozenset({"mirror_info", "copy_info", "export_snapshot"})


def ensure_token(data_dir: Path) -> str:
    """This start's token, written where the host's administrators (and only they) read it."""
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    path = Path(data_dir) / TOKEN_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def split_admin_args(args: list) -> tuple[object, object, object]:
    """ADMIN's arguments: [action], [action, arg] or [action, arg, token]."""
    if not 1 <= len(args) <= 3:
        raise ValueError(f"admin takes 1-3 arguments, got {len(args)}")
    padded = [*args, None, None]
    return padded[0], padded[1], padded[2]


def check_admin(expected: str, action, token) -> None:
    if action in OPEN_ACTIONS:
        return
    # bytes: compare_digest refuses str with a non-ASCII character (a 500 before, fuzzing found)
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
        raise RequestError(
            ErrorCode.UNAUTHORIZED,
            f"admin action {action!r} needs this instance's admin token "
            f"(its data directory's {TOKEN_FILE}, or {TOKEN_ENV})",
        )
