"""Writing audit events. Services call `record` inside their transaction, so an event exists
exactly when its change does."""

import json

from django.core.serializers.json import DjangoJSONEncoder

from accounts.models import AuditEvent

# Secrets never reach the audit trail.
_HIDDEN = {"credential", "password", "key_hash"}


def snapshot(obj, *, exclude=()) -> dict:
    """A JSON-safe picture of a model instance's own columns (foreign keys as ids)."""
    skip = {*_HIDDEN, *exclude}
    data = {
        field.name: getattr(obj, field.attname)
        for field in obj._meta.concrete_fields
        if field.name not in skip
    }
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder, default=str))


def record(actor, action: str, obj, *, before=None, after=None) -> AuditEvent:
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else "",
        action=action,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk or (before or {}).get("id", "")),
        object_repr=str(obj)[:200],
        before=before,
        after=after,
    )
