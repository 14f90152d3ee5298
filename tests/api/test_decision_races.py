"""Two decisions on one pending member or DN update, sent at the same moment: exactly one starts
its job (202), the other is a 409 `in_progress`, and the audit trail holds one `job.start`
(issue #9 item 6). The race is decided at the request: the job that carries the decision out on
the primary is a later matter (members.actions serializes decisions on a member while one is
queued or running).

Each round lines the two API calls up on a barrier, on threads with their own database
connections (transactional tests), on SQLite and again on PostgreSQL in the services pass.
Committed jobs would be sent to Celery; here the message is recorded instead, so that no worker
another test left running in this process (or a Redis queue) picks up a decision meant only to
be counted.
"""

import threading

import pytest
from django.db import connection

from accounts.models import AuditEvent
from members.models import Member
from tasks import services as services_of_tasks
from tasks.models import Job
from tests import factories
from tests.api.conftest import bearer

pytestmark = [pytest.mark.api, pytest.mark.django_db(transaction=True)]
V1 = "/api/v1"
ROUNDS = 8


@pytest.fixture(autouse=True)
def sent(monkeypatch):
    """The job ids sent to Celery, in order (instead of sending them)."""
    ids: list[int] = []
    monkeypatch.setattr(services_of_tasks, "dispatch", ids.append)
    return ids


def at_once(secret: str, *paths: str) -> list[tuple[int, str]]:
    """POST each path from its own thread, all released together; (status, error code) each.
    Every call carries the mirror's name, which the destructive ones (reject, remove) need."""
    barrier = threading.Barrier(len(paths))
    answers: list[tuple[int, str] | None] = [None] * len(paths)

    def call(i: int, path: str) -> None:
        client = bearer(secret)
        try:
            barrier.wait(timeout=10)
            response = client.post(path, {"confirm": "ALPHA"}, format="json")
            error = response.json()["error"] if response.status_code >= 400 else {}
            answers[i] = (response.status_code, error.get("code", ""))
        finally:
            connection.close()  # this thread's connection

    threads = [threading.Thread(target=call, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(a is not None for a in answers), answers
    return answers


def jobs_on(member: Member) -> list[Job]:
    return list(Job.objects.filter(member=member))


def starts_of(jobs: list[Job]) -> int:
    return AuditEvent.objects.filter(
        action="job.start", object_id__in=[str(j.pk) for j in jobs]
    ).count()


def pending_member(world, n: int) -> Member:
    member = factories.member(
        world.mirror, name=f"RACE{n}", member_type="dr", x509_dn=f"CN=race{n}"
    )
    assert member.authorization == Member.PENDING  # a TLS mirror's new member waits
    return member


def test_authorizing_one_member_twice_at_once_starts_one_authorization(world, sent):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        member = pending_member(world, n)
        path = V1 + f"/pending-members/{member.pk}/authorize/"

        answers = at_once(secret, path, path)

        assert sorted(answers) == [(202, ""), (409, "in_progress")]
        jobs = jobs_on(member)
        assert [j.kind for j in jobs] == ["authorize_member"]
        assert starts_of(jobs) == 1
        assert sent.count(jobs[0].pk) == 1
        member.refresh_from_db()
        assert member.authorization == Member.PENDING  # until the primary has authorized it


def test_authorize_against_reject_starts_one_decision(world, sent):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        member = pending_member(world, n)
        base = V1 + f"/pending-members/{member.pk}/"

        answers = at_once(secret, base + "authorize/", base + "reject/")

        assert sorted(answers) == [(202, ""), (409, "in_progress")]
        jobs = jobs_on(member)
        assert len(jobs) == 1 and starts_of(jobs) == 1 and sent.count(jobs[0].pk) == 1
        winner = "authorize_member" if answers[0][0] == 202 else "reject_member"
        assert jobs[0].kind == winner
        assert Member.objects.filter(pk=member.pk).exists()  # a rejection removes it later


def test_a_dn_update_decided_twice_at_once_starts_one_decision(world, sent):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        member = factories.member(
            world.mirror,
            name=f"DN{n}",
            member_type="dr",
            authorization=Member.AUTHORIZED,
            x509_dn=f"CN=dn{n}",
        )
        update = factories.dn_update(member, f"CN=dn{n}-renewed")
        base = V1 + f"/dn-updates/{update.pk}/"

        answers = at_once(secret, base + "authorize/", base + "reject/")

        assert sorted(answers) == [(202, ""), (409, "in_progress")]
        jobs = jobs_on(member)
        assert len(jobs) == 1 and starts_of(jobs) == 1 and sent.count(jobs[0].pk) == 1
        winner = "authorize_dn_update" if answers[0][0] == 202 else "reject_dn_update"
        assert (jobs[0].kind, jobs[0].params) == (winner, {"update": update.pk})
        update.refresh_from_db()
        member.refresh_from_db()
        assert update.state == update.PENDING and member.x509_dn == f"CN=dn{n}"


def test_a_dn_decision_and_a_removal_at_once_start_one_job(world, sent):
    secret = world.tokens["admin"][1]
    for n in range(ROUNDS):
        member = factories.member(
            world.mirror,
            name=f"GONE{n}",
            member_type="dr",
            authorization=Member.AUTHORIZED,
        )
        update = factories.dn_update(member, f"CN=gone{n}")

        answers = at_once(
            secret, V1 + f"/dn-updates/{update.pk}/authorize/", V1 + f"/members/{member.pk}/remove/"
        )

        assert sorted(answers) == [(202, ""), (409, "in_progress")]
        jobs = jobs_on(member)
        assert len(jobs) == 1 and starts_of(jobs) == 1 and sent == sent[:-1] + [jobs[0].pk]
