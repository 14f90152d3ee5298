"""Application credentials managed through the portal (docs/hardening.md, "Application
credentials in the portal"), on real processes: an instance made the primary of a mirror through
its own admin actions, its agent, the portal importing the mirror and running the credential
jobs on the Celery worker.

A credential made through the REST API lets the engine's application client in on the
instance's superserver; its secret is shown once, to the operator who asked, and no table of the
portal's database holds it at any moment; revoked through the page, the application is refused
and its open connection closed. Every step is in the audit trail by the credential's name, and
the secret is in no audit event, job log or agent log.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from accounts.models import AuditEvent
from engine.client.app import Client, ConnectionLost, Unauthorized
from engine.wire.admin_token import TOKEN_ENV
from members import actions
from members.models import Member
from tasks.models import Job
from tests import factories
from tests.conftest import api_client_for
from tests.engine.agent_fixtures import start_agent_fixture  # noqa: F401
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.jobs.conftest import wait_until_final

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(180)]

MIRROR, DB = "CREDM", "APPDB"
V1 = "/api/v1"


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    # the instance keeps its own admin token (its agent reads it from the data directory), so
    # the application's client below authenticates with nothing but what the test gives it
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.fixture
def mirrored(hosts, start_agent, admin_user, celery_worker):  # noqa: F811
    """The primary of CREDM with a database, its agent, and the mirror imported by the portal."""
    app = hosts.add("APP")
    app.admin("mirror_create", {"mirror": MIRROR, "private": app.private})
    app.after_restart()
    app.admin("create_database", DB)
    entry = {"name": app.name, "superserver": app.superserver, "data_dir": str(app.data_dir)}
    agent = start_agent(instances=[entry])
    host = factories.host(
        admin_user, address="127.0.0.1", agent_port=agent.port, credential=agent.credential
    )
    imported = wait_until_final(actions.import_mirror(admin_user, host, app.name))
    assert imported.state == Job.SUCCEEDED, imported.error
    return app, agent, Member.objects.get(mirror__name=MIRROR, name=app.name)


def application(app, name: str, secret: str) -> Client:
    return Client(
        [app.superserver], follow_primary=False, retries=0, timeout=5, credential=(name, secret)
    )


def every_table() -> str:
    """Every row of every table of the portal's database, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows += [repr(row) for row in cursor.fetchall()]
    return "\n".join(rows)


def run(client, path: str, body: dict) -> dict:
    response = client.post(V1 + path, body, format="json")
    assert response.status_code == 202, response.content
    job = wait_until_final(Job.objects.get(pk=response.json()["id"]))
    assert job.state == Job.SUCCEEDED, f"{job.error}\n{job.log}"
    return job


def test_a_credential_made_through_the_portal_lets_the_application_in_until_it_is_revoked(
    mirrored, operator, client
):
    app, agent, member = mirrored
    api = api_client_for(operator)

    made = run(api, f"/members/{member.pk}/app-credentials/", {"name": "billing"})
    sealed_row = every_table()  # the secret waits, sealed, on the job's row
    shown = api.post(
        V1 + f"/members/{member.pk}/app-credentials/reveal/", {"job": made.pk}, format="json"
    )
    again = api.post(
        V1 + f"/members/{member.pk}/app-credentials/reveal/", {"job": made.pk}, format="json"
    )

    assert shown.status_code == 200, shown.content
    assert shown["Cache-Control"] == "no-store"
    secret = shown.json()["secret"]
    assert shown.json()["name"] == "billing" and shown.json()["instance"] == app.name
    assert again.status_code == 409 and again.json()["error"]["code"] == "secret_gone"
    # the instance now requires authentication, and the credential is what lets the app in
    assert made.result["auth"] == "required"
    assert [c["name"] for c in made.result["credentials"]] == ["billing"]
    with application(app, "billing", secret) as db:
        db.set(DB, "Orders", (1,), "paid")
        assert db.get(DB, "Orders", (1,)) == "paid"
    with pytest.raises(Unauthorized):
        application(app, "billing", "0" * len(secret)).close()
    # no plaintext in the portal's database, before the secret was shown or after
    assert made.params["secret_sealed"].startswith("fernet:")
    assert secret not in sealed_row
    assert secret not in every_table()
    made.refresh_from_db()
    assert "secret_sealed" not in made.params
    # the list the page shows is the instance's answer
    listed = api.get(V1 + f"/members/{member.pk}/app-credentials/").json()
    assert [c["name"] for c in listed["credentials"]] == ["billing"] and listed["job"] == made.pk

    # revoked through the page, behind the mirror's name: the application is refused, and the
    # connection it had open is closed
    connected = application(app, "billing", secret)
    assert connected.get(DB, "Orders", (1,)) == "paid"
    client.force_login(operator)
    revoke = reverse("app-credential-revoke", args=[MIRROR, member.pk])
    page = client.get(revoke, {"name": "billing"})
    refused = client.post(revoke, {"name": "billing", "confirm": "wrong"})
    response = client.post(revoke, {"name": "billing", "confirm": MIRROR.lower()})
    revoked = wait_until_final(Job.objects.get(kind="revoke_app_credential"))

    assert "Revoke the credential billing on APP" in page.text
    assert "Type the mirror&#x27;s name, CREDM, to confirm." in refused.text
    assert response.status_code == 302 and str(revoked.pk) in response["Location"]
    assert revoked.state == Job.SUCCEEDED, revoked.error
    assert revoked.result["closed_connections"] == 1 and revoked.result["credentials"] == []
    with pytest.raises((ConnectionLost, Unauthorized)):
        connected.get(DB, "Orders", (1,))
    connected.close()
    with pytest.raises(Unauthorized):
        application(app, "billing", secret).close()

    # audited by name, the secret nowhere: not in the audit trail, the job logs or the agent log
    events = AuditEvent.objects.filter(action__startswith="app_credential.")
    assert sorted(e.action for e in events) == [
        "app_credential.create",
        "app_credential.reveal",
        "app_credential.revoke",
    ]
    assert all(e.after["credential"] == "billing" and e.actor == operator for e in events)
    assert secret not in repr(list(AuditEvent.objects.values()))
    assert secret not in repr(list(Job.objects.values("log", "result", "params", "error")))
    assert secret not in agent.log() and secret not in app.log()


def test_the_instance_refusing_a_credential_fails_its_job_with_the_instance_reason(
    mirrored, operator
):
    app, _, member = mirrored
    first = wait_until_final(actions.create_app_credential(operator, member, "reports"))
    twice = wait_until_final(actions.create_app_credential(operator, member, "reports"))
    unknown = wait_until_final(
        actions.revoke_app_credential(operator, member, "nobody", confirm=MIRROR)
    )
    listed = wait_until_final(actions.list_app_credentials(operator, member))

    assert first.state == Job.SUCCEEDED, first.error
    assert twice.state == Job.FAILED
    assert "credential 'reports' exists: revoke it first" in twice.error
    assert "secret_sealed" not in twice.params  # nothing was made: nothing to show
    assert unknown.state == Job.FAILED and "no credential 'nobody'" in unknown.error
    assert listed.state == Job.SUCCEEDED, listed.error
    assert [c["name"] for c in listed.result["credentials"]] == ["reports"]
    assert listed.result["instance"] == app.name and listed.result["mode"] == "auto"
