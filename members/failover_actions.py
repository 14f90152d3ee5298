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

With no primary running (both failover members lost, guide §5.5, §6.3), a DR async is promoted
to primary on itself, in two steps as forcing is: `preview_promote_to_primary` asks it what is
at stake with the partner chosen (one of the failover members, or none), and
`promote_to_primary` needs the mirror's name typed. A mirror has one primary, so no two
operations that make one run in a mirror at once. `clear_validated_member` then keeps a stopped
former failover member from making itself primary at its next start.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from engine import rules as catalog
from members import rules
from members.access import check_may_run
from members.actions import ACTIVE, check_confirmed, claim
from members.models import Member, Mirror
from portal.exceptions import StateConflict
from tasks.models import Job
from tasks.services import start_job


def _member_job(actor, kind: str, member: Member, params: dict | None = None) -> Job:
    check_may_run(actor, kind, member.mirror_id, member)
    return start_job(actor, kind, member, params=params, mirror=member.mirror, member=member)


def _start_confirmed(
    actor, kind: str, member: Member, confirm: str, *, serialized_with, check
) -> Job:
    """A dangerous operation on `member`: the mirror's name typed, no job of the
    `serialized_with` kinds under way on it (members.actions.claim), and `check` passing on
    the member as it is then (what it returns, if anything, is the job's params)."""
    check_confirmed(member.mirror, confirm)
    claim(member, serialized_with)
    if kind in MAKING_PRIMARY:
        _one_primary_in_the_making(member)
    member.refresh_from_db()
    return _member_job(actor, kind, member, check(member))


FORCING = ["force_primary"]
# the operations that make a member primary while none runs: one at a time in a mirror
MAKING_PRIMARY = ["force_primary", "promote_to_primary"]


def _one_primary_in_the_making(member: Member) -> None:
    """No operation that makes a primary under way on another member of the mirror: two of
    them would give it two primaries. The mirror's row lock (PostgreSQL; SQLite's write lock
    is held already) makes a second request wait for the first one's job."""
    Mirror.objects.select_for_update(no_key=True).get(pk=member.mirror_id)
    running = (
        Job.objects.filter(mirror_id=member.mirror_id, kind__in=MAKING_PRIMARY, state__in=ACTIVE)
        .exclude(member=member)
        .select_related("member")
        .first()
    )
    if running is not None:
        other = running.member.name if running.member else "another member"
        raise StateConflict(
            f"{other} is being made the primary already (job {running.pk}, {running.kind}): "
            "a mirror has one primary.",
            code="in_progress",
        )


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


# --- Rebuilding a member (guide §5.7) -----------------------------------------------------
REBUILDING = ["rebuild_member"]


def _check_rebuildable(member: Member) -> None:
    if member.status in catalog.PRIMARY_STATUSES:
        raise StateConflict(
            f"{member.name} is the primary: a mirror takes its data from its primary, so "
            "rebuild the other members.",
            code="primary",
        )
    if member.status == catalog.DOWN:
        raise StateConflict(
            f"{member.name} was last seen Down: start its instance first.", code="member_down"
        )


def preview_rebuild_member(actor, member: Member) -> Job:
    """Step one of rebuilding a member whose data the mirror refused (guide §5.7): it says what
    is at stake (its journal end, the databases to take again, why the primary refused it).
    Nothing changes."""
    _check_rebuildable(member)
    return _member_job(actor, "preview_rebuild_member", member)


@transaction.atomic
def rebuild_member(actor, member: Member, *, confirm: str) -> Job:
    """Step two, dangerous: the member sets its journal and databases aside (kept on its host)
    and takes them again from the mirror. The caller types the mirror's name."""
    return _start_confirmed(
        actor,
        "rebuild_member",
        member,
        confirm,
        serialized_with=REBUILDING,
        check=_check_rebuildable,
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


# --- Disaster recovery: no primary runs (guide §5.5, §6.3) ----------------------------------
def failover_members(member: Member) -> list[Member]:
    """The partners a promotion of `member` to primary may take: the mirror's failover
    members, as the portal last recorded them."""
    return list(member.mirror.members.filter(member_type=catalog.FAILOVER).order_by("name"))


def _partner(member: Member, partner: str | None) -> str | None:
    """The partner's name, checked against what the portal recorded; None: no partner."""
    name = (partner or "").strip().upper()
    if not name:
        return None
    found = member.mirror.members.filter(name=name).first()
    if found is None:
        raise rules.field_error(
            "partner", f"{name} is not a member of {member.mirror.name}.", "unknown_member"
        )
    if found.member_type != catalog.FAILOVER:
        raise rules.field_error(
            "partner",
            f"{name} is {found.get_member_type_display()}: the partner is one of the mirror's "
            "failover members, or none.",
            "partner_not_failover",
        )
    return name


def _check_promotable_to_primary(member: Member, partner: str | None) -> dict:
    """The promotion's params ({"partner": name or None}) once the request fits what the
    portal last saw; the member itself decides the rest (a primary it still follows, a partner
    whose agent does not confirm it down)."""
    if member.member_type != catalog.DR:
        raise ValidationError(
            f"{member.name} is not a DR async: only a DR async is promoted to primary.",
            code="not_dr",
        )
    if member.authorization == Member.PENDING:
        raise StateConflict(f"{member.name} waits for authorization.", code="not_authorized")
    primary = member.mirror.members.filter(status__in=catalog.PRIMARY_STATUSES).first()
    if primary is not None:
        raise StateConflict(
            f"{primary.name} reports itself as the primary: a mirror has one primary. Promote "
            f"{member.name} through it (Promote to failover), which makes it the backup.",
            code="has_primary",
        )
    return {"partner": _partner(member, partner)}


def preview_promote_to_primary(actor, member: Member, *, partner: str | None = None) -> Job:
    """Step one: the DR async says what its promotion with `partner` (or none) puts at risk
    (where its journal ends, the last primary it knew, its warning). Nothing changes."""
    params = _check_promotable_to_primary(member, partner)
    return _member_job(actor, "preview_promote_to_primary", member, params)


@transaction.atomic
def promote_to_primary(actor, member: Member, *, confirm: str, partner: str | None = None) -> Job:
    """Step two, dangerous: the DR async restarts as the primary at a new term; `partner`
    stays a failover member and every other failover member becomes DR. With no partner,
    whatever the failover members committed after its journal end is lost. The caller types
    the mirror's name, having seen step one's answer."""
    return _start_confirmed(
        actor,
        "promote_to_primary",
        member,
        confirm,
        serialized_with=MAKING_PRIMARY,
        check=lambda m: _check_promotable_to_primary(m, partner),
    )


# ValidatedMember is a failover member's; a DR async may be a former failover member that a
# promotion with no primary made DR in the new primary's configuration, while its own still
# says failover (until it connects)
VALIDATED_TYPES = (catalog.FAILOVER, catalog.DR)


def _check_clearable(member: Member) -> None:
    if member.member_type not in VALIDATED_TYPES:
        raise ValidationError(
            f"{member.name} is {member.get_member_type_display()}: ValidatedMember is a "
            "failover member's (or a former one's, made DR by a promotion).",
            code="not_failover",
        )
    if member.status != catalog.DOWN:
        raise StateConflict(
            f"{member.name} was last seen {member.status or 'not read yet'}: ValidatedMember is "
            "cleared on a stopped instance (stop it, or refresh the mirror if it has stopped).",
            code="not_down",
        )


def clear_validated_member(actor, member: Member) -> Job:
    """ValidatedMember=0 on the member's stopped instance (guide §6.3.1.1): at its next start
    it never becomes primary by itself, and takes the role the primary it finds gives it."""
    _check_clearable(member)
    return _member_job(actor, "clear_validated_member", member)
