"""Celery tasks: load the job row, run its handler, write the outcome back. Nothing else."""

import logging

from celery import shared_task

from tasks import services
from tasks.errors import PermanentJobError, TransientJobError
from tasks.jobs import HANDLERS
from tasks.models import Job

log = logging.getLogger(__name__)
MAX_RETRIES = 3


@shared_task(bind=True, max_retries=MAX_RETRIES)
def run_job(self, job_id: int):
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.is_final or not services.mark_running(job):
        return
    try:
        result = HANDLERS[job.kind](job)
    except TransientJobError as exc:
        if self.request.retries < MAX_RETRIES:
            services.report(job, f"{exc} — retrying")
            raise self.retry(countdown=min(2**self.request.retries, 30)) from exc
        services.finish_job(job, error=str(exc))
    except PermanentJobError as exc:
        services.finish_job(job, error=str(exc))
    except Exception as exc:  # an unexpected bug must still end the job, not leave it running
        log.exception("job %s crashed", job_id)
        services.finish_job(job, error=f"Unexpected error: {exc.__class__.__name__}: {exc}")
    else:
        services.finish_job(job, result=result)
