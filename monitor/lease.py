"""One collector at a time: a lease row in the portal's database (works the same on SQLite and
PostgreSQL). The holder renews it every second; when it lapses (the holder died or hung),
another collector takes it with the next epoch. Every write a collector makes first renews the
lease *in the same transaction* with its epoch as a fencing token, so a collector that lost the
lease without noticing cannot write after the new holder started: no event doubled or lost."""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from monitor.models import Lease

NAME = "collector"


class LeaseLost(Exception):
    """This collector no longer holds the lease: stop writing."""


def acquire(holder: str, ttl_s: float) -> int | None:
    """The epoch under which `holder` now collects, or None while another holds a live lease."""
    now = timezone.now()
    expires = now + timedelta(seconds=ttl_s)
    current = Lease.objects.filter(name=NAME).first()
    if current is None:
        try:
            with transaction.atomic():
                Lease.objects.create(
                    name=NAME, holder=holder, epoch=1, expires_at=expires, acquired_at=now
                )
        except IntegrityError:  # another collector created it first
            return None
        return 1
    if current.holder == holder and current.expires_at > now:
        return current.epoch if renew(holder, current.epoch, ttl_s) else None
    if current.expires_at > now:
        return None
    # compare-and-set on the epoch: of two collectors seeing the lapsed lease, one wins
    taken = Lease.objects.filter(name=NAME, epoch=current.epoch).update(
        holder=holder, epoch=current.epoch + 1, expires_at=expires, acquired_at=now
    )
    return current.epoch + 1 if taken else None


def renew(holder: str, epoch: int, ttl_s: float) -> bool:
    now = timezone.now()
    return bool(
        Lease.objects.filter(name=NAME, holder=holder, epoch=epoch, expires_at__gt=now).update(
            expires_at=now + timedelta(seconds=ttl_s)
        )
    )


def fence(holder: str, epoch: int, ttl_s: float) -> None:
    """Inside a write transaction: renew, or raise LeaseLost (and roll the writes back)."""
    if not renew(holder, epoch, ttl_s):
        raise LeaseLost(f"{holder} lost the collector lease (epoch {epoch})")


def release(holder: str, epoch: int) -> None:
    """Give the lease up at once on a clean stop, so a standby need not wait for it to lapse."""
    Lease.objects.filter(name=NAME, holder=holder, epoch=epoch).update(expires_at=timezone.now())
