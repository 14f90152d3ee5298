"""What an operator may ask of a mirror's failover (guide §3.4, §6.1 - §6.2), one verb-named
function per operation, as members.actions does for the rest: each checks the request against
what the portal last saw and starts the job (members/operations/failover.py) that asks the
member and records its answer.

Forcing a primary is two steps. `preview_force_primary` asks the member what is at stake (was
it the Active backup, where its journal ends, the last primary it knew) and changes nothing;
`force_primary` then needs the mirror's name typed, as every destructive operation does.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from engine import rules as catalog
from members.actions import check_confirmed, claim
from members.models import Member
from portal.exceptions import StateConflict
from tasks.models import Job
from tasks.services import start_job

PRIMARY_STATUSES = (catalog.PRIMARY, catalog.IN_TROUBLE)  # what a primary says of itself


def _member_job(actor, kind: str, member: Member) -> Job:
    return start_job(actor, kind, member, mirror=member.mirror, member=member)


FORCING = ["force_primary"]


def stop_instance(actor, member: Member) -> Job:
    """Graceful shutdown of the member's instance: a primary hands over to its Active backup
    on the way (with no Active backup, or with no failover set, nobody takes over)."""
    return _member_job(actor, "stop_instance", member)


def _failover_member(member: Member, what: str) -> None:
    if member.member_type != catalog.FAILOVER:
        raise ValidationError(
            f"{member.name} is not a failover member: {what} applies to failover members only.",
            code="not_failover",
        )


def set_no_failover(actor, member: Member) -> Job:
    """No automatic takeover until cleared (or until a primary starts, which clears it)."""
    _failover_member(member, "no failover")
    return _member_job(actor, "set_no_failover", member)


def clear_no_failover(actor, member: Member) -> Job:
    _failover_member(member, "no failover")
    return _member_job(actor, "clear_no_failover", member)


def _check_forcible(member: Member) -> None:
    _failover_member(member, "forcing a primary")
    if member.status in PRIMARY_STATUSES:
        raise StateConflict(f"{member.name} is the primary already.", code="already_primary")
    other = member.mirror.members.exclude(pk=member.pk).filter(status__in=PRIMARY_STATUSES)
    if other.exists():
        raise StateConflict(
            f"{other.first().name} reports itself as the primary: a mirror has one primary; "
            "stop it first.",
            code="has_primary",
        )


def preview_force_primary(actor, member: Member) -> Job:
    """Step one of forcing a primary: the member says what is at stake (whether it was the
    Active backup, where its journal ends, the last primary it knew). Nothing changes."""
    _check_forcible(member)
    return _member_job(actor, "preview_force_primary", member)


@transaction.atomic
def force_primary(actor, member: Member, *, confirm: str) -> Job:
    """Step two, dangerous: the member becomes primary. Whatever the last primary committed
    after the member's journal end is lost, and that primary must stay down: the caller types
    the mirror's name, having seen step one's answer."""
    check_confirmed(member.mirror, confirm)
    claim(member, FORCING)
    member.refresh_from_db()
    _check_forcible(member)
    return _member_job(actor, "force_primary", member)
