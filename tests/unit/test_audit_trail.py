"""Every service that changes something leaves an audit event with who, what, before and after."""

import pytest
from django.core.exceptions import ValidationError

from accounts import services as accounts_services
from accounts.models import AuditEvent
from members import services
from tests import factories

pytestmark = pytest.mark.django_db


def last_event():
    return AuditEvent.objects.order_by("-id").first()


def test_creating_a_mirror_records_its_full_state_as_after(admin_user):
    mirror = factories.mirror(admin_user, name="audit1", qos_timeout_ms=5000)
    event = last_event()
    assert (event.action, event.actor, event.actor_name) == (
        "mirror.create",
        admin_user,
        "ada-admin",
    )
    assert event.before is None
    assert event.after["name"] == "AUDIT1" and event.after["qos_timeout_ms"] == 5000
    assert (event.object_type, event.object_id) == ("mirror", str(mirror.pk))


def test_updating_a_mirror_records_before_and_after(admin_user):
    mirror = factories.mirror(admin_user)
    services.update_mirror(admin_user, mirror, qos_timeout_ms=12000, requires_tls=False)
    event = last_event()
    assert event.action == "mirror.update"
    assert (event.before["qos_timeout_ms"], event.after["qos_timeout_ms"]) == (8000, 12000)
    assert (event.before["requires_tls"], event.after["requires_tls"]) == (True, False)


def test_a_refused_change_leaves_no_event_and_no_change(admin_user):
    mirror = factories.mirror(admin_user)
    count = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        services.update_mirror(admin_user, mirror, qos_timeout_ms=5)
    mirror.refresh_from_db()
    assert mirror.qos_timeout_ms == 8000
    assert AuditEvent.objects.count() == count


def test_deleting_keeps_the_last_state_as_before(admin_user):
    mirror = factories.mirror(admin_user, name="gone")
    services.delete_mirror(admin_user, mirror)
    event = last_event()
    assert event.action == "mirror.delete"
    assert event.before["name"] == "GONE" and event.after is None


def test_host_credentials_never_reach_the_audit_trail(admin_user):
    host = factories.host(admin_user, credential="s3cret-agent-key")
    services.update_host(admin_user, host, credential="another-secret")
    events = list(AuditEvent.objects.filter(object_type="host"))
    assert sorted(e.action for e in events) == ["host.create", "host.update"]
    for event in events:
        assert "credential" not in (event.before or {})
        assert "credential" not in (event.after or {})
        assert "secret" not in str(event.before) + str(event.after)


def test_member_lifecycle_is_audited(admin_user):
    mirror = factories.mirror(admin_user, requires_tls=True)
    factories.member(mirror, admin_user)
    pending = factories.member(mirror, admin_user, member_type="dr")
    services.authorize_member(admin_user, pending)
    services.update_member(admin_user, pending, superserver_port=1980)
    services.remove_member(admin_user, pending)
    rejected = factories.member(mirror, admin_user, member_type="ro_reporting")
    services.reject_member(admin_user, rejected)
    actions = list(
        AuditEvent.objects.filter(object_type="member")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "member.add",
        "member.add",
        "member.authorize",
        "member.update",
        "member.remove",
        "member.add",
        "member.reject",
    ]
    authorize = AuditEvent.objects.get(action="member.authorize")
    assert (authorize.before["authorization"], authorize.after["authorization"]) == (
        "pending",
        "authorized",
    )


def test_dn_update_decisions_are_audited_and_change_the_member(admin_user):
    mirror = factories.mirror(admin_user)
    member = factories.member(mirror, admin_user, x509_dn="CN=old,O=Example")
    update = services.request_dn_update(admin_user, member, "CN=new,O=Example")
    services.decide_dn_update(admin_user, update, authorize=True)
    member.refresh_from_db()
    assert member.x509_dn == "CN=new,O=Example"
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"dn_update.request", "dn_update.authorize", "member.update"} <= actions
    with pytest.raises(ValidationError):
        services.decide_dn_update(admin_user, update, authorize=False)


def test_database_changes_are_audited(admin_user):
    mirror = factories.mirror(admin_user)
    member = factories.member(mirror, admin_user)
    database = factories.database(mirror, admin_user, name="sales")
    services.update_mirrored_database(admin_user, database, mount_required_at_startup=True)
    services.add_database_copy(admin_user, database, member, status="Normal")
    services.remove_mirrored_database(admin_user, database)
    actions = list(
        AuditEvent.objects.filter(object_type__in=["mirroreddatabase", "databasecopy"])
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["database.create", "database.update", "database_copy.add", "database.remove"]


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
