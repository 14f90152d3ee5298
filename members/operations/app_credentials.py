"""Application credentials of a member's instance (docs/hardening.md, "Application credentials
in the portal"): made, listed and revoked through the instance's agent
(engine/agent/app_credentials.py). Each job ends with the list as the instance answers it —
names and creation times, never secrets — and that answer, in the job's result, is what the
portal shows (`last_read`): the instance is the truth, the portal keeps no credential rows.

A new credential's secret is in the agent's answer only. The job seals it at once with the keys
of the secrets at rest (portal/crypto.py) into its own row, `params["secret_sealed"]` — never
into its result, which the audit trail's job.finish copies, nor into a log line — and the
operator who asked takes it once (`take_secret`, through members.actions), which erases it from
the row. Not taken within REVEAL_WITHIN, it is erased unread (`erase_expired_secrets`).
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.fernet import InvalidToken
from django.utils import timezone

from accounts import audit
from members.agents import refusals
from members.models import Member
from members.operations.base import Where, member_of, mirror_of, where
from portal import crypto
from tasks.errors import JobError
from tasks.models import Job

SECRET = "secret_sealed"
REVEAL_WITHIN = timedelta(hours=1)
LIST, CREATE, REVOKE = "list_app_credentials", "create_app_credential", "revoke_app_credential"
KINDS = (LIST, CREATE, REVOKE)


def _read(place: Where) -> dict:
    with refusals(f"Application credentials of {place.instance} on {place.host.name}"):
        answer = place.agent.app_credentials(place.instance)
    rows = answer.get("credentials") or []
    return {
        "credentials": [{"name": r.get("name"), "created": r.get("created")} for r in rows],
        "auth": answer.get("auth"),
        "mode": answer.get("mode"),
    }


def _read_after_change(run, place: Where) -> dict:
    """The list once the instance has made the change: a failure to read it now must neither
    fail the job nor have it run again (the change is made), so it is only said."""
    try:
        listed = _read(place)
    except JobError as exc:
        run.step(f"The list could not be read afterwards: {exc}")
        return {"credentials": None}
    _say(run, place, listed)
    return listed


def _say(run, place: Where, listed: dict) -> None:
    names = ", ".join(c["name"] for c in listed["credentials"]) or "none"
    run.step(
        f"{place.instance} on {place.host.name} holds: {names} "
        f"(authentication {listed['auth']}, mode {listed['mode']})",
        progress=90,
    )


def _result(member: Member, place: Where, **fields) -> dict:
    return {"member": member.name, "instance": place.instance, "host": place.host.name, **fields}


def _audit(run, action: str, member: Member, place: Where, name: str, **more) -> None:
    """The change as the instance confirmed it, by who asked: the credential's name, never its
    secret."""
    after = {"credential": name, "instance": place.instance, "host": place.host.name}
    audit.record(run.job.requested_by, action, member, after={**after, "job": run.job.pk, **more})


# --- Job handlers -----------------------------------------------------------------------------
def list_app_credentials(run):
    member, mirror = member_of(run), mirror_of(run)
    with where(mirror.name, member.name) as place:
        listed = _read(place)
        _say(run, place, listed)
    return _result(member, place, **listed)


def create_app_credential(run):
    """The instance makes the credential; its secret is sealed on this job's row at once."""
    member, mirror = member_of(run), mirror_of(run)
    name = run.params["name"]
    if SECRET in run.params:  # run again (a worker lost mid-way): that secret cannot be shown
        run.params = {k: v for k, v in run.params.items() if k != SECRET}
        run.job.params = run.params
        run.job.save(update_fields=["params"])
    with where(mirror.name, member.name) as place:
        with refusals(f"Creating credential {name} on {place.instance}"):
            answer = place.agent.create_app_credential(place.instance, name)
        run.job.params = {**run.params, SECRET: crypto.seal(answer.pop("secret"))}
        run.job.save(update_fields=["params"])
        who = run.job.requested_by.get_username() if run.job.requested_by else "who asked"
        run.step(
            f"Credential {name} created on {place.instance}; its secret is kept sealed for "
            f"{who} to see once",
            progress=60,
        )
        _audit(run, "app_credential.create", member, place, name)
        listed = _read_after_change(run, place)
    return _result(member, place, credential=name, **listed)


def revoke_app_credential(run):
    """The instance forgets the credential and closes the connections it authenticated."""
    member, mirror = member_of(run), mirror_of(run)
    name = run.params["name"]
    with where(mirror.name, member.name) as place:
        with refusals(f"Revoking credential {name} on {place.instance}"):
            answer = place.agent.revoke_app_credential(place.instance, name)
        closed = int(answer.get("closed_connections") or 0)
        run.step(
            f"Credential {name} revoked on {place.instance}: {closed} open connection"
            f"{'' if closed == 1 else 's'} closed",
            progress=60,
        )
        _audit(run, "app_credential.revoke", member, place, name, closed_connections=closed)
        listed = _read_after_change(run, place)
    return _result(
        member, place, credential=name, revoked=True, closed_connections=closed, **listed
    )


# --- What the pages and the API read ----------------------------------------------------------
def last_read(member: Member) -> Job | None:
    """The latest job that read the credentials of `member`'s instance (in any of its mirrors:
    an instance keeps one set), or None when none has yet."""
    jobs = Job.objects.filter(
        kind__in=KINDS,
        state=Job.SUCCEEDED,
        member__host_id=member.host_id,
        member__name=member.name,
    ).order_by("-finished_at", "-id")
    return next((j for j in jobs[:20] if (j.result or {}).get("credentials") is not None), None)


def recorded(member: Member) -> dict:
    """What the pages and the API show: the credentials as the instance last answered."""
    job = last_read(member)
    result = job.result if job else {}
    return {
        "member": member.pk,
        "instance": result.get("instance"),
        "host": result.get("host"),
        "credentials": result.get("credentials"),
        "auth": result.get("auth"),
        "mode": result.get("mode"),
        "job": job.pk if job else None,
        "read_at": job.finished_at if job else None,
    }


def waiting_secret(job: Job) -> bool:
    return job.kind == CREATE and SECRET in (job.params or {})


def take_secret(job: Job) -> str:
    """Open the sealed secret and erase it from the row (the caller holds the row's lock and
    has checked who asks); crypto.SecretUnreadable when no key opens it (it is then kept, so
    that putting the key back still shows it)."""
    try:
        secret = crypto.unseal(job.params[SECRET])
    except InvalidToken:
        raise crypto.SecretUnreadable(
            f"Job {job.pk}: the credential's sealed secret cannot be decrypted with any key in "
            "PORTAL_SECRET_KEYS. Put back the key that sealed it, or revoke the credential and "
            "make a new one."
        ) from None
    job.params = {k: v for k, v in job.params.items() if k != SECRET}
    job.save(update_fields=["params"])
    return secret


def erase_expired_secrets() -> int:
    """Erase the sealed secrets no one took within REVEAL_WITHIN; how many."""
    cutoff = timezone.now() - REVEAL_WITHIN
    stale = Job.objects.filter(kind=CREATE, params__has_key=SECRET, finished_at__lt=cutoff)
    erased = 0
    for job in stale.only("pk", "params"):
        job.params = {k: v for k, v in job.params.items() if k != SECRET}
        job.save(update_fields=["params"])
        erased += 1
    return erased


def expired(job: Job) -> bool:
    return job.finished_at is not None and job.finished_at < timezone.now() - REVEAL_WITHIN
