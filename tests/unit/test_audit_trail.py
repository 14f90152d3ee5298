"""Every service that changes something leaves an audit event with who, what, before and after.

(A mirror's members, DN updates, databases and copies change only when a job records what the
members answered, audited with the reporting member as the actor: see tests/jobs and tests/e2e;
an operator's request for such a change is audited as the start of its job: see
tests/api/test_audit_through_api.py.)"""

import pytest
from django.core.exceptions import ValidationError

from accounts import services as accounts_services
from accounts.models import AuditEvent
from members import services
from tests import factories

pytestmark = pytest.mark.django_db


def last_event():
    return AuditEvent.objects.order_by("-id").first()


def test_registering_a_host_records_its_full_state_as_after(admin_user):
    host = factories.host(admin_user, name="audit1", address="10.7.7.7", agent_port=2190)
    event = last_event()
    assert (event.action, event.actor, event.actor_name) == ("host.create", admin_user, "ada-admin")
    assert event.before is None
    assert event.after["name"] == "audit1" and event.after["agent_port"] == 2190
    assert (event.object_type, event.object_id) == ("host", str(host.pk))


def test_updating_a_mirror_records_before_and_after(admin_user):
    mirror = factories.mirror()
    services.update_mirror(admin_user, mirror, qos_timeout_ms=12000, requires_tls=False)
    event = last_event()
    assert event.action == "mirror.update"
    assert (event.before["qos_timeout_ms"], event.after["qos_timeout_ms"]) == (8000, 12000)
    assert (event.before["requires_tls"], event.after["requires_tls"]) == (True, False)


def test_a_refused_change_leaves_no_event_and_no_change(admin_user):
    mirror = factories.mirror()
    count = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        services.update_mirror(admin_user, mirror, qos_timeout_ms=5)
    mirror.refresh_from_db()
    assert mirror.qos_timeout_ms == 8000
    assert AuditEvent.objects.count() == count


def test_forgetting_a_mirror_keeps_its_last_state_and_the_reason_as_before(admin_user):
    mirror = factories.mirror(name="gone")
    services.forget_mirror(admin_user, mirror, reason="forgotten by an operator")
    event = last_event()
    assert (event.action, event.actor) == ("mirror.forget", admin_user)
    assert event.before["name"] == "GONE" and event.after is None
    assert event.before["reason"] == "forgotten by an operator"


def test_host_credentials_never_reach_the_audit_trail(admin_user):
    host = factories.host(admin_user, credential="s3cret-agent-key")
    services.update_host(admin_user, host, credential="another-secret")
    events = list(AuditEvent.objects.filter(object_type="host"))
    assert sorted(e.action for e in events) == ["host.create", "host.update"]
    for event in events:
        assert "credential" not in (event.before or {})
        assert "credential" not in (event.after or {})
        assert "secret" not in str(event.before) + str(event.after)


def test_a_databases_startup_flag_change_is_audited_and_its_name_never_changes(admin_user):
    database = factories.database(factories.mirror(), name="sales")
    services.update_mirrored_database(admin_user, database, mount_required_at_startup=True)
    event = last_event()
    assert (event.action, event.object_type) == ("database.update", "mirroreddatabase")
    before, after = (
        event.before["mount_required_at_startup"],
        event.after["mount_required_at_startup"],
    )
    assert (before, after) == (False, True)
    count = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        services.update_mirrored_database(admin_user, database, name="OTHER")
    database.refresh_from_db()
    assert database.name == "SALES" and AuditEvent.objects.count() == count


def test_users_and_tokens_are_audited_without_secrets(admin_user):
    user = accounts_services.create_user(
        admin_user, username="newbie", password="pw-long-enough", role="viewer"
    )
    accounts_services.update_user(admin_user, user, role="operator")
    token, secret = accounts_services.create_token(user, name="ci")
    accounts_services.revoke_token(user, token)
    change = AuditEvent.objects.get(action="user.update")
    assert (change.before["role"], change.after["role"]) == ("viewer", "operator")
    trail = str(list(AuditEvent.objects.values_list("before", "after")))
    assert secret not in trail and token.key_hash not in trail and "pbkdf2" not in trail
    revoke = AuditEvent.objects.get(action="token.revoke")
    assert revoke.before["revoked_at"] is None and revoke.after["revoked_at"] is not None
