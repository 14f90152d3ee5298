"""Writing the monitor's rows. Every write of the collector goes through here, inside one
transaction per batch, fenced by the collector's lease (monitor/lease.py)."""

from __future__ import annotations

from django.utils import timezone

from monitor.models import Event

TEXT_MAX = 300


def add_event(mirror, kind: str, text: str, **fields) -> Event:
    """One line of the history (call it inside the transaction that makes the change)."""
    event = new_event(mirror, kind, text, **fields)
    event.save()
    return event


def new_event(
    mirror,
    kind: str,
    text: str,
    *,
    member_name: str = "",
    before: str = "",
    after: str = "",
    job=None,
    at=None,
) -> Event:
    """An unsaved line of the history, for writing many at once (Event.objects.bulk_create)."""
    return Event(
        mirror=mirror,
        mirror_name=mirror.name if mirror is not None else "",
        member_name=member_name,
        kind=kind,
        before=(before or "")[:200],
        after=(after or "")[:200],
        text=text[:TEXT_MAX],
        job=job,
        at=at or timezone.now(),
    )
