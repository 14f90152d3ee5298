"""Hooks run when a failover member is about to become primary (guide §4.17; docs/takeover.md
"Hooks").  Each is an executable named in the member's configuration (mirror file keys under
`[members.hooks]`), or, for an instance configured through its agent, an executable file named
after the hook in `<data_dir>/hooks/`, placed there by the host's administrator (like the
guide's ^ZMIRROR routine, it is installed on the host, never sent over the network); none is
required.

    can_become_primary     before taking over.  Exit 0: go on.  Anything else (or no exit
                           within HOOK_TIMEOUT_S): not now; asked again every HOOK_RETRY_S
                           (30 s) until it agrees or another member becomes primary.  An
                           operator's manual failover control.
    check_become_primary   after can_become_primary agreed, before the member takes writes:
                           the place to acquire a virtual IP (guide §3.7.3).  Exit 0: the
                           takeover completes.  Anything else aborts it, asked again like the
                           first.  The engine itself never needs root: the hook does what needs
                           it (with sudo, capabilities, or a helper service).
    notify_become_primary  once the member is primary; informational, its exit is only logged.
    notify_become_primary_failed
                           once per incident when a takeover is vetoed or fails.

Each runs without a shell, with MIRROR_NAME, MIRROR_MEMBER, MIRROR_TERM (the term the member
would become primary at) and MIRROR_REASON in its environment, its output kept in the member's
log.  ENGINE_HOOK_RETRY_S sets the retry interval (tests use 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.member.config import HOOK_NAMES

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.hooks")
HOOK_TIMEOUT_S = 60.0
HOOKS_DIR = "hooks"

HOOK_RETRY_S = float(os.environ.get("ENGINE_HOOK_RETRY_S", "30"))


def hooks_dir(membership: Membership) -> Path:
    """Where an instance's administrator installs its hooks (one directory per instance)."""
    node = membership.node
    return Path(node.data_dir if node is not None else membership.data_dir) / HOOKS_DIR


def hook_path(membership: Membership, hook: str) -> str | None:
    """The executable run for `hook`: the mirror file's, else the one installed in the
    instance's hooks directory, else None."""
    named = membership.member.hooks.get(hook)
    if named:
        return named
    installed = hooks_dir(membership) / hook
    return str(installed) if installed.is_file() else None


def installed_hooks(membership: Membership) -> list[str]:
    """The hooks this member would run, by name (for its status)."""
    return [h for h in HOOK_NAMES if hook_path(membership, h)]


async def run_hook(membership: Membership, hook: str, reason: str) -> bool:
    """Run `hook` if configured; True when it is not configured or exits 0."""
    path = hook_path(membership, hook)
    if not path:
        return True
    env = {
        **os.environ,
        "MIRROR_NAME": membership.cfg.name,
        "MIRROR_MEMBER": membership.member.name,
        "MIRROR_TERM": str(membership.fstate.term + 1),
        "MIRROR_REASON": reason,
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        log.error("hook %s (%s) cannot run: %s", hook, path, exc)
        return False
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), HOOK_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error(
            "hook %s (%s) did not exit within %g s: taken as a no", hook, path, HOOK_TIMEOUT_S
        )
        return False
    text = output.decode(errors="replace").strip()[-2000:]
    level = logging.INFO if proc.returncode == 0 else logging.WARNING
    log.log(level, "hook %s exited %d%s", hook, proc.returncode, f": {text}" if text else "")
    return proc.returncode == 0


async def hooks_agree(membership: Membership, reason: str) -> bool:
    """can_become_primary, then check_become_primary; while either says no, ask again every
    HOOK_RETRY_S, and give up (False) once a primary is followed or the role changed."""
    told_failed = False
    while True:
        if await run_hook(membership, "can_become_primary", reason) and await run_hook(
            membership, "check_become_primary", reason
        ):
            membership.hook_waiting = None
            return True
        membership.hook_waiting = (
            f"a hook said no to becoming primary ({reason}): asked again every {HOOK_RETRY_S:g} s"
        )
        if not told_failed:
            told_failed = True
            await run_hook(membership, "notify_become_primary_failed", reason)
        await asyncio.sleep(HOOK_RETRY_S)
        replica = membership.replica
        if membership.role != "backup" or (replica is not None and replica.connected):
            membership.hook_waiting = None  # another member is primary now
            return False
