"""The steps every membership change shares: reading its argument, checking that the member
takes configuration changes at all, and saving a change on the primary and sending it on.
(engine/member/membership_ops.py, port.py, remove.py and tls_check.py use them.)"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.member import mirror_file as ms
from engine.storage.databases import Refused
from engine.wire.protocol import MsgType, encode_frame

if TYPE_CHECKING:
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.membership_ops")


# a preview's answer says what to send to go ahead: the same action with these arguments added
TO_CONFIRM = {"confirm": True}


def require_dynamic(membership: Membership, op: str) -> None:
    if not membership.cfg.dynamic:
        raise Refused(
            op,
            None,
            f"member {membership.member.name} is configured by {membership.cfg.source}; mirror "
            "configuration changes apply to members created or joined through the agent",
        )


def arg_map(op: str, arg, required: tuple[str, ...] = ()) -> dict:
    if arg is None:
        arg = {}
    if isinstance(arg, str) and required == ("member",):
        arg = {"member": arg}
    if not isinstance(arg, dict):
        raise Refused(op, None, "expected a map of arguments")
    missing = [k for k in required if k not in arg]
    if missing:
        raise Refused(op, None, f"missing {', '.join(missing)}")
    return arg


def config_changed(membership: Membership, restart_links: frozenset[str] = frozenset()) -> None:
    """Persist a change made on the primary and send it to every connected member; the
    links of the members named in `restart_links` are closed after it."""
    cfg = membership.cfg
    cfg.version += 1
    try:
        ms.save_local(cfg, membership.member.name, membership.data_dir)
    except Exception:
        cfg.version -= 1  # nothing saved or sent: the caller puts its change back too
        raise
    frame = encode_frame(MsgType.DC_CONFIG, 0, ms.to_wire(cfg))
    rep = membership.replicator
    for link in list(rep.links.values()) if rep is not None else []:
        link.flush_held()  # in journal order: the change may follow records it holds
        link.conn.write(frame)
        if link.name in restart_links:
            link.close()  # the member reconnects and gets the new codec / TLS
    log.info("mirror configuration version %d sent to %d member(s)", cfg.version, len(rep.links))
