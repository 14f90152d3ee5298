"""Starting jobs and writing their progress. A job is a row first; the Celery message carries
only its id and is sent once the row is committed."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts import audit
from tasks.models import Job

MAX_LOG_LINES = 500


@transaction.atomic
def start_job(actor, kind: str, target=None) -> Job:
    from tasks.jobs import HANDLERS
    from tasks.tasks import run_job

    if kind not in HANDLERS:
        raise ValueError(f"unknown job kind {kind!r}")
    job = Job.objects.create(
        kind=kind,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        requested_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record(actor, "job.start", job, after=audit.snapshot(job, exclude=["log"]))
    transaction.on_commit(lambda: run_job.delay(job.pk))
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


def finish_job(job: Job, *, result=None, error: str = "") -> None:
    state = Job.FAILED if error else Job.SUCCEEDED
    updates = {"state": state, "finished_at": timezone.now(), "error": error, "result": result}
    if not error:
        updates["progress"] = 100
    Job.objects.filter(pk=job.pk).update(**updates)
    job.refresh_from_db()


__all__ = ["start_job", "mark_running", "report", "finish_job"]
