"""The mirror pages: the list of mirrors (the fleet overview), one mirror's page, and what an
operator or admin does to the mirror as a whole from there (read it again, its settings, TLS
off, remove or forget it). Members, databases, application credentials and hosts have their own
pages (members/member_views.py, database_views.py, app_credential_views.py, host_views.py);
what they all share is members/pages.py."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.decorators import any_mirror_required, may
from accounts.roles import ADMIN, OPERATOR, has_role, scope
from engine import rules as catalog
from members import actions, failover_actions, failover_buttons, forms, rules
from members.access import (
    mirror_admin_required,
    mirror_operator_required,
    mirror_viewer_required,
    roles_on_whole_instances,
)
from members.health import mirror_health
from members.models import DatabaseCopy, Draft, Member, Mirror, MirroredDatabase, PendingDNUpdate
from members.pages import PAGE_SIZE, RECENT_JOBS, form_page, posted

COPY_PAUSED = "Dejournaling Stopped"  # a copy's status once dejournaling stopped (guide §5.1.1.3)


def _count_members(**conditions):
    return Count("members", filter=Q(**{f"members__{k}": v for k, v in conditions.items()}))


@any_mirror_required
def mirror_list(request):
    mirrors = (
        scope(Mirror.objects, request.user, "pk")
        .annotate(
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
        )
        .order_by("name")
    )
    # The fleet overview (docs/monitor-pages.md): every mirror's live row, worst first, kept
    # current by static/js/fleet.js. Imported here: the monitor's pages own the fleet rows.
    from monitor.views import fleet_rows, with_fleet_data

    mirrors = list(with_fleet_data(mirrors))
    for mirror in mirrors:
        mirror.health = mirror_health(list(mirror.members.all()))
    page = Paginator(fleet_rows(mirrors), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "can_create": has_role(request.user, ADMIN),
        "drafts": Draft.objects.filter(owner=request.user, finished_at=None).count(),
        # fleet.js updates the rows shown; it re-sorts them, and adds new mirrors, only when
        # one page holds every mirror
        "live_sort": page.paginator.num_pages == 1,
    }
    return render(request, "members/mirror_list.html", context)


@mirror_viewer_required
def mirror_detail(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    members = list(mirror.members.select_related("host"))
    databases = list(mirror.databases.all())
    copies = list(DatabaseCopy.objects.filter(database__mirror=mirror).select_related("database"))
    statuses = {(copy.database_id, copy.member_id): copy.status for copy in copies}
    can_operate = may(request, mirror.pk, OPERATOR)
    roles_on_whole_instances(request.user, mirror, members)
    for member in members:
        member.switches = _switches(mirror, member, copies) if can_operate else []
        member.switches += failover_buttons.failover_switches(mirror, member) if can_operate else []
        member.can_force = failover_buttons.can_force(member)
        member.can_rebuild = failover_buttons.can_rebuild(member)
        member.can_promote = failover_actions.can_promote(member)
        member.can_demote = failover_actions.can_demote(member)
        member.can_promote_to_primary = failover_buttons.can_promote_to_primary(member, members)
        member.can_clear_validated = failover_buttons.can_clear_validated(member)
    chosen = next((m for m in members if m.name == request.GET.get("member", "").upper()), None)
    context = {
        "mirror": mirror,
        "can_operate": can_operate,
        "can_admin": may(request, mirror.pk, ADMIN),
        "drifts": mirror.drifts.all(),
        "jobs": mirror.jobs.select_related("requested_by").defer("log", "result")[:RECENT_JOBS],
        "members": members,
        "pending_members": [m for m in members if m.authorization == Member.PENDING],
        "dn_updates": PendingDNUpdate.objects.filter(
            member__mirror=mirror, state=PendingDNUpdate.PENDING
        ).select_related("member"),
        # One row per database, one cell per member in the members table's order.
        "database_rows": [(db, [statuses.get((db.pk, m.pk)) for m in members]) for db in databases],
        # The Mirror Monitor's list: one member's copies, several selected, one action for all.
        "chosen": chosen,
        "chosen_copies": [c for c in copies if chosen and c.member_id == chosen.pk],
        "copy_actions": forms.COPY_ACTIONS,
    }
    return render(request, "members/mirror_detail.html", context)


def _switches(mirror, member, copies) -> list[tuple[str, str]]:
    """(url, label) of the switches that apply to what the member last reported: stop or start
    mirroring, never on the primary (guide §5.8); on an async, stop or start dejournaling
    (guide §5.9)."""
    if member.status in catalog.PRIMARY_STATUSES:
        return []
    stopped = member.status == catalog.STOPPED
    kinds = ["start_mirroring" if stopped else "stop_mirroring"]
    if member.is_async:
        paused = any(c.member_id == member.pk and c.status == COPY_PAUSED for c in copies)
        kinds.append("start_dejournaling" if paused else "stop_dejournaling")
    return [
        (
            reverse("member-switch", args=[mirror.name, member.pk, kind.replace("_", "-")]),
            kind.replace("_", " ").capitalize(),
        )
        for kind in kinds
    ]


@mirror_operator_required
@require_POST
def refresh_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    job = actions.refresh_mirror(request.user, mirror)
    messages.info(request, f"Reading {mirror.name} from its members.")
    return redirect("job-detail", pk=job.pk)


# --- The mirror's settings ---------------------------------------------------------------------
@mirror_admin_required
def edit_settings(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.MirrorSettingsForm(mirror, data=posted(request))
    return form_page(
        request,
        form,
        "mirror_settings.html",
        {"mirror": mirror},
        lambda _: actions.edit_mirror(request.user, mirror, **form.changes()),
        f"New settings for {mirror.name}",
    )


# --- Dangerous operations: a page that says what is at risk, and the mirror's name typed -------
@mirror_admin_required
def turn_tls_off(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    if not mirror.requires_tls:
        messages.info(request, f"{mirror.name} does not require TLS.")
        return redirect("mirror-detail", name=mirror.name)
    form = forms.ConfirmForm(mirror, data=posted(request))
    return form_page(
        request,
        form,
        "confirm_tls_off.html",
        {"mirror": mirror, "members": mirror.members.all()},
        lambda data: actions.edit_mirror(
            request.user, mirror, requires_tls=False, confirm=data["confirm"]
        ),
        f"Turning TLS off on {mirror.name}",
    )


@mirror_admin_required
def remove_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.RemoveMirrorForm(mirror, data=posted(request))
    return form_page(
        request,
        form,
        "confirm_remove_mirror.html",
        {"mirror": mirror, "members": mirror.members.all(), "databases": mirror.databases.all()},
        lambda data: actions.remove_mirror(request.user, mirror, **data),
        f"Removing the mirror {mirror.name} from its members",
    )


@mirror_admin_required
def forget_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.ConfirmForm(mirror, data=posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            actions.forget_mirror(request.user, mirror, confirm=form.cleaned_data["confirm"])
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            messages.info(
                request, f"The portal no longer keeps {mirror.name}; its members were not told."
            )
            return redirect("mirror-list")
    context = {
        "mirror": mirror,
        "form": form,
        "members": mirror.members.all(),
        "databases": mirror.databases.all(),
    }
    return render(request, "members/confirm_forget_mirror.html", context)
