import hashlib
import secrets

from django.conf import settings
from django.db import models

from accounts.roles import ROLES

TOKEN_PREFIX = "mp_"


def hash_token(raw: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiToken(models.Model):
    """A token a user creates for scripts. Only its hash is kept; the secret is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(
        max_length=12, editable=False, help_text="First characters, to tell tokens apart."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self):
        return self.revoked_at is None


class AuditEvent(models.Model):
    """Who changed what, when, with the object before and after the change."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True, help_text="e.g. mirror.create")
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action}"


class MirrorRole(models.Model):
    """A role a user holds on one mirror only, on top of their portal-wide role.

    A user's role on a mirror is the stronger of the two; a user with no portal-wide role sees
    only the mirrors they hold a role on (docs/access.md).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mirror_roles"
    )
    mirror = models.ForeignKey("members.Mirror", on_delete=models.CASCADE, related_name="roles")
    role = models.CharField(max_length=16, choices=[(role, role) for role in ROLES])
    granted_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["mirror_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "mirror"], name="one_role_per_user_and_mirror")
        ]

    def __str__(self):
        return f"{self.role} on mirror {self.mirror_id}"
