"""Mirror and host pages. Views parse, check the role, call one service or action and render;
an operation on the members starts its job and shows it."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required, operator_required, viewer_required
from accounts.roles import OPERATOR, has_role
from members import actions, rules
from members.models import (
    DatabaseCopy,
    Host,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)

PAGE_SIZE = 50
RECENT_JOBS = 10


def _count_members(**conditions):
    return Count("members", filter=Q(**{f"members__{k}": v for k, v in conditions.items()}))


@viewer_required
def mirror_list(request):
    mirrors = Mirror.objects.annotate(
        failover_count=_count_members(member_type=rules.FAILOVER),
        dr_count=_count_members(member_type=rules.DR),
        ro_count=_count_members(member_type=rules.RO_REPORTING),
        rw_count=_count_members(member_type=rules.RW_REPORTING),
        pending_count=_count_members(authorization=Member.PENDING),
        # A subquery, not a second join: members x databases rows would multiply per mirror.
        database_count=Coalesce(
            Subquery(
                MirroredDatabase.objects.filter(mirror=OuterRef("pk"))
                .order_by()
                .values("mirror")
                .annotate(n=Count("pk"))
                .values("n")
            ),
            0,
        ),
    ).order_by("name")
    page = Paginator(mirrors, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "members/mirror_list.html", {"page": page})


@viewer_required
def mirror_detail(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    members = list(mirror.members.select_related("host"))
    databases = list(mirror.databases.all())
    statuses = {
        (copy.database_id, copy.member_id): copy.status
        for copy in DatabaseCopy.objects.filter(database__mirror=mirror)
    }
    context = {
        "mirror": mirror,
        "can_operate": has_role(request.user, OPERATOR),
        "drifts": mirror.drifts.all(),
        "jobs": mirror.jobs.select_related("requested_by").defer("log", "result")[:RECENT_JOBS],
        "members": members,
        "pending_members": [m for m in members if m.authorization == Member.PENDING],
        "dn_updates": PendingDNUpdate.objects.filter(
            member__mirror=mirror, state=PendingDNUpdate.PENDING
        ).select_related("member"),
        # One row per database, one cell per member in the members table's order.
        "database_rows": [(db, [statuses.get((db.pk, m.pk)) for m in members]) for db in databases],
    }
    return render(request, "members/mirror_detail.html", context)


def _start(request, start, what: str):
    """Start one operation's job and show it; a request the rules refuse is an error message on
    the page it came from, not a crash."""
    try:
        job = start()
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return None
    messages.info(request, f"{what}: job {job.pk} started.")
    return redirect("job-detail", pk=job.pk)


@admin_required
@require_POST
def decide_member(request, name, pk, authorize: bool):
    member = get_object_or_404(Member, pk=pk, mirror__name=name.upper())
    action = actions.authorize_member if authorize else actions.reject_member
    what = f"{'Authorizing' if authorize else 'Rejecting'} {member.name} on the primary"
    started = _start(request, lambda: action(request.user, member), what)
    return started or redirect("mirror-detail", name=member.mirror.name)


@admin_required
@require_POST
def decide_dn_update(request, name, pk, authorize: bool):
    update = get_object_or_404(
        PendingDNUpdate.objects.select_related("member__mirror"),
        pk=pk,
        member__mirror__name=name.upper(),
    )
    verb = "Authorizing" if authorize else "Rejecting"
    started = _start(
        request,
        lambda: actions.decide_dn_update(request.user, update, authorize=authorize),
        f"{verb} the new DN of {update.member.name}",
    )
    return started or redirect("mirror-detail", name=update.member.mirror.name)


@operator_required
@require_POST
def refresh_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    job = actions.refresh_mirror(request.user, mirror)
    messages.info(request, f"Reading {mirror.name} from its members.")
    return redirect("job-detail", pk=job.pk)


@viewer_required
def host_list(request):
    hosts = Host.objects.annotate(member_count=Count("members")).order_by("name")
    page = Paginator(hosts, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "members/host_list.html", {"page": page})


@operator_required
@require_POST
def check_host(request, pk):
    host = get_object_or_404(Host, pk=pk)
    job = actions.check_host(request.user, host)
    messages.info(request, f"Checking host {host.name}.")
    return redirect("job-detail", pk=job.pk)
