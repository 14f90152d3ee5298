"""The failover buttons a member row offers, on the mirror page and the Mirror Monitor alike
(members/views.py, monitor/views.py): what each starts (members/failover_actions.py) and when
it is worth showing, from what the members last reported."""

from __future__ import annotations

from django.urls import reverse

from accounts.roles import ADMIN, OPERATOR, allows
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
    failover" as it last answered (guide §3.4).  None on a member last seen Down: there is no
    instance to stop or to set, and the job would only fail."""
    if member.status == catalog.DOWN:
        return []
    # stopping acts on the whole instance, which may serve other mirrors too (members/access.py)
    kinds = (
        ["stop_instance"] if allows(getattr(member, "instance_role", OPERATOR), OPERATOR) else []
    )
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


def can_rebuild(member) -> bool:
    """Whether rebuilding `member` is worth offering (guide §5.7): a member that runs and is
    not the primary, since a mirror takes its data from its primary. It restarts the whole
    instance: the user needs admin on each mirror the instance serves (members/access.py)."""
    if not allows(getattr(member, "instance_role", ADMIN), ADMIN):
        return False
    return member.status not in (*catalog.PRIMARY_STATUSES, catalog.DOWN)


def can_promote_to_primary(member, members) -> bool:
    """Whether promoting `member` to primary is worth offering: an authorized DR async, while
    none of the mirror's `members` says it is the primary (guide §5.5, §6.3)."""
    return (
        member.member_type == catalog.DR
        and member.authorization != member.PENDING
        and not any(m.status in catalog.PRIMARY_STATUSES for m in members)
    )


def can_clear_validated(member) -> bool:
    """Whether clearing ValidatedMember is worth offering: a failover member that is Down, or a
    DR async that is (a former failover member a promotion made DR, guide §6.3.1.1)."""
    return member.member_type in failover_actions.VALIDATED_TYPES and member.status == catalog.DOWN
