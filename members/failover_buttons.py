"""The failover buttons a member row offers, on the mirror page and the Mirror Monitor alike
(members/views.py, monitor/views.py): what each starts (members/failover_actions.py) and when
it is worth showing, from what the member last reported."""

from __future__ import annotations

from django.urls import reverse

from engine import rules as catalog
from members import failover_actions

# Failover operations a button starts at once (forcing a primary has its own pages)
FAILOVER_SWITCHES = {
    "stop_instance": (failover_actions.stop_instance, "Stop gracefully"),
    "set_no_failover": (failover_actions.set_no_failover, "Set no failover"),
    "clear_no_failover": (failover_actions.clear_no_failover, "Clear no failover"),
}


def failover_switches(mirror, member) -> list[tuple[str, str]]:
    """(url, label) of the failover operations a button starts on `member`: a graceful stop
    (a primary hands over to its Active backup); on a failover member, set or clear "no
    failover" as it last answered (guide §3.4)."""
    kinds = ["stop_instance"]
    if member.member_type == catalog.FAILOVER:
        kinds.append("clear_no_failover" if member.no_failover else "set_no_failover")
    return [
        (
            reverse("member-switch", args=[mirror.name, member.pk, kind.replace("_", "-")]),
            FAILOVER_SWITCHES[kind][1],
        )
        for kind in kinds
    ]


def can_force(member) -> bool:
    """Whether forcing `member` to become primary is worth offering (the action decides)."""
    return member.member_type == catalog.FAILOVER and member.status not in catalog.PRIMARY_STATUSES
