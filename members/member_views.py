"""A mirror's members from its pages (guide §4.7, §5.2, §5.8, §5.9): an instance joins, a
pending member or a new DN is authorized or rejected, addresses change, mirroring and
dejournaling are switched (and the failover switches members/failover_buttons.py offers), a
member is removed. Forcing a primary, promoting and demoting are members/failover_views.py's."""

from functools import partial

from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from members import actions, failover_buttons, forms
from members.access import mirror_admin_required, mirror_operator_required
from members.models import Mirror, PendingDNUpdate
from members.pages import (
    back_to,
    confirm_member_page,
    form_page,
    member_or_404,
    posted,
    start_job_page,
)


@mirror_admin_required
def join_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.JoinForm(mirror, data=posted(request), user=request.user)
    return form_page(
        request,
        form,
        "mirror_join.html",
        {"mirror": mirror},
        lambda _: actions.join_mirror(request.user, mirror, **form.arguments()),
        f"Joining {mirror.name}",
    )


@mirror_admin_required
@require_POST
def authorize_member(request, name, pk):
    member = member_or_404(name, pk)
    started = start_job_page(
        request,
        lambda: actions.authorize_member(request.user, member),
        f"Authorizing {member.name} on the primary",
    )
    return started or redirect("mirror-detail", name=member.mirror.name)


@mirror_admin_required
@require_POST
def decide_dn_update(request, name, pk, authorize: bool):
    update = get_object_or_404(
        PendingDNUpdate.objects.select_related("member__mirror"),
        pk=pk,
        member__mirror__name=name.upper(),
    )
    verb = "Authorizing" if authorize else "Rejecting"
    started = start_job_page(
        request,
        lambda: actions.decide_dn_update(request.user, update, authorize=authorize),
        f"{verb} the new DN of {update.member.name}",
    )
    return started or redirect("mirror-detail", name=update.member.mirror.name)


@mirror_admin_required
def member_addresses(request, name, pk):
    member = member_or_404(name, pk)
    form = forms.MemberAddressForm(member, data=posted(request))
    return form_page(
        request,
        form,
        "member_addresses.html",
        {"mirror": member.mirror, "member": member},
        lambda _: actions.update_member_address(request.user, member, **form.arguments()),
        f"New addresses of {member.name}",
    )


@mirror_operator_required
@require_POST
def switch_member(request, name, pk, operation):
    kind = operation.replace("-", "_")
    if kind not in failover_buttons.FAILOVER_SWITCHES and kind not in actions.MIRROR_SWITCHES:
        raise Http404("No such operation.")
    member = member_or_404(name, pk)
    if kind in failover_buttons.FAILOVER_SWITCHES:
        service, label = failover_buttons.FAILOVER_SWITCHES[kind]
        start = partial(service, request.user, member)
    else:
        label = kind.replace("_", " ").capitalize()
        start = partial(actions.switch_member, request.user, member, kind)
    started = start_job_page(request, start, f"{label} on {member.name}")
    return started or redirect(back_to(request, member))


# --- Dangerous operations: a page that says what is at risk, and the mirror's name typed -------
@mirror_admin_required
def reject_member(request, name, pk):
    member = member_or_404(name, pk)
    return confirm_member_page(
        request,
        member,
        "confirm_reject_member.html",
        {},
        lambda confirm: actions.reject_member(request.user, member, confirm=confirm),
        f"Rejecting {member.name} on the primary",
    )


@mirror_admin_required
def remove_member(request, name, pk):
    member = member_or_404(name, pk)
    return confirm_member_page(
        request,
        member,
        "confirm_remove_member.html",
        {"copies": member.database_copies.select_related("database")},
        lambda confirm: actions.remove_member(request.user, member, confirm=confirm),
        f"Removing {member.name} from {member.mirror.name}",
    )
