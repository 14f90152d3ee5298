"""A mirror's databases from its pages (guide §4.8, §5.1.1.3): a database added to the mirror,
and the Mirror Monitor's action on several of one member's copies at once; removing copies is
dangerous and has its own confirmation page."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from members import actions, forms
from members.access import mirror_operator_required
from members.models import Mirror
from members.pages import form_page, member_or_404, posted, start_job_page


@mirror_operator_required
def create_database(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.DatabaseForm(mirror, data=posted(request))
    return form_page(
        request,
        form,
        "database_create.html",
        {"mirror": mirror},
        lambda _: actions.create_database(request.user, mirror, **form.arguments()),
        f"Adding a database to {mirror.name}",
    )


def _show_jobs(request, jobs, what: str, back: str):
    """One job: its page. Several: each linked in a message on the page they came from."""
    if len(jobs) == 1:
        messages.info(request, f"{what}: job {jobs[0].pk} started.")
        return redirect("job-detail", pk=jobs[0].pk)
    links = format_html_join(
        ", ", '<a href="{}">job {}</a>', ((reverse("job-detail", args=[j.pk]), j.pk) for j in jobs)
    )
    messages.info(request, format_html("{}: {} started.", what, links))
    return redirect(back)


def _monitor(member, request=None) -> str:
    """The page the databases were chosen on: the Mirror Monitor (back=monitor), else the
    mirror page, showing `member`'s databases."""
    if request is not None and request.POST.get("back") == "monitor":
        return reverse("mirror-monitor", args=[member.mirror.name])
    url = reverse("mirror-detail", args=[member.mirror.name])
    return f"{url}?{urlencode({'member': member.name})}#monitor-heading"


@mirror_operator_required
@require_POST
def act_on_copies(request, name, pk):
    """The databases table's action on the selected copies of one member."""
    member = member_or_404(name, pk)
    form = forms.CopiesForm(member, data=request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect(_monitor(member, request))
    copies, action = list(form.cleaned_data["copies"]), form.cleaned_data["action"]
    names = ", ".join(c.database.name for c in copies)
    if action == "remove":  # dangerous: confirmed on its own page first
        query = urlencode([("copies", c.pk) for c in copies])
        return redirect(f"{reverse('copies-remove', args=[name, member.pk])}?{query}")
    if action == "catchup":  # several databases of one member: one job
        started = start_job_page(
            request,
            lambda: actions.catchup_databases(
                request.user, member, [c.database.name for c in copies]
            ),
            f"Catching up {names} on {member.name}",
        )
        return started or redirect(_monitor(member, request))
    try:
        jobs = actions.copy_operations(request.user, copies, action)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_monitor(member, request))
    label = dict(forms.COPY_ACTIONS)[action]
    return _show_jobs(request, jobs, f"{label} {names} on {member.name}", _monitor(member, request))


@mirror_operator_required
def remove_copies(request, name, pk):
    member = member_or_404(name, pk)
    chosen = [v for v in (request.POST or request.GET).getlist("copies") if v.isdigit()]
    copies = list(member.database_copies.select_related("database").filter(pk__in=chosen))
    if not copies:
        messages.error(request, "Select at least one database.")
        return redirect(_monitor(member))
    form = forms.RemoveCopiesForm(
        member, data=posted(request), initial={"copies": [c.pk for c in copies]}
    )
    if request.method == "POST" and form.is_valid():
        try:
            jobs = actions.copy_operations(
                request.user,
                form.cleaned_data["copies"],
                "remove",
                confirm=form.cleaned_data["confirm"],
            )
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            names = ", ".join(c.database.name for c in copies)
            return _show_jobs(request, jobs, f"Removing {names} on {member.name}", _monitor(member))
    context = {"mirror": member.mirror, "member": member, "copies": copies, "form": form}
    return render(request, "members/confirm_remove_copies.html", context)
