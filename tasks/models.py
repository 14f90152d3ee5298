from django.conf import settings
from django.db import models


class Job(models.Model):
    """A background operation. The row exists before the Celery message and holds the truth:
    state, progress, log lines and the outcome."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STATES = [
        (QUEUED, "Queued"),
        (RUNNING, "Running"),
        (SUCCEEDED, "Succeeded"),
        (FAILED, "Failed"),
        (CANCELLED, "Cancelled"),
    ]
    FINAL_STATES = {SUCCEEDED, FAILED, CANCELLED}

    kind = models.CharField(max_length=40, db_index=True)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    # What the operator asked, as the handler reads it (names, settings, flags).
    params = models.JSONField(default=dict, blank=True)
    # For listing a mirror's or a member's jobs; kept (null) when the record is forgotten.
    mirror = models.ForeignKey(
        "members.Mirror", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    member = models.ForeignKey(
        "members.Member", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    cancel_requested = models.BooleanField(default=False)
    state = models.CharField(max_length=12, choices=STATES, default=QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="job_progress_at_most_100"
            )
        ]

    def __str__(self):
        return f"{self.kind} #{self.pk} ({self.state})"

    @property
    def is_final(self):
        return self.state in self.FINAL_STATES
