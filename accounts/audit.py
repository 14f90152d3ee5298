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
    """`actor` is the user who asked, or a text naming who else made the change (a member, when
    a refresh records what changed on the members)."""
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    name = actor.get_username() if authenticated else ""
    if isinstance(actor, str):
        name = actor
    return AuditEvent.objects.create(
        actor=actor if authenticated else None,
        actor_name=name[:150],
        action=action,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk or (before or {}).get("id", "")),
        object_repr=str(obj)[:200],
        before=before,
        after=after,
    )
