"""Starting jobs, writing their progress, cancelling and retrying them. A job is a row first; the
Celery message carries only its id and is sent once the row is committed."""

from celery import current_app
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts import audit
from portal.exceptions import StateConflict
from tasks.models import Job

MAX_LOG_LINES = 500
# The task that runs every job (tasks/tasks.py), sent by name: the task module imports this one.
RUN_JOB = "tasks.tasks.run_job"


def dispatch(job_id: int) -> None:
    """Send the job to the workers (once its row is committed)."""
    current_app.send_task(RUN_JOB, args=[job_id])


def _target_fields(target) -> dict:
    if target is None:
        return {}
    return {
        "target_type": target._meta.model_name,
        "target_id": str(target.pk),
        "target_repr": str(target)[:200],
    }


@transaction.atomic
def start_job(
    actor, kind: str, target=None, *, params=None, mirror=None, member=None, send=True
) -> Job:
    """Queue `kind` on `target` with the operator's `params` (JSON); the audit trail records who
    asked for what, and the job's end records what the members answered. `send=False` leaves
    the running to the caller (run_here, for a command that has no worker)."""
    from tasks.jobs import HANDLERS  # the handlers import the apps that start jobs

    if kind not in HANDLERS:
        raise ValueError(f"unknown job kind {kind!r}")
    job = Job.objects.create(
        kind=kind,
        params=params or {},
        mirror=mirror,
        member=member,
        requested_by=actor if getattr(actor, "is_authenticated", False) else None,
        **_target_fields(target),
    )
    audit.record(actor, "job.start", job, after=audit.snapshot(job, exclude=["log"]))
    if send:
        transaction.on_commit(lambda: dispatch(job.pk))
    return job


def run_here(job: Job) -> Job:
    """Run a job started with dispatch=False in this process, as the worker would (a management
    command, where no worker runs yet); returns it final."""
    current_app.loader.import_default_modules()  # the task modules, as a worker loads them
    current_app.tasks[RUN_JOB].apply(args=[job.pk])
    job.refresh_from_db()
    return job


@transaction.atomic
def retry_job(actor, job: Job) -> Job:
    """A failed or cancelled job again, as a new row with the same kind, target and params."""
    if job.state not in (Job.FAILED, Job.CANCELLED):
        raise StateConflict("Only a failed or cancelled job can be retried.", code="not_retryable")

    again = Job.objects.create(
        kind=job.kind,
        target_type=job.target_type,
        target_id=job.target_id,
        target_repr=job.target_repr,
        params=job.params,
        mirror_id=job.mirror_id,
        member_id=job.member_id,
        retry_of=job,
        requested_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record(actor, "job.retry", again, after=audit.snapshot(again, exclude=["log"]))
    transaction.on_commit(lambda: dispatch(again.pk))
    return again


@transaction.atomic
def cancel_job(actor, job: Job) -> Job:
    """A queued job ends at once; a running one stops at its next wait (a download, a catch-up,
    a member's status) and ends cancelled. A job already final is a conflict."""
    queued = Job.objects.filter(pk=job.pk, state=Job.QUEUED).update(
        state=Job.CANCELLED, cancel_requested=True, finished_at=timezone.now(), error="Cancelled."
    )
    if not queued:
        running = Job.objects.filter(pk=job.pk, state=Job.RUNNING).update(cancel_requested=True)
        if not running:
            raise StateConflict("This job has already ended.", code="job_final")
    job.refresh_from_db()
    audit.record(actor, "job.cancel", job, after={"state": job.state})
    return job


def mark_running(job: Job) -> bool:
    """Claim a queued job; False when it is gone or already final (a duplicate delivery)."""
    claimed = Job.objects.filter(pk=job.pk, state__in=[Job.QUEUED, Job.RUNNING]).update(
        state=Job.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    return bool(claimed)


def report(job: Job, message: str, *, progress: int | None = None) -> None:
    """Append a log line (and move progress forward) on the row, where pages and the API read it."""
    line = {"at": timezone.now().isoformat(timespec="milliseconds"), "message": message}
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        locked.log = (locked.log + [line])[-MAX_LOG_LINES:]
        fields = ["log"]
        if progress is not None:
            locked.progress = max(locked.progress, min(100, max(0, progress)))
            fields.append("progress")
        locked.save(update_fields=fields)
    job.log, job.progress = locked.log, locked.progress


def cancel_requested(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()


@transaction.atomic
def finish_job(job: Job, *, result=None, error: str = "", state: str | None = None) -> None:
    state = state or (Job.FAILED if error else Job.SUCCEEDED)
    updates = {"state": state, "finished_at": timezone.now(), "error": error, "result": result}
    if state == Job.SUCCEEDED:
        updates["progress"] = 100
    Job.objects.filter(pk=job.pk).update(**updates)
    job.refresh_from_db()
    # The members' answer, beside the request's job.start event.
    outcome = {"state": state, "error": error, "result": result}
    audit.record(job.requested_by, "job.finish", job, after=outcome)


__all__ = [
    "start_job",
    "run_here",
    "retry_job",
    "cancel_job",
    "mark_running",
    "report",
    "cancel_requested",
    "finish_job",
]
