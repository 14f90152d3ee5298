"""What the mirror, member, database and host pages share (members/*views.py). Views parse,
check the role, call one service or action and render; an operation on the members starts its
job and shows it. Operators run operations, admins change configuration and decide on members
(as in the API). A dangerous operation first shows what is at risk and goes ahead only with the
mirror's name typed (members.actions.check_confirmed)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from members import forms
from members.models import Member

PAGE_SIZE = 50
RECENT_JOBS = 10


def member_or_404(name, pk) -> Member:
    """Member `pk` of the mirror named `name` (any case), or a 404."""
    return get_object_or_404(
        Member.objects.select_related("mirror", "host"), pk=pk, mirror__name=name.upper()
    )


def posted(request):
    """The form data of a POST; None (an unbound form) otherwise."""
    return request.POST if request.method == "POST" else None


def start_job_page(request, start, what: str):
    """Start one operation's job and show it; a request the rules refuse is an error message on
    the page it came from (None: the caller redirects there), not a crash."""
    try:
        job = start()
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return None
    messages.info(request, f"{what}: job {job.pk} started.")
    return redirect("job-detail", pk=job.pk)


def form_page(request, form, template: str, context: dict, start, what: str):
    """An operation's page: GET shows the form; a POST the form and the rules accept starts
    the job (start(cleaned_data)) and shows it, else the page comes back with the reasons."""
    if request.method == "POST":
        started = _submit(request, form, start, what)
        if started:
            return started
    return render(request, f"members/{template}", {"form": form, **context})


def _submit(request, form, start, what: str):
    """A valid form starts its job (start(cleaned_data)) and shows it; None when the form or
    the rules refuse it, with the reasons on the form."""
    if not form.is_valid():
        return None
    try:
        job = start(form.cleaned_data)
    except ValidationError as exc:
        forms.show_refusal(form, exc)
        return None
    messages.info(request, f"{what}: job {job.pk} started.")
    return redirect("job-detail", pk=job.pk)


def confirm_member_page(request, member: Member, template: str, context: dict, start, what: str):
    """A dangerous operation on one member: its page says what is at risk (`context`), and the
    mirror's name typed there starts the job (start(confirm))."""
    return form_page(
        request,
        forms.ConfirmForm(member.mirror, data=posted(request)),
        template,
        {"mirror": member.mirror, "member": member, **context},
        lambda data: start(data["confirm"]),
        what,
    )


def back_to(request, member) -> str:
    """The page a member's button was on when the rules refuse: its Mirror Monitor, else the
    mirror page."""
    page = "mirror-monitor" if request.POST.get("back") == "monitor" else "mirror-detail"
    return reverse(page, args=[member.mirror.name])
