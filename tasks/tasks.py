"""Celery tasks: load the job row, run its handler, write the outcome back. Nothing else."""

import logging

from celery import shared_task

from tasks import services
from tasks.errors import JobCancelled, PermanentJobError, TransientJobError
from tasks.jobs import HANDLERS
from tasks.models import Job
from tasks.runner import JobRun

log = logging.getLogger(__name__)
MAX_RETRIES = 3


@shared_task(bind=True, max_retries=MAX_RETRIES)
def run_job(self, job_id: int):
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.is_final or not services.mark_running(job):
        return
    try:
        result = HANDLERS[job.kind](JobRun(job))
    except TransientJobError as exc:
        if self.request.retries < MAX_RETRIES:
            delay = 2**self.request.retries
            services.report(job, f"{exc} — retrying in {delay} s")
            raise self.retry(countdown=delay) from exc
        services.finish_job(job, error=f"{exc} (gave up after {MAX_RETRIES} retries)")
    except JobCancelled as exc:
        services.finish_job(job, error=str(exc), state=Job.CANCELLED)
    except PermanentJobError as exc:
        services.finish_job(job, error=str(exc))
    except Exception as exc:  # an unexpected bug must still end the job, not leave it running
        log.exception("job %s crashed", job_id)
        services.finish_job(job, error=f"Unexpected error: {exc.__class__.__name__}: {exc}")
    else:
        services.finish_job(job, result=result)
