"""The wizard's pages: the drafts list, the steps (django-formtools' NamedUrlWizardView over a
Draft row), and the few buttons beside the steps (add a host, check hosts, read the members
again). Admin role: a new mirror is configuration, and its members need authorizing."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from formtools.wizard.views import NamedUrlWizardView

from accounts.decorators import admin_required
from engine import rules as catalog
from members import actions, services
from members.forms import show_refusal
from members.models import Draft, Host, Instance
from members.wizard import checklist, forms, steps
from tasks.models import Job

STEP_FORMS = [
    ("instances", forms.InstancesForm),
    ("certificates", forms.CertificatesForm),
    ("mirror", forms.MirrorForm),
    ("backup", forms.BackupForm),
    ("asyncs", forms.AsyncsForm),
    ("authorize", forms.AuthorizeForm),
    ("databases", forms.DatabasesForm),
    ("catchup", forms.CatchupForm),
    ("review", forms.ReviewForm),
]


def _choice(wizard) -> dict:
    """The instances step's answers as stored (stored only once valid). Not its cleaned data:
    cleaning builds the form, whose choices need these answers."""
    raw = wizard.storage.get_step_data("instances")
    if raw is None:
        return {}
    return {
        "primary": raw.get("instances-primary", ""),
        "backup": raw.get("instances-backup", ""),
        "asyncs": raw.getlist("instances-asyncs"),
        "tls": raw.get("instances-tls") == "on",
    }


def _chosen(wizard) -> list[Instance]:
    choice = _choice(wizard)
    pks = [choice.get("primary"), choice.get("backup"), *(choice.get("asyncs") or [])]
    found = Instance.objects.select_related("host").in_bulk([int(pk) for pk in pks if pk])
    return [found[int(pk)] for pk in pks if pk and int(pk) in found]


CONDITIONS = {
    "certificates": lambda w: bool(_choice(w).get("tls")),
    "backup": lambda w: bool(_choice(w).get("backup")),
    "asyncs": lambda w: bool(_choice(w).get("asyncs")),
    "authorize": lambda w: bool(_choice(w).get("tls")),
}


def _drafts(user):
    return Draft.objects.filter(owner=user, finished_at=None)


@method_decorator(admin_required, name="dispatch")
class MirrorWizard(NamedUrlWizardView):
    storage_name = "members.wizard.storage.DraftStorage"
    template_name = "members/wizard/step.html"

    def dispatch(self, request, *args, **kwargs):
        request.mirror_draft = get_object_or_404(_drafts(request.user), pk=kwargs["draft"])
        return super().dispatch(request, *args, **kwargs)

    def get_prefix(self, request, *args, **kwargs):
        return f"draft{kwargs['draft']}"

    def get_step_url(self, step):
        draft = self.request.mirror_draft.pk
        return reverse(self.url_name, kwargs={"draft": draft, "step": step})

    @property
    def extra(self) -> dict:
        return self.storage.extra_data

    # -- forms ---------------------------------------------------------------------------------
    def get_form_kwargs(self, step=None):
        step = step or self.steps.current
        mirror = steps.mirror_of(self.extra)
        if step == "instances":
            mine = {i.pk for i in _chosen(self)}
            known = Instance.objects.select_related("host").order_by("host__name", "name")
            free = [i for i in known if not i.member_name or i.pk in mine]
            reporting = [
                i for i in known if i.member_type in catalog.REPORTING_TYPES and i not in free
            ]
            return {"free": free, "reporting": reporting}
        if step == "certificates":
            return {"instances": _chosen(self)}
        if step == "asyncs":
            asyncs = {str(pk) for pk in _choice(self).get("asyncs") or []}
            return {"instances": [i for i in _chosen(self) if str(i.pk) in asyncs]}
        if step == "authorize":
            return {"members": list(mirror.members.order_by("name")) if mirror else []}
        if step == "catchup":
            restored = self.extra.get("restored", [])
            return {"copies": steps.copies_to_settle(mirror, restored) if mirror else []}
        return {}

    def get_form_initial(self, step):
        if step in ("mirror", "backup"):
            chosen = _choice(self).get("primary" if step == "mirror" else "backup")
            instance = Instance.objects.filter(pk=chosen or 0).first()
            return {"private": forms.suggest_private(instance)}
        return super().get_form_initial(step)

    # -- a valid step starts its jobs ----------------------------------------------------------
    def post(self, *args, **kwargs):
        try:
            with transaction.atomic():
                return super().post(*args, **kwargs)
        except StepRefused as refused:
            show_refusal(refused.form, refused.error)
            return self.render(refused.form)

    def process_step(self, form):
        step = self.steps.current
        if not steps.step_done(self.extra, step):
            try:
                steps.check_waits(self.extra, step)
                jobs = self._start(step, form)
            except ValidationError as exc:
                raise StepRefused(form, exc) from None
            if jobs is not None:
                steps.record(self.extra, step, jobs)
        return super().process_step(form)

    def _start(self, step: str, form) -> list[Job] | None:
        user, data = self.request.user, form.cleaned_data
        if step == "certificates":
            return steps.start_certificates(user, data, form.given())
        if step == "mirror":
            jobs = steps.start_mirror(user, data, _choice(self))
            self.extra["mirror"] = data["name"]
            self.request.mirror_draft.title = data["name"]
            return jobs
        mirror = steps.mirror_of(self.extra)
        if mirror is None and step in steps.NEEDS_MIRROR:  # a step posted out of turn
            raise ValidationError("Create the mirror first (step Create the mirror).", "no_mirror")
        if step == "backup":
            return steps.start_backup(user, mirror, data, _choice(self))
        if step == "asyncs":
            return steps.start_asyncs(user, mirror, form.types())
        if step == "authorize":
            return steps.start_authorize(user, mirror, data["members"])
        if step == "databases":
            self.extra["restored"] = data["existing_names"] if data["how"] == "restore" else []
            return steps.start_databases(user, mirror, data)
        if step == "catchup":
            return steps.start_catchup(user, mirror, data["copies"])
        return None

    def done(self, form_list, **kwargs):
        draft = self.request.mirror_draft
        draft.finished_at = timezone.now()
        draft.save(update_fields=["finished_at"])
        name = self.extra.get("mirror")
        messages.success(self.request, f"Mirror {name} is set up; its page shows it live.")
        return redirect("mirror-detail", name=name)

    # -- the page ------------------------------------------------------------------------------
    def get_context_data(self, form, **kwargs):
        context = super().get_context_data(form=form, **kwargs)
        current = self.steps.current
        shown = self.get_form_list()
        context.update(
            draft=self.request.mirror_draft,
            mirror=steps.mirror_of(self.extra),
            rail=[
                {
                    "key": key,
                    "title": steps.TITLES[key],
                    "done": steps.step_done(
                        self.extra, key, answered=self.storage.get_step_data(key) is not None
                    ),
                    "current": key == current,
                    "skipped": key not in shown,
                }
                for key in steps.ORDER
            ],
            title=steps.TITLES[current],
            intro=steps.INTROS[current],
            go_label=steps.GO_LABELS.get(current, "Next"),
            waiting_jobs=steps.jobs_of(self.extra, steps.WAITS_FOR.get(current, [])),
            own_jobs=steps.jobs_of(self.extra, [current]),
            hosts=Host.objects.order_by("name"),
            host_jobs=steps.jobs_of(self.extra, ["hosts"]),
            advanced=forms.ADVANCED,
            refreshed_steps=("instances", "authorize", "catchup"),
        )
        if current == "review":
            context.update(review_context(self.extra))
        return context


class StepRefused(Exception):
    def __init__(self, form, error: ValidationError):
        self.form, self.error = form, error


# --- beside the steps -------------------------------------------------------------------------
@admin_required
def start(request):
    """The drafts of this person, and a button for a new one."""
    if request.method == "POST":
        draft = Draft.objects.create(owner=request.user)
        return redirect("mirror-wizard", draft=draft.pk, step="instances")
    return render(request, "members/wizard/start.html", {"drafts": _drafts(request.user)})


@admin_required
@require_POST
def discard(request, draft):
    found = get_object_or_404(_drafts(request.user), pk=draft)
    found.delete()
    messages.info(request, "The draft is discarded; nothing on the members was undone.")
    return redirect("mirror-wizard-start")


def _draft_jobs(draft: Draft, key: str, jobs: list[Job], *, append: bool = False) -> None:
    steps.record(draft.state.setdefault("extra_data", {}), key, jobs, append=append)
    draft.save(update_fields=["state", "updated_at"])


@admin_required
@require_POST
def add_host(request, draft):
    """Register a host and check what runs there, without leaving the wizard."""
    found = get_object_or_404(_drafts(request.user), pk=draft)
    try:
        host = services.register_host(
            request.user,
            name=request.POST.get("name", "").strip(),
            address=request.POST.get("address", "").strip(),
            agent_port=request.POST.get("agent_port") or 0,
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        _draft_jobs(found, "hosts", [actions.check_host(request.user, host)], append=True)
        messages.info(request, f"Host {host.name} registered; asking its agent what runs there.")
    return redirect("mirror-wizard", draft=found.pk, step="instances")


@admin_required
@require_POST
def check_hosts(request, draft):
    found = get_object_or_404(_drafts(request.user), pk=draft)
    jobs = [actions.check_host(request.user, host) for host in Host.objects.order_by("name")]
    _draft_jobs(found, "hosts", jobs)
    return redirect("mirror-wizard", draft=found.pk, step="instances")


def review_context(extra: dict) -> dict:
    """The latest review job of a draft and, once it succeeded, its checklist."""
    job = next(reversed(steps.jobs_of(extra, ["review"])), None)
    mirror = steps.mirror_of(extra)
    lines = None
    if job is not None and job.state == Job.SUCCEEDED and mirror is not None:
        arbiter = f"{mirror.arbiter_host}:{mirror.arbiter_port}" if mirror.arbiter_host else ""
        lines = checklist.review(job.result or {}, arbiter=arbiter)
    return {"review_job": job, "lines": lines}


@admin_required
@require_POST
def review_again(request, draft):
    """Ask the members again; the page polls the job and then fetches the checklist."""
    found = get_object_or_404(_drafts(request.user), pk=draft)
    mirror = steps.mirror_of(found.state.get("extra_data", {}))
    if mirror is None:
        return JsonResponse({"error": "The mirror is not created yet."}, status=409)
    jobs = steps.start_review(request.user, mirror)
    _draft_jobs(found, "review", jobs)
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"job": jobs[0].pk}, status=202)
    return redirect("mirror-wizard", draft=found.pk, step="review")


@admin_required
def review_lines(request, draft):
    """The checklist of the draft's latest review (the page fetches it when the job ends)."""
    found = get_object_or_404(_drafts(request.user), pk=draft)
    context = review_context(found.state.get("extra_data", {}))
    return render(request, "members/wizard/checklist.html", context)
