"""The superserver port, edited on the member itself (guide §5.2 exception 1).

The superserver port belongs to the instance's own configuration (node.json), so it is the
one network address a member always changes locally; update_member_address refuses it
everywhere.  On the instance:

    set_superserver_port {port}     (or the port alone)

checks that nothing listens on the new port and that no member of its mirrors has that
address, records it in node.json and in each membership's mirror.json, and restarts the
process (as creating or leaving a mirror does, engine/member/instance.py) so that it listens there.
The mirrors learn the new address:
  - on the primary, as any configuration change: sent to the connected members at once,
    to the others when they reconnect;
  - on another member, from its next data-channel hello, which carries its superserver
    address (engine/replication/receiver.py): the primary records the new port and sends the
    configuration on (learn_superserver_port, called by check_identity).  Only the port is
    taken from a hello; the host part of a member's address is the primary's to edit.
A non-member only changes node.json.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from engine.member import mirror_file as ms
from engine.member.changes import config_changed
from engine.member.config import Address
from engine.storage.databases import Refused

if TYPE_CHECKING:
    from engine.member.config import MemberConfig
    from engine.member.instance import Instance
    from engine.member.membership import Membership

log = logging.getLogger("engine.member.instance")
OP = "set_superserver_port"


def _port(arg) -> int:
    port = arg.get("port") if isinstance(arg, dict) else arg
    if type(port) is not int or not 0 < port < 65536:
        raise Refused(OP, None, f"port must be an integer from 1 to 65535, not {port!r}")
    return port


def _check_free(addr: Address) -> None:
    """Refuse a port something already listens on (checked by binding it, as the restarted
    process will, with SO_REUSEADDR so that connections closing on it do not count)."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr.host, addr.port))
            sock.listen(1)
        except OSError as exc:
            raise Refused(
                OP, None, f"port {addr.port} on {addr.host} is in use ({exc.strerror or exc})"
            ) from None


def _check_not_a_members(membership: Membership, port: int) -> Address:
    """This membership's new superserver address, unless another address of the mirror."""
    me = membership.member
    new = Address(me.superserver.host, port)
    for m in membership.cfg.members:
        mine = [m.private] if m is me else [m.superserver, m.private]
        if new in mine:
            whose = "this member's private" if m is me else f"member {m.name}'s"
            raise Refused(OP, None, f"{new} is {whose} address in mirror {membership.cfg.name}")
    return new


def set_superserver_port(instance: Instance, arg) -> dict:
    port = _port(arg)
    node = instance.node
    old = node.superserver
    if port == old.port:
        return {"superserver": str(old), "previous": str(old), "restarting": False}
    members = instance.members.items()
    new_addresses = {name: _check_not_a_members(membership, port) for name, membership in members}
    new = Address(old.host, port)
    _check_free(new)
    for name, membership in instance.members.items():
        membership.member.superserver = new_addresses[name]
        if membership.role == "primary":
            config_changed(membership)  # the members hear it now (or when they reconnect)
        else:
            ms.save_local(
                membership.cfg, membership.member.name, membership.data_dir
            )  # its next hello says it
    node.superserver = new
    node.save()
    log.warning("superserver port changed from %d to %d; restarting", old.port, port)
    instance.request_restart()
    return {
        "superserver": str(new),
        "previous": str(old),
        "mirrors": sorted(instance.members),
        "restarting": True,
    }


def learn_superserver_port(membership: Membership, member: MemberConfig, join) -> None:
    """On the primary: `member`'s hello says its superserver port; a new one is recorded
    and propagated (see the module doc)."""
    said = join.get("superserver") if isinstance(join, dict) else None
    try:
        port = ms.check_address("hello", said, "superserver").port
    except Refused:
        return
    if port == member.superserver.port:
        return
    new = Address(member.superserver.host, port)
    taken = {
        a: m.name
        for m in membership.cfg.members
        if m is not member
        for a in (m.superserver, m.private)
    }
    if new in taken:
        log.error("member %s says its superserver is %s, member %s's", member.name, new, taken[new])
        return
    log.warning(
        "member %s moved its superserver to %s (was %s)", member.name, new, member.superserver
    )
    member.superserver = new
    config_changed(membership)
