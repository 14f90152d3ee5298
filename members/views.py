"""Mirror and host pages. Views parse, check the role, call one service or action and render;
an operation on the members starts its job and shows it. Operators run operations, admins change
configuration and decide on members (as in the API). A dangerous operation first shows what is
at risk and goes ahead only with the mirror's name typed (members.actions.check_confirmed)."""

from functools import partial
from urllib.parse import urlencode

from django import forms as django_forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required, operator_required, viewer_required
from accounts.roles import ADMIN, OPERATOR, has_role
from engine import rules as catalog
from members import actions, failover_actions, failover_buttons, forms, rules
from members.health import mirror_health
from members.models import (
    DatabaseCopy,
    Draft,
    Host,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)
from members.operations import app_credentials
from tasks.models import Job

PAGE_SIZE = 50
RECENT_JOBS = 10
COPY_PAUSED = "Dejournaling Stopped"  # a copy's status once dejournaling stopped (guide §5.1.1.3)


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


@viewer_required
def mirror_detail(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    members = list(mirror.members.select_related("host"))
    databases = list(mirror.databases.all())
    copies = list(DatabaseCopy.objects.filter(database__mirror=mirror).select_related("database"))
    statuses = {(copy.database_id, copy.member_id): copy.status for copy in copies}
    can_operate = has_role(request.user, OPERATOR)
    for member in members:
        member.switches = _switches(mirror, member, copies) if can_operate else []
        member.switches += failover_buttons.failover_switches(mirror, member) if can_operate else []
        member.can_force = failover_buttons.can_force(member)
        member.can_promote = failover_actions.can_promote(member)
        member.can_demote = failover_actions.can_demote(member)
    chosen = next((m for m in members if m.name == request.GET.get("member", "").upper()), None)
    context = {
        "mirror": mirror,
        "can_operate": can_operate,
        "can_admin": has_role(request.user, ADMIN),
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


def _data(request):
    return request.POST if request.method == "POST" else None


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


def _member(name, pk) -> Member:
    return get_object_or_404(
        Member.objects.select_related("mirror", "host"), pk=pk, mirror__name=name.upper()
    )


@admin_required
@require_POST
def authorize_member(request, name, pk):
    member = _member(name, pk)
    started = _start(
        request,
        lambda: actions.authorize_member(request.user, member),
        f"Authorizing {member.name} on the primary",
    )
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


@viewer_required
def host_detail(request, pk):
    host = get_object_or_404(Host, pk=pk)
    now = timezone.now()
    instances = list(host.instances.all())
    for found in instances:
        found.expiry, found.expiry_level = _expiry(found.certificate_not_after, now)
        found.type_label = dict(rules.MEMBER_TYPES).get(found.member_type, found.member_type)
    context = {
        "host": host,
        "instances": instances,
        "members": host.members.select_related("mirror").order_by("mirror__name", "name"),
        "can_operate": has_role(request.user, OPERATOR),
    }
    return render(request, "members/host_detail.html", context)


def _expiry(not_after, now) -> tuple[str, str]:
    """A certificate's days left in words, and how urgent: bad when expired or under 14 days,
    warn under 30, ok otherwise."""
    if not_after is None:
        return "", ""
    days = (not_after - now).days
    level = "bad" if days < 14 else "warn" if days < 30 else "ok"
    if days < 0:
        return f"Expired {-days} day{pluralize(-days)} ago", level
    return f"{days} day{pluralize(days)} left", level


# --- Operations from the mirror page -----------------------------------------------------------
def _form_page(request, form, template: str, context: dict, start, what: str):
    """An operation's page: GET shows the form; a POST the form and the rules accept starts
    the job and shows it, else the page comes back with the reasons."""
    if request.method == "POST":
        started = _submit(request, form, start, what)
        if started:
            return started
    return render(request, f"members/{template}", {"form": form, **context})


@admin_required
def edit_settings(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.MirrorSettingsForm(mirror, data=_data(request))
    return _form_page(
        request,
        form,
        "mirror_settings.html",
        {"mirror": mirror},
        lambda _: actions.edit_mirror(request.user, mirror, **form.changes()),
        f"New settings for {mirror.name}",
    )


@admin_required
def join_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.JoinForm(mirror, data=_data(request))
    return _form_page(
        request,
        form,
        "mirror_join.html",
        {"mirror": mirror},
        lambda _: actions.join_mirror(request.user, mirror, **form.arguments()),
        f"Joining {mirror.name}",
    )


@operator_required
def create_database(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.DatabaseForm(mirror, data=_data(request))
    return _form_page(
        request,
        form,
        "database_create.html",
        {"mirror": mirror},
        lambda _: actions.create_database(request.user, mirror, **form.arguments()),
        f"Adding a database to {mirror.name}",
    )


@admin_required
def member_addresses(request, name, pk):
    member = _member(name, pk)
    form = forms.MemberAddressForm(member, data=_data(request))
    return _form_page(
        request,
        form,
        "member_addresses.html",
        {"mirror": member.mirror, "member": member},
        lambda _: actions.update_member_address(request.user, member, **form.arguments()),
        f"New addresses of {member.name}",
    )


@operator_required
@require_POST
def switch_member(request, name, pk, operation):
    kind = operation.replace("-", "_")
    if kind not in failover_buttons.FAILOVER_SWITCHES and kind not in actions.MIRROR_SWITCHES:
        raise Http404("No such operation.")
    member = _member(name, pk)
    if kind in failover_buttons.FAILOVER_SWITCHES:
        service, label = failover_buttons.FAILOVER_SWITCHES[kind]
        start = partial(service, request.user, member)
    else:
        label = kind.replace("_", " ").capitalize()
        start = partial(actions.switch_member, request.user, member, kind)
    started = _start(request, start, f"{label} on {member.name}")
    return started or redirect(back_to(request, member))


def back_to(request, member) -> str:
    """The page a member's button was on when the rules refuse: its Mirror Monitor, else the
    mirror page."""
    page = "mirror-monitor" if request.POST.get("back") == "monitor" else "mirror-detail"
    return reverse(page, args=[member.mirror.name])


def _monitor(member) -> str:
    """The mirror page, showing `member`'s databases."""
    url = reverse("mirror-detail", args=[member.mirror.name])
    return f"{url}?{urlencode({'member': member.name})}#monitor-heading"


@operator_required
@require_POST
def act_on_copies(request, name, pk):
    """The databases table's action on the selected copies of one member."""
    member = _member(name, pk)
    form = forms.CopiesForm(member, data=request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect(_monitor(member))
    copies, action = list(form.cleaned_data["copies"]), form.cleaned_data["action"]
    names = ", ".join(c.database.name for c in copies)
    if action == "remove":  # dangerous: confirmed on its own page first
        query = urlencode([("copies", c.pk) for c in copies])
        return redirect(f"{reverse('copies-remove', args=[name, member.pk])}?{query}")
    if action == "catchup":  # several databases of one member: one job
        started = _start(
            request,
            lambda: actions.catchup_databases(
                request.user, member, [c.database.name for c in copies]
            ),
            f"Catching up {names} on {member.name}",
        )
        return started or redirect(_monitor(member))
    try:
        jobs = actions.copy_operations(request.user, copies, action)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_monitor(member))
    label = dict(forms.COPY_ACTIONS)[action]
    return _show_jobs(request, jobs, f"{label} {names} on {member.name}", _monitor(member))


# --- Dangerous operations: a page that says what is at risk, and the mirror's name typed -------
@admin_required
def reject_member(request, name, pk):
    member = _member(name, pk)
    form = forms.ConfirmForm(member.mirror, data=_data(request))
    return _form_page(
        request,
        form,
        "confirm_reject_member.html",
        {"mirror": member.mirror, "member": member},
        lambda data: actions.reject_member(request.user, member, confirm=data["confirm"]),
        f"Rejecting {member.name} on the primary",
    )


@admin_required
def remove_member(request, name, pk):
    member = _member(name, pk)
    form = forms.ConfirmForm(member.mirror, data=_data(request))
    copies = member.database_copies.select_related("database")
    return _form_page(
        request,
        form,
        "confirm_remove_member.html",
        {"mirror": member.mirror, "member": member, "copies": copies},
        lambda data: actions.remove_member(request.user, member, confirm=data["confirm"]),
        f"Removing {member.name} from {member.mirror.name}",
    )


@operator_required
def remove_copies(request, name, pk):
    member = _member(name, pk)
    chosen = [v for v in (request.POST or request.GET).getlist("copies") if v.isdigit()]
    copies = list(member.database_copies.select_related("database").filter(pk__in=chosen))
    if not copies:
        messages.error(request, "Select at least one database.")
        return redirect(_monitor(member))
    form = forms.RemoveCopiesForm(
        member, data=_data(request), initial={"copies": [c.pk for c in copies]}
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


@admin_required
def turn_tls_off(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    if not mirror.requires_tls:
        messages.info(request, f"{mirror.name} does not require TLS.")
        return redirect("mirror-detail", name=mirror.name)
    form = forms.ConfirmForm(mirror, data=_data(request))
    return _form_page(
        request,
        form,
        "confirm_tls_off.html",
        {"mirror": mirror, "members": mirror.members.all()},
        lambda data: actions.edit_mirror(
            request.user, mirror, requires_tls=False, confirm=data["confirm"]
        ),
        f"Turning TLS off on {mirror.name}",
    )


@admin_required
def remove_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.RemoveMirrorForm(mirror, data=_data(request))
    return _form_page(
        request,
        form,
        "confirm_remove_mirror.html",
        {"mirror": mirror, "members": mirror.members.all(), "databases": mirror.databases.all()},
        lambda data: actions.remove_mirror(request.user, mirror, **data),
        f"Removing the mirror {mirror.name} from its members",
    )


@admin_required
def forget_mirror(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = forms.ConfirmForm(mirror, data=_data(request))
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


# --- Application credentials of a member's instance (docs/hardening.md) -----------------------
class AppCredentialForm(django_forms.Form):
    name = django_forms.CharField(
        label="Application's credential name",
        max_length=64,
        help_text="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit: "
        "the application's name, say billing.",
    )


class RevokeAppCredentialForm(forms.ConfirmForm):
    name = django_forms.CharField(widget=django_forms.HiddenInput, max_length=64)


def _credentials_page(request, member, form=None, status=200):
    context = {
        "mirror": member.mirror,
        "member": member,
        "recorded": app_credentials.recorded(member),
        "can_operate": has_role(request.user, OPERATOR),
        "form": form or AppCredentialForm(),
        "jobs": Job.objects.filter(member=member, kind__in=app_credentials.KINDS)
        .select_related("requested_by")
        .defer("log", "result")[:RECENT_JOBS],
    }
    return render(request, "members/app_credentials.html", context, status=status)


def _credential_job(job) -> str:
    return reverse("app-credential-job", args=[job.member.mirror.name, job.member_id, job.pk])


@viewer_required
def app_credential_list(request, name, pk):
    """The credentials of the member's instance as it last answered; operators make, read and
    revoke them from here."""
    return _credentials_page(request, _member(name, pk))


@operator_required
@require_POST
def create_app_credential(request, name, pk):
    member = _member(name, pk)
    form = AppCredentialForm(data=request.POST)
    if form.is_valid():
        try:
            job = actions.create_app_credential(request.user, member, form.cleaned_data["name"])
        except ValidationError as exc:
            forms.show_refusal(form, exc)
        else:
            messages.info(request, f"Creating credential {job.params['name']}: job {job.pk}.")
            return redirect(_credential_job(job))
    return _credentials_page(request, member, form, status=400)


@operator_required
@require_POST
def read_app_credentials(request, name, pk):
    job = actions.list_app_credentials(request.user, _member(name, pk))
    messages.info(request, f"Reading the credentials of {job.member.name}: job {job.pk}.")
    return redirect(_credential_job(job))


@operator_required
def revoke_app_credential(request, name, pk):
    """Dangerous: the application is refused from then on; the mirror's name typed first."""
    member = _member(name, pk)
    credential = (request.POST or request.GET).get("name", "")
    form = RevokeAppCredentialForm(member.mirror, data=_data(request), initial={"name": credential})
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


@viewer_required
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


@operator_required
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
