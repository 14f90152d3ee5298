"""Forcing a failover member to become primary from the pages (guide §6.2.3), in two steps as
in the API (members.failover_actions): a button asks the member what is at stake and opens a
page that shows its answer as soon as it comes; the mirror's name typed there makes it primary.
Other failover buttons (a graceful stop, no failover) are members.member_views.switch_member's.

Promoting a DR async and demoting the backup (guide §5.5, §5.6) each have a confirmation page
that says, from what the portal last recorded, which member becomes the backup and which
becomes DR; the mirror's name typed there starts the job.

With no primary running (guide §5.5, §6.3), a DR async is promoted to primary in the same two
steps as forcing: a page to choose the partner (a failover member, or none) asks the member
what is at stake; the next page shows its answer, and the mirror's name typed there promotes it
with that partner. Clearing ValidatedMember on a stopped member is one button."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from engine import rules as catalog
from members import failover_actions, forms
from members.access import mirror_admin_required
from members.models import Member
from members.pages import back_to, confirm_member_page, member_or_404, posted, start_job_page
from tasks.models import Job


def _ask_first(request, member: Member, ask, page: str):
    """Step one of a two-step operation: `ask` starts the preview job; the page named `page`
    shows the member's answer as soon as it comes."""
    try:
        job = ask(request.user, member)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back_to(request, member))
    url = reverse(page, args=[member.mirror.name, member.pk])
    return redirect(f"{url}?{urlencode({'preview': job.pk})}")


def _second_step(request, member: Member, kind: str, template: str, start, what: str):
    """Step two, on the page the preview job of `kind` was sent to (_previewed_page)."""
    preview = _preview_sent(request, member, kind)
    if preview is None:
        messages.error(request, f"Ask {member.name} what is at stake first.")
        return redirect("mirror-detail", name=member.mirror.name)
    return _previewed_page(request, member, preview, template, start, what)


@mirror_admin_required
@require_POST
def preview_force_primary(request, name, pk):
    """Step one: the member is asked what forcing it would put at risk."""
    member = member_or_404(name, pk)
    return _ask_first(
        request, member, failover_actions.preview_force_primary, "member-force-primary"
    )


def _preview_sent(request, member: Member, kind: str) -> Job | None:
    """The preview job (of `kind`, on `member`) the page was sent with, if it is one."""
    chosen = (request.POST or request.GET).get("preview", "")
    if not chosen.isdigit():
        return None
    return Job.objects.filter(pk=chosen, member=member, kind=kind).first()


def _previewed_page(request, member: Member, preview: Job, template: str, start, what: str):
    """Step two of a two-step operation: what the member answered in `preview` is at stake;
    the form shows once it has answered, and the mirror's name typed starts the job
    (start(confirm))."""
    form = forms.ForcePrimaryForm(
        member.mirror, data=posted(request), initial={"preview": preview.pk}
    )
    answered = preview.state == Job.SUCCEEDED
    if request.method == "POST" and answered and form.is_valid():
        try:
            job = start(form.cleaned_data["confirm"])
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            messages.info(request, f"{what}: job {job.pk}.")
            return redirect("job-detail", pk=job.pk)
    context = {
        "mirror": member.mirror,
        "member": member,
        "preview": preview,
        "stake": preview.result if answered else None,
        "form": form,
    }
    return render(request, f"members/{template}", context)


@mirror_admin_required
def force_primary(request, name, pk):
    """Step two: what the member answered is at stake (whether it was the Active backup, where
    its journal ends, the last primary it knew); the form shows once it has answered, and the
    mirror's name typed makes it primary."""
    member = member_or_404(name, pk)
    return _second_step(
        request,
        member,
        "preview_force_primary",
        "confirm_force_primary.html",
        lambda confirm: failover_actions.force_primary(request.user, member, confirm=confirm),
        f"Forcing {member.name} to become primary",
    )


@mirror_admin_required
@require_POST
def preview_rebuild_member(request, name, pk):
    """Step one of a rebuild (guide §5.7): the member is asked what it would set aside."""
    member = member_or_404(name, pk)
    return _ask_first(request, member, failover_actions.preview_rebuild_member, "member-rebuild")


@mirror_admin_required
def rebuild_member(request, name, pk):
    """Step two: what the member answered is at stake; the mirror's name typed rebuilds it."""
    member = member_or_404(name, pk)
    return _second_step(
        request,
        member,
        "preview_rebuild_member",
        "confirm_rebuild_member.html",
        lambda confirm: failover_actions.rebuild_member(request.user, member, confirm=confirm),
        f"Rebuilding {member.name}",
    )


def _primary_name(member: Member) -> str | None:
    primary = member.mirror.members.filter(status__in=catalog.PRIMARY_STATUSES).first()
    return primary.name if primary else None


@mirror_admin_required
def promote_member(request, name, pk):
    """The DR async becomes the backup, and the backup there was becomes DR."""
    member = member_or_404(name, pk)
    return confirm_member_page(
        request,
        member,
        "confirm_promote_member.html",
        {
            "changes": failover_actions.promotion_changes(member),
            "primary": _primary_name(member),
            "can_promote": failover_actions.can_promote(member),
        },
        lambda confirm: failover_actions.promote_member(request.user, member, confirm=confirm),
        f"Promoting {member.name} to failover member",
    )


@mirror_admin_required
def demote_member(request, name, pk):
    """The backup becomes a DR async."""
    member = member_or_404(name, pk)
    return confirm_member_page(
        request,
        member,
        "confirm_demote_member.html",
        {"primary": _primary_name(member), "can_demote": failover_actions.can_demote(member)},
        lambda confirm: failover_actions.demote_member(request.user, member, confirm=confirm),
        f"Demoting {member.name} to DR async",
    )


# --- Disaster recovery: no primary runs (guide §5.5, §6.3) ----------------------------------
@mirror_admin_required
def preview_promote_to_primary(request, name, pk):
    """Step one: the partner chosen (a failover member, or none), the DR async is asked what
    its promotion would put at risk; the next page shows its answer as soon as it comes."""
    member = member_or_404(name, pk)
    form = forms.PartnerForm(failover_actions.failover_members(member), data=posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            job = failover_actions.preview_promote_to_primary(
                request.user, member, partner=form.cleaned_data["partner"]
            )
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            page = reverse("member-promote-to-primary", args=[member.mirror.name, member.pk])
            return redirect(f"{page}?{urlencode({'preview': job.pk})}")
    context = {"mirror": member.mirror, "member": member, "form": form}
    return render(request, "members/promote_to_primary_partner.html", context)


@mirror_admin_required
def promote_to_primary(request, name, pk):
    """Step two: what the DR async answered is at stake (where its journal ends, the last
    primary it knew, its warning, the partner or none); the mirror's name typed promotes it
    with the partner step one named."""
    member = member_or_404(name, pk)
    preview = _preview_sent(request, member, "preview_promote_to_primary")
    if preview is None:
        messages.error(request, f"Choose {member.name}'s partner and ask what is at stake first.")
        return redirect("mirror-detail", name=member.mirror.name)
    partner = preview.params.get("partner")
    return _previewed_page(
        request,
        member,
        preview,
        "confirm_promote_to_primary.html",
        lambda confirm: failover_actions.promote_to_primary(
            request.user, member, confirm=confirm, partner=partner
        ),
        f"Promoting {member.name} to primary",
    )


@mirror_admin_required
@require_POST
def clear_validated_member(request, name, pk):
    """ValidatedMember cleared on the member's stopped instance."""
    member = member_or_404(name, pk)
    started = start_job_page(
        request,
        lambda: failover_actions.clear_validated_member(request.user, member),
        f"Clearing ValidatedMember on {member.name}",
    )
    return started or redirect(back_to(request, member))
