"""What the collector (monitor/collector.py) keeps of the live mirrors: each member's latest
state as its agent streams it, the history of what changed, lag and rate samples for the charts,
the alerts, and the lease that lets only one collector write at a time (docs/monitor.md)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class MemberState(models.Model):
    """A member as its agent last streamed it (guide §5.1.1): one row per member, rewritten."""

    member = models.OneToOneField(
        "members.Member", on_delete=models.CASCADE, related_name="live", primary_key=True
    )
    # the agent's stream could be followed: False = agent unreachable, the status is stale
    agent_reachable = models.BooleanField(default=True)
    status = models.CharField(max_length=32, blank=True)
    journal_transfer = models.CharField(max_length=64, blank=True)
    dejournaling = models.CharField(max_length=64, blank=True)
    transfer_lag_s = models.FloatField(null=True, blank=True)
    dejournal_lag_s = models.FloatField(null=True, blank=True)
    # the rest of the member's record (rates, databases, missing report, pending members, ...)
    record = models.JSONField(default=dict)
    seen_at = models.DateTimeField()
    changed_at = models.DateTimeField()

    class Meta:
        verbose_name = "live member state"

    def __str__(self):
        return f"{self.member}: {self.status}"


class Event(models.Model):
    """One change the collector saw, or a job that started or ended: the mirror's history."""

    STATUS = "status"
    TROUBLE = "trouble"
    JOURNAL_TRANSFER = "journal_transfer"
    DEJOURNALING = "dejournaling"
    DATABASE = "database"
    PENDING = "pending_member"
    DN_UPDATE = "dn_update"
    CERTIFICATE = "certificate"
    FAILOVER_MODE = "failover_mode"
    ARBITER = "arbiter"
    TAKEOVER = "takeover"
    AGENT = "agent"
    JOB = "job"
    ALERT = "alert"
    KINDS = [
        (STATUS, "Member status"),
        (TROUBLE, "Trouble state"),
        (JOURNAL_TRANSFER, "Journal transfer"),
        (DEJOURNALING, "Dejournaling"),
        (DATABASE, "Database status"),
        (PENDING, "Pending member"),
        (DN_UPDATE, "DN update"),
        (CERTIFICATE, "Certificate"),
        (FAILOVER_MODE, "Failover mode"),
        (ARBITER, "Arbiter link"),
        (TAKEOVER, "Takeover"),
        (AGENT, "Agent link"),
        (JOB, "Job"),
        (ALERT, "Alert"),
    ]

    mirror = models.ForeignKey(
        "members.Mirror", null=True, on_delete=models.SET_NULL, related_name="events"
    )
    mirror_name = models.CharField(max_length=15, db_index=True)
    member_name = models.CharField(max_length=32, blank=True, db_index=True)
    kind = models.CharField(max_length=20, choices=KINDS, db_index=True)
    before = models.CharField(max_length=200, blank=True)
    after = models.CharField(max_length=200, blank=True)
    text = models.CharField(max_length=300)
    job = models.ForeignKey("tasks.Job", null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%H:%M:%S} {self.mirror_name} {self.text}"


class Sample(models.Model):
    """Lag and incoming journal rate of a member at one moment, for the last hour's charts."""

    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(db_index=True)
    transfer_lag_s = models.FloatField(null=True)
    dejournal_lag_s = models.FloatField(null=True)
    network_kb_s = models.FloatField(null=True)
    journal_kb_s = models.FloatField(null=True)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["member", "at"])]

    def __str__(self):
        return f"{self.member_id} at {self.at:%H:%M:%S}"


class Alert(models.Model):
    """A rule that fired (monitor/alerts.py). One open alert per key: the same trouble seen again
    is the same alert, so a webhook hears about it once."""

    MEMBER_DOWN = "member_down"
    BACKUP_NOT_ACTIVE = "backup_not_active"
    ASYNC_LAG = "async_lag"
    ARBITER_LOST = "arbiter_lost"
    TROUBLE = "trouble"
    TAKEOVER = "takeover"
    CERTIFICATE = "certificate_expiring"
    DRIFT = "drift"
    RULES = [
        (MEMBER_DOWN, "Member down"),
        (BACKUP_NOT_ACTIVE, "Backup not Active"),
        (ASYNC_LAG, "Async lag"),
        (ARBITER_LOST, "Arbiter link lost"),
        (TROUBLE, "Primary in trouble"),
        (TAKEOVER, "Takeover"),
        (CERTIFICATE, "Certificate expiring"),
        (DRIFT, "Setting drift"),
    ]

    mirror = models.ForeignKey("members.Mirror", on_delete=models.CASCADE, related_name="alerts")
    member_name = models.CharField(max_length=32, blank=True)
    rule = models.CharField(max_length=24, choices=RULES)
    key = models.CharField(max_length=120, help_text="rule:mirror:member (or setting)")
    text = models.CharField(max_length=300)
    opened_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # webhook delivery: when every configured receiver took it, and the tries so far
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    delivery_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(resolved_at=None), name="alert_one_open_per_key"
            )
        ]

    def __str__(self):
        return f"{self.key} ({'open' if self.resolved_at is None else 'resolved'})"

    @property
    def is_open(self):
        return self.resolved_at is None


class Lease(models.Model):
    """Who may collect: a collector writes only while it holds the lease (its epoch is the
    fencing token checked in every write), and renews it; another takes over when it lapses."""

    name = models.CharField(max_length=32, primary_key=True)
    holder = models.CharField(max_length=120)
    epoch = models.PositiveBigIntegerField(default=0)
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name}: {self.holder} (epoch {self.epoch})"
