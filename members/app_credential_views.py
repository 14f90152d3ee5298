"""The application credentials of a member's instance from its pages (docs/hardening.md):
the list as the instance last answered, making one (its secret shown once, to the operator who
asked), reading them again, and revoking one, which is dangerous: the mirror's name typed."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.decorators import may
from accounts.roles import OPERATOR, VIEWER
from members import actions, forms
from members.access import check_whole_instance, mirror_operator_required, mirror_viewer_required
from members.operations import app_credentials
from members.pages import RECENT_JOBS, member_or_404, posted
from tasks.models import Job


def _credentials_page(request, member, form=None, status=200):
    context = {
        "mirror": member.mirror,
        "member": member,
        "recorded": app_credentials.recorded(member),
        "can_operate": may(request, member.mirror_id, OPERATOR),
        "form": form or forms.AppCredentialForm(),
        "jobs": Job.objects.filter(member=member, kind__in=app_credentials.KINDS)
        .select_related("requested_by")
        .defer("log", "result")[:RECENT_JOBS],
    }
    return render(request, "members/app_credentials.html", context, status=status)


def _credential_job(job) -> str:
    return reverse("app-credential-job", args=[job.member.mirror.name, job.member_id, job.pk])


@mirror_viewer_required
def app_credential_list(request, name, pk):
    """The credentials of the member's instance as it last answered; operators make, read and
    revoke them from here."""
    member = member_or_404(name, pk)
    check_whole_instance(request.user, member, VIEWER)
    return _credentials_page(request, member)


@mirror_operator_required
@require_POST
def create_app_credential(request, name, pk):
    member = member_or_404(name, pk)
    form = forms.AppCredentialForm(data=request.POST)
    if form.is_valid():
        try:
            job = actions.create_app_credential(request.user, member, form.cleaned_data["name"])
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            messages.info(request, f"Creating credential {job.params['name']}: job {job.pk}.")
            return redirect(_credential_job(job))
    return _credentials_page(request, member, form, status=400)


@mirror_operator_required
@require_POST
def read_app_credentials(request, name, pk):
    job = actions.list_app_credentials(request.user, member_or_404(name, pk))
    messages.info(request, f"Reading the credentials of {job.member.name}: job {job.pk}.")
    return redirect(_credential_job(job))


@mirror_operator_required
def revoke_app_credential(request, name, pk):
    """Dangerous: the application is refused from then on; the mirror's name typed first."""
    member = member_or_404(name, pk)
    credential = (request.POST or request.GET).get("name", "")
    form = forms.RevokeAppCredentialForm(
        member.mirror, data=posted(request), initial={"name": credential}
    )
    if request.method == "POST" and form.is_valid():
        try:
            job = actions.revoke_app_credential(
                request.user,
                member,
                form.cleaned_data["name"],
                confirm=form.cleaned_data["confirm"],
            )
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            messages.info(request, f"Revoking credential {job.params['name']}: job {job.pk}.")
            return redirect(_credential_job(job))
    context = {"mirror": member.mirror, "member": member, "credential": credential, "form": form}
    return render(request, "members/confirm_revoke_app_credential.html", context)


def _app_job(name, pk, job_pk) -> Job:
    return get_object_or_404(
        Job.objects.select_related("member__mirror", "requested_by"),
        pk=job_pk,
        member__pk=pk,
        member__mirror__name=name.upper(),
        kind__in=app_credentials.KINDS,
    )


@mirror_viewer_required
def app_credential_job(request, name, pk, job):
    """One credential job as it goes; once a creation succeeds, the operator who asked for it
    may have its secret shown, once."""
    job = _app_job(name, pk, job)
    waiting = app_credentials.waiting_secret(job) and not app_credentials.expired(job)
    context = {
        "mirror": job.member.mirror,
        "member": job.member,
        "job": job,
        "secret_waiting": waiting,
        "mine": job.requested_by_id == request.user.pk,
    }
    return render(request, "members/app_credential_job.html", context)


@mirror_operator_required
@require_POST
def reveal_app_credential(request, name, pk, job):
    job = _app_job(name, pk, job)
    if job.kind != app_credentials.CREATE:
        raise Http404("This job made no credential.")
    try:
        shown = actions.reveal_app_credential(request.user, job)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_credential_job(job))
    context = {"mirror": job.member.mirror, "member": job.member, "shown": shown}
    response = render(request, "members/app_credential_secret.html", context)
    response["Cache-Control"] = "no-store"
    return response
