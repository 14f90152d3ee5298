"""A job's closing refresh (members/operations/base.py) against the collector's writes: when
the database ends a deadlock by rolling back the refresh's transaction, the refresh records the
same answers again instead of failing the job (a stop_instance job failed so on PostgreSQL).
The database's refusal is injected: it is the one thing here outside our control."""

import psycopg
import pytest
from django.db import OperationalError

from members import reconcile
from members.models import Member
from members.operations import base
from members.sync import MemberView, MirrorView
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.jobs]


class Run:
    def __init__(self):
        self.steps: list[str] = []

    def step(self, message: str, progress=None) -> None:
        self.steps.append(message)


def chosen_to_end_a_deadlock() -> OperationalError:
    try:
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    except psycopg.Error as cause:
        try:
            raise OperationalError("deadlock detected") from cause
        except OperationalError as exc:
            return exc


@pytest.fixture
def mirror():
    alpha = factories.mirror(name="ALPHA")
    factories.member(alpha, name="A", status="Primary")
    return alpha


@pytest.fixture
def alpha_view(mirror):
    member = mirror.members.get()
    seen = MemberView(
        name=member.name,
        type=member.member_type,
        superserver=f"{member.superserver_address}:{member.superserver_port}",
        private="",
        dn=member.x509_dn,
        authorized=True,
        status="Backup",
    )
    return MirrorView(
        name=mirror.name, settings={}, primary=None, source=member.name, members=[seen]
    )


def failing_first(monkeypatch, error) -> list[int]:
    calls = []
    record = reconcile.record_observed_mirror

    def once_refused(view, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return record(view, **kwargs)

    monkeypatch.setattr(reconcile, "record_observed_mirror", once_refused)
    return calls


def test_a_refresh_chosen_to_end_a_deadlock_records_the_answers_again(
    mirror, alpha_view, monkeypatch
):
    calls = failing_first(monkeypatch, chosen_to_end_a_deadlock())

    result = base.refresh(Run(), mirror, view=alpha_view)

    assert len(calls) == 2 and result["mirror"] == "ALPHA"
    assert Member.objects.get(mirror=mirror).status == "Backup"  # was Primary


def test_any_other_database_error_still_fails_the_job(mirror, alpha_view, monkeypatch):
    calls = failing_first(monkeypatch, OperationalError("disk I/O error"))

    with pytest.raises(OperationalError, match="disk I/O error"):
        base.refresh(Run(), mirror, view=alpha_view)
    assert len(calls) == 1
