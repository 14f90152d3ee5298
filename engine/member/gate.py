"""The membership's answers to its data channel links (engine/replication/gate.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.member import membership_ops as ops
from engine.member.mirror_file import to_wire
from engine.member.takeover import become_primary

if TYPE_CHECKING:
    from engine.member.config import MemberConfig
    from engine.member.membership import Membership
    from engine.member.session import Connection


class Gate:
    def __init__(self, membership: Membership):
        self.membership = membership

    def register_join(self, conn: Connection, name: str, join: Any) -> MemberConfig:
        return ops.register_join(self.membership, conn, name, join)

    def check_identity(self, conn: Connection, member: MemberConfig, hello: dict) -> None:
        ops.check_identity(self.membership, conn, member, hello)

    def config_wire(self) -> dict:
        return to_wire(self.membership.cfg)

    def remove_member(self, name: str) -> None:
        ops.remove_member(self.membership, {"member": name})

    def apply_config(self, wire: dict) -> None:
        ops.apply_config(self.membership, wire)

    def check_primary_dn(self, server_dn: str | None) -> None:
        ops.check_primary_dn(self.membership, server_dn)

    def take_over(self, reason: str) -> None:
        # in the background: taking over stops the very link that asks for it
        self.membership.run_in_background(become_primary(self.membership, reason))
