"""Where an instance's admin token is found, for the clients that send operator actions.

The instance writes the token to `<data dir>/admin.token` at each start (engine/member/admin_auth.py
checks it); whoever can read that file, or is handed the token in ENGINE_ADMIN_TOKEN, may act.
"""

from __future__ import annotations

from pathlib import Path

TOKEN_FILE = "admin.token"
TOKEN_ENV = "ENGINE_ADMIN_TOKEN"


def read_token(data_dir: Path | str | None) -> str | None:
    """The token of the instance whose data directory this is; None when unreadable."""
    if data_dir is None:
        return None
    try:
        return (Path(data_dir) / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None
