"""What every operation handler shares: finding the members' agents, bounded waits on what the
members report, and the refresh that ends each operation by recording what the members answer
(never what was asked)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import IntegrityError, OperationalError

from members import reconcile, sync
from members.agents import open_agent, refusals
from members.models import Host, Member, Mirror
from tasks.errors import PermanentJobError, TransientJobError


def wait_s(run) -> float:
    """The job's bound on each wait: params["timeout_s"] (1 s - 1 h), else the setting."""
    value = run.params.get("timeout_s", settings.PORTAL_JOB_WAIT_S)
    return float(min(3600, max(1, value)))


def mirror_of(run) -> Mirror:
    mirror = run.job.mirror
    if mirror is None:
        raise PermanentJobError("The mirror is no longer registered in the portal.")
    return mirror


def member_of(run) -> Member:
    member = run.job.member
    if member is None:
        raise PermanentJobError("The member is no longer registered in the portal.")
    return member


def host_of(run, key: str = "host") -> Host:
    host = Host.objects.filter(pk=run.params.get(key)).first()
    if host is None:
        raise PermanentJobError("The host is no longer registered in the portal.")
    return host


class Where:
    """An instance's agent and name: where to send an operation for a member."""

    def __init__(self, instance):
        self.seen = instance  # the Instance row, as its agent last reported it
        self.instance = instance.name
        self.host = instance.host
        self.agent = open_agent(instance.host)

    def __enter__(self) -> Where:
        return self

    def __exit__(self, *exc) -> None:
        self.agent.close()


def where(mirror: str, member: str) -> Where:
    found = sync.locate(mirror, member)
    if found is None:
        sync.rediscover_all()
        found = sync.locate(mirror, member)
    if found is None:
        raise PermanentJobError(
            f"Member {member} of {mirror} runs on no registered host: register its host first."
        )
    return Where(found)


def read(mirror: Mirror) -> sync.MirrorView:
    """The mirror as its members report it, read through the first member that answers."""
    problems = []
    members = sorted(mirror.members.all(), key=lambda m: m.status != "Primary")
    for member in members:
        found = sync.locate(mirror.name, member.name)
        if found is None:
            continue
        try:
            return sync.read_mirror(found.host, found.name, mirror.name)
        except Exception as exc:  # noqa: BLE001 - try the next member
            problems.append(f"{member.name}: {exc}")
    raise PermanentJobError(
        f"No member of {mirror.name} answered: {'; '.join(problems) or 'none is located'}."
    )


def primary(mirror: Mirror) -> Where:
    view = read(mirror)
    if not view.primary:
        raise PermanentJobError(f"Mirror {mirror.name} has no primary right now.")
    return where(mirror.name, view.primary)


RECORD_ATTEMPTS = 3
# PostgreSQL's deadlock_detected, serialization_failure and lock_not_available; SQLite's
# "database is locked"
LOCK_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def lost_a_lock(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in LOCK_SQLSTATES or "database is locked" in str(exc)


def refresh(run, mirror: Mirror | None, *, adopt=False, view=None) -> dict:
    """Record what the members say now (or what `view` says); each change is a log line."""
    view = view or read(mirror)
    for attempt in range(RECORD_ATTEMPTS):
        try:
            mirror, changes = reconcile.record_observed_mirror(view, adopt_settings=adopt)
            break
        except IntegrityError:  # another job recorded the same new rows first: read again
            raise TransientJobError(
                f"another job recorded mirror {view.name} at the same moment; reading it again"
            ) from None
        except OperationalError as exc:
            # the database chose this transaction to end a deadlock, or a lock wait timed out:
            # it was rolled back whole, and recording the same answers again is harmless
            if not lost_a_lock(exc) or attempt == RECORD_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    for line in changes:
        run.step(line)
    unreached = [f"{m.name}: {m.problem}" for m in view.members if m.problem]
    for line in unreached:
        run.step(f"not reached: {line}")
    return {
        "mirror": mirror.name,
        "primary": view.primary,
        "members": {m.name: m.status for m in view.members},
        "changes": changes,
        "unreached": unreached,
    }


def member_status(place: Where, mirror: str) -> tuple[str, list[dict]]:
    """The member's status and its database rows, as its agent answers now."""
    with refusals(f"{place.instance} on {place.host.name}"):
        answer = place.agent.databases(place.instance, mirror=mirror)
    return answer.get("status") or "", answer.get("databases", [])


WANTED_STATUS = {"failover": "Backup"}  # an async is "Connected" (guide §5.1.1.1)


def wait_connected(run, place: Where, mirror: str, member_type: str, progress=(60, 95)) -> str:
    """Wait until the member is Backup (failover) or Connected (async)."""
    want = WANTED_STATUS.get(member_type, "Connected")

    def poll():
        status, _ = member_status(place, mirror)
        return status == want, status or "no status yet"

    run.wait(poll, what=f"{place.instance} to be {want}", timeout=wait_s(run), progress=progress)
    return want
