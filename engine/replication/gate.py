"""What the data channel asks of the membership it serves.

The primary's sender and a member's receiver speak the membership protocol in their
handshakes: who may open a data channel, the mirror's configuration that travels with it, a
member that leaves.  Those rules belong to the member package above this one
(engine/member/membership_ops.py), so each link is handed a gate that answers for them, and a
gate says no by raising JoinRefused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.member.config import MemberConfig
    from engine.member.session import Connection


class JoinRefused(ValueError):
    """A data channel the primary will not take yet (pending, rejected, DN changed)."""


class MembershipGate(Protocol):
    # on the primary
    def register_join(self, conn: Connection, name: str, join: Any) -> MemberConfig: ...
    def check_identity(self, conn: Connection, member: MemberConfig, hello: dict) -> None: ...
    def config_wire(self) -> dict: ...
    def remove_member(self, name: str) -> None: ...

    # on a backup or async
    def apply_config(self, wire: dict) -> None: ...
    def check_primary_dn(self, server_dn: str | None) -> None: ...
    # the primary hands over on graceful shutdown: take over (engine/member/takeover.py)
    def take_over(self, reason: str) -> None: ...
