"""Forcing a failover member to become primary from the pages (guide §6.2.3), in two steps as
in the API (members.failover_actions): a button asks the member what is at stake and opens a
page that shows its answer as soon as it comes; the mirror's name typed there makes it primary.
Other failover buttons (a graceful stop, no failover) are members.views.switch_member's."""

from urllib.parse import urlencode

from django import forms as django_forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required
from members import failover_actions, forms
from members.models import Member
from members.views import back_to
from tasks.models import Job


def _member(name, pk) -> Member:
    return get_object_or_404(
        Member.objects.select_related("mirror", "host"), pk=pk, mirror__name=name.upper()
    )


class ForcePrimaryForm(forms.ConfirmForm):
    preview = django_forms.IntegerField(widget=django_forms.HiddenInput, min_value=1)


@admin_required
@require_POST
def preview_force_primary(request, name, pk):
    """Step one: the member is asked what forcing it would put at risk; the next page shows
    its answer as soon as it comes."""
    member = _member(name, pk)
    try:
        job = failover_actions.preview_force_primary(request.user, member)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back_to(request, member))
    page = reverse("member-force-primary", args=[member.mirror.name, member.pk])
    return redirect(f"{page}?{urlencode({'preview': job.pk})}")


@admin_required
def force_primary(request, name, pk):
    """Step two: what the member answered is at stake (whether it was the Active backup, where
    its journal ends, the last primary it knew); the form shows once it has answered, and the
    mirror's name typed makes it primary."""
    member = _member(name, pk)
    chosen = (request.POST or request.GET).get("preview", "")
    preview = (
        Job.objects.filter(pk=chosen, member=member, kind="preview_force_primary").first()
        if chosen.isdigit()
        else None
    )
    if preview is None:
        messages.error(request, f"Ask {member.name} what is at stake first.")
        return redirect("mirror-detail", name=member.mirror.name)
    data = request.POST if request.method == "POST" else None
    form = ForcePrimaryForm(member.mirror, data=data, initial={"preview": preview.pk})
    answered = preview.state == Job.SUCCEEDED
    if data is not None and answered and form.is_valid():
        try:
            job = failover_actions.force_primary(
                request.user, member, confirm=form.cleaned_data["confirm"]
            )
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            messages.info(request, f"Forcing {member.name} to become primary: job {job.pk}.")
            return redirect("job-detail", pk=job.pk)
    context = {
        "mirror": member.mirror,
        "member": member,
        "preview": preview,
        "stake": preview.result if answered else None,
        "form": form,
    }
    return render(request, "members/confirm_force_primary.html", context)
