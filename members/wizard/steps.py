"""What each wizard step starts, and what it waits for before the next one may go on.

A step's jobs are kept in the draft (`jobs[step]`, job ids). A step whose jobs all succeeded is
done: submitting it again starts nothing. The next step goes on only when they have.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from engine import rules as catalog
from members import actions
from members.models import Instance, Member, Mirror
from members.wizard.checklist import SETTLED_COPY
from tasks.models import Job

ORDER = [
    "instances",
    "certificates",
    "mirror",
    "backup",
    "asyncs",
    "authorize",
    "databases",
    "catchup",
    "review",
]
TITLES = {
    "instances": "Instances",
    "certificates": "Certificates",
    "mirror": "Create the mirror",
    "backup": "Join the backup",
    "asyncs": "Join asyncs",
    "authorize": "Authorize",
    "databases": "Databases",
    "catchup": "Activate and catch up",
    "review": "Review",
}
INTROS = {
    "instances": "Choose the instances that become the mirror's members. The first failover "
    "member creates the mirror; the others join it in the next steps.",
    "certificates": "On a TLS mirror every member presents a certificate. Give the paths of "
    "the files on their hosts for instances not set up for TLS yet; leave the others empty.",
    "mirror": "The first failover member creates the mirror and becomes its primary.",
    "backup": "The second failover member joins through the primary and becomes the backup.",
    "asyncs": "The async members join through the primary, all at once.",
    "authorize": "On a TLS mirror the primary lets a member in only once you authorize the "
    "DN its certificate presented (guide §4.7.3). Compare each DN with the one you expect.",
    "databases": "Databases to mirror: new empty ones, or existing ones of the primary with "
    "their data (guide §4.8).",
    "catchup": "Copies that are not caught up yet: each chosen copy is activated and caught "
    "up (restored ones are added first).",
    "review": "When every line is green the mirror is what it should be; you can finish now "
    "either way and follow the mirror on its page.",
}
GO_LABELS = {
    "instances": "Next",
    "certificates": "Give the certificates",
    "mirror": "Create the mirror",
    "backup": "Join the backup",
    "asyncs": "Join them",
    "authorize": "Authorize",
    "databases": "Add the databases",
    "catchup": "Catch up",
}
NEEDS_MIRROR = {"backup", "asyncs", "authorize", "databases", "catchup"}
# Which earlier steps' jobs must have succeeded before a step may be submitted.
WAITS_FOR = {
    "mirror": ["instances", "certificates"],
    "backup": ["mirror"],
    "asyncs": ["mirror", "backup"],
    "authorize": ["backup", "asyncs"],
    "databases": ["mirror", "backup", "asyncs", "authorize"],
    "catchup": ["databases"],
    "review": ["catchup"],
}


def jobs_of(extra: dict, steps) -> list[Job]:
    ids = [pk for step in steps for pk in extra.get("jobs", {}).get(step, [])]
    return list(Job.objects.filter(pk__in=ids).order_by("pk"))


def step_done(extra: dict, step: str, *, answered: bool = False) -> bool:
    """Its jobs all succeeded; `answered`: a step that started none counts as done too."""
    ids = extra.get("jobs", {}).get(step, [])
    if not ids:
        return answered
    return all(j.state == Job.SUCCEEDED for j in jobs_of(extra, [step]))


def check_waits(extra: dict, step: str) -> None:
    """Refuse to go on while an earlier step's job runs or after one failed."""
    for job in jobs_of(extra, WAITS_FOR.get(step, [])):
        if job.state in (Job.QUEUED, Job.RUNNING):
            raise ValidationError(
                f"Wait for job {job.pk} ({job.kind}) to finish: it is {job.state}.",
                code="waiting",
            )
        if job.state != Job.SUCCEEDED:
            raise ValidationError(
                f"Job {job.pk} ({job.kind}) {job.state}: {job.error or 'no reason given'} "
                "Go back to its step to try again.",
                code="failed",
            )


def record(extra: dict, step: str, jobs: list[Job], *, append: bool = False) -> None:
    known = extra.setdefault("jobs", {})
    known[step] = (known.get(step, []) if append else []) + [job.pk for job in jobs]


def mirror_of(extra: dict) -> Mirror | None:
    return Mirror.objects.filter(name=extra.get("mirror", "")).first()


def _instance(pk) -> Instance:
    return Instance.objects.select_related("host").get(pk=int(pk))


# --- what each step starts --------------------------------------------------------------------
def start_certificates(actor, data: dict, instances) -> list[Job]:
    return [
        actions.set_instance_tls(
            actor, i, cert=data[f"cert_{i.pk}"], key=data[f"key_{i.pk}"], ca=data["ca"]
        )
        for i in instances
    ]


def start_mirror(actor, data: dict, choice: dict) -> list[Job]:
    first = _instance(choice["primary"])
    settings = {k: v for k, v in data.items() if k not in ("name", "private")}
    settings = {k: v for k, v in settings.items() if v not in (None, "")}
    return [
        actions.create_mirror(
            actor,
            host=first.host,
            instance=first.name,
            name=data["name"],
            private=data["private"],
            requires_tls=bool(choice.get("tls")),
            **settings,
        )
    ]


def start_backup(actor, mirror: Mirror, data: dict, choice: dict) -> list[Job]:
    second = _instance(choice["backup"])
    return [
        actions.join_mirror(
            actor,
            mirror,
            host=second.host,
            instance=second.name,
            member_type="failover",
            private=data["private"],
        )
    ]


def start_asyncs(actor, mirror: Mirror, types: dict[int, str]) -> list[Job]:
    jobs = []
    for pk, member_type in types.items():
        i = _instance(pk)
        jobs.append(
            actions.join_mirror(
                actor, mirror, host=i.host, instance=i.name, member_type=member_type
            )
        )
    return jobs


def start_authorize(actor, mirror: Mirror, chosen: list[str]) -> list[Job]:
    pending = mirror.members.filter(pk__in=[int(pk) for pk in chosen], authorization="pending")
    return [actions.authorize_member(actor, m) for m in pending]


def start_databases(actor, mirror: Mirror, data: dict) -> list[Job]:
    jobs = [actions.create_database(actor, mirror, name=n) for n in data["new_names"]]
    holders = None if data["how"] == "download" else []
    for name in data["existing_names"]:
        jobs.append(actions.create_database(actor, mirror, name=name, how="add", members=holders))
    return jobs


def copies_to_settle(mirror: Mirror, restored: list[str]) -> list[tuple[str, str, bool]]:
    """(key, label, wanted) for every copy that is not caught up, and every member without a
    copy of a restored database: what the catch-up step offers."""
    out = []
    for member in mirror.members.exclude(status=catalog.PRIMARY).order_by("name"):
        held = {c.database.name: c for c in member.database_copies.select_related("database")}
        for name in sorted(restored):
            if name not in held:
                label = f"{name} on {member.name}: add the restored copy, then catch it up"
                out.append((f"{member.pk}:{name}:restored", label, True))
        for name, copy in sorted(held.items()):
            if copy.status not in SETTLED_COPY:
                label = f"{name} on {member.name}: {copy.status}"
                out.append((f"{member.pk}:{name}:held", label, True))
    return out


def start_catchup(actor, mirror: Mirror, chosen: list[str]) -> list[Job]:
    """One catch-up job per member, covering every chosen copy of it (guide §4.8.5)."""
    per_member: dict[int, dict[str, list[str]]] = {}
    for key in chosen:
        pk, name, kind = key.split(":")
        per_member.setdefault(int(pk), {"held": [], "restored": []})[kind].append(name)
    jobs = []
    for pk, names in per_member.items():
        member = Member.objects.get(pk=pk, mirror=mirror)
        jobs.append(
            actions.catchup_databases(actor, member, names["held"], restored=names["restored"])
        )
    return jobs


def start_review(actor, mirror: Mirror) -> list[Job]:
    return [actions.review_mirror(actor, mirror)]
