"""What an operator may ask of a mirror's failover (guide §3.4, §6.1 - §6.2), one verb-named
function per operation, as members.actions does for the rest: each checks the request against
what the portal last saw and starts the job (members/operations/failover.py) that asks the
member and records its answer.

Forcing a primary is two steps. `preview_force_primary` asks the member what is at stake (was
it the Active backup, where its journal ends, the last primary it knew) and changes nothing;
`force_primary` then needs the mirror's name typed, as every destructive operation does.

Promoting a DR async to failover member and demoting the backup to DR (guide §5.5, §5.6) are
asked of the primary, and change which member would take over: both need the mirror's name
typed, and `promotion_changes` says beforehand who becomes the backup and who becomes DR.
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


def _member_job(actor, kind: str, member: Member) -> Job:
    return start_job(actor, kind, member, mirror=member.mirror, member=member)


def _start_confirmed(
    actor, kind: str, member: Member, confirm: str, *, serialized_with, check
) -> Job:
    """A dangerous operation on `member`: the mirror's name typed, no job of the
    `serialized_with` kinds under way on it (members.actions.claim), and `check` passing on
    the member as it is then."""
    check_confirmed(member.mirror, confirm)
    claim(member, serialized_with)
    member.refresh_from_db()
    check(member)
    return _member_job(actor, kind, member)


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
    if member.status in catalog.PRIMARY_STATUSES:
        raise StateConflict(f"{member.name} is the primary already.", code="already_primary")
    other = member.mirror.members.exclude(pk=member.pk).filter(status__in=catalog.PRIMARY_STATUSES)
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
    return _start_confirmed(
        actor, "force_primary", member, confirm, serialized_with=FORCING, check=_check_forcible
    )


# --- Promotion and demotion (guide §5.5, §5.6) ----------------------------------------------
RETYPING = ["promote_member", "demote_member"]


def _is_primary(member: Member) -> bool:
    return member.status in catalog.PRIMARY_STATUSES


def backups_of(member: Member) -> list[Member]:
    """The failover members other than the primary and `member`: the backup a promotion of
    `member` makes DR (as the portal last recorded the members)."""
    others = member.mirror.members.exclude(pk=member.pk).filter(member_type=catalog.FAILOVER)
    return [m for m in others.order_by("name") if not _is_primary(m)]


def promotion_changes(member: Member) -> dict:
    """What a promotion of `member` changes, as the portal last saw the mirror:
    {"backup": the member that becomes the backup, "to_dr": the members that become DR}."""
    return {"backup": member.name, "to_dr": [m.name for m in backups_of(member)]}


def can_promote(member: Member) -> bool:
    """Whether promoting `member` is worth offering (the action and the primary decide)."""
    return member.member_type == catalog.DR and member.authorization != Member.PENDING


def can_demote(member: Member) -> bool:
    """Whether demoting `member` is worth offering: a failover member that is not the primary."""
    return member.member_type == catalog.FAILOVER and not _is_primary(member)


def _check_promotable(member: Member) -> None:
    if member.member_type != catalog.DR:
        raise ValidationError(
            f"{member.name} is not a DR async: only a DR async is promoted to failover member.",
            code="not_dr",
        )
    if not member.mirror_private_address:
        raise ValidationError(
            f"{member.name} has no mirror private address: a failover member needs one; "
            "set it first.",
            code="no_private_address",
        )
    if member.authorization == Member.PENDING:
        raise StateConflict(f"{member.name} waits for authorization.", code="not_authorized")


def _check_demotable(member: Member) -> None:
    _failover_member(member, "demotion to DR")
    if _is_primary(member):
        raise StateConflict(
            f"{member.name} reports itself as the primary: only the backup is demoted.",
            code="is_primary",
        )


@transaction.atomic
def promote_member(actor, member: Member, *, confirm: str) -> Job:
    """The DR async becomes a failover member, the backup, and the backup there was becomes DR
    (guide §5.5, with a primary running): the primary decides, and refuses a member that is not
    connected and caught up. The mirror's name is typed: which member takes over changes."""
    return _start_confirmed(
        actor, "promote_member", member, confirm, serialized_with=RETYPING, check=_check_promotable
    )


@transaction.atomic
def demote_member(actor, member: Member, *, confirm: str) -> Job:
    """The backup becomes a DR async (guide §5.6): the mirror no longer fails over
    automatically until a DR async is promoted. The mirror's name is typed."""
    return _start_confirmed(
        actor, "demote_member", member, confirm, serialized_with=RETYPING, check=_check_demotable
    )
