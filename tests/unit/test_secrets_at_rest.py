"""Secrets at rest (docs/hardening.md): the agent credentials the portal keeps are sealed with the
keys of PORTAL_SECRET_KEYS. A dump of the database reveals none of them, the keys rotate, a
wrong key is said plainly where it is met, and production without a key does not start."""

import io
import os
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from accounts.models import AuditEvent
from members import services
from members.agents import agent_client_for
from members.models import Host
from portal import checks, crypto
from tasks.errors import PermanentJobError
from tests import factories
from tests.jobs.conftest import ROOT

pytestmark = pytest.mark.django_db

SECRET = "agent-secret-4711-in-clear"
V1 = "/api/v1"


def a_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def use_keys(settings):
    """use_keys(k1, k2, ...) makes PORTAL_SECRET_KEYS those keys, the first one encrypting."""

    def use(*keys):
        settings.PORTAL_SECRET_KEYS = list(keys)

    return use


def stored(host) -> str:
    """The credential column as a database dump shows it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT credential FROM members_host WHERE id = %s", [host.pk])
        return cursor.fetchone()[0]


def dump_of_every_table() -> str:
    tables = connection.introspection.table_names()
    rows = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows.extend(cursor.fetchall())
    return "\n".join(map(repr, rows))


# --- At rest ----------------------------------------------------------------------------------
def test_the_credential_column_holds_a_fernet_token_and_not_the_credential(use_keys):
    use_keys(a_key())
    host = factories.host(credential=SECRET)

    column = stored(host)

    assert column.startswith("fernet:")
    assert SECRET not in column
    assert Host.objects.get(pk=host.pk).credential == SECRET


def test_a_dump_of_every_table_reveals_no_credential_even_after_changes(admin_user):
    host = factories.host(admin_user, credential=SECRET)
    services.update_host(admin_user, host, credential=SECRET + "-changed", name="renamed")
    factories.host(admin_user, credential="a-second-agent-secret")

    dump = dump_of_every_table()

    assert "renamed" in dump  # the dump does hold the hosts
    for secret in (SECRET, SECRET + "-changed", "a-second-agent-secret"):
        assert secret not in dump


def test_a_host_without_a_credential_keeps_an_empty_column():
    host = factories.host()

    assert stored(host) == ""
    assert Host.objects.get(pk=host.pk).credential == ""
    assert Host.objects.filter(credential="").count() == 1


def test_the_agent_client_is_given_the_credential_in_clear():
    host = factories.host(address="127.0.0.1", credential=SECRET)

    client = agent_client_for(Host.objects.get(pk=host.pk))

    assert client.credential == SECRET


def test_each_save_seals_afresh_and_an_unread_credential_is_written_back_as_it_was():
    host = factories.host(credential=SECRET)
    first = stored(host)

    loaded = Host.objects.get(pk=host.pk)
    loaded.address = "10.7.7.7"
    loaded.save()  # the credential was never read: its token is kept
    assert stored(host) == first

    loaded.credential = SECRET
    loaded.save()
    assert stored(host) != first and Host.objects.get(pk=host.pk).credential == SECRET


def test_dumpdata_writes_the_token_never_the_credential():
    factories.host(credential=SECRET)
    out = io.StringIO()

    call_command("dumpdata", "members.host", stdout=out)

    assert SECRET not in out.getvalue()
    assert '"credential": "fernet:' in out.getvalue()


def test_neither_the_api_nor_the_admin_shows_the_credential_or_its_token(api, admin_user):
    host = factories.host(credential=SECRET)
    admin_browser = Client()
    admin_browser.force_login(admin_user)

    pages = [
        api.get(f"{V1}/hosts/").content,
        api.get(f"{V1}/hosts/{host.pk}/").content,
        admin_browser.get(f"/admin/members/host/{host.pk}/change/").content,
        admin_browser.get("/admin/members/host/").content,
    ]

    for page in pages:
        assert SECRET.encode() not in page
        assert b"fernet:" not in page


# --- Rotation ---------------------------------------------------------------------------------
def test_with_a_new_key_first_old_tokens_still_open_and_rotate_secrets_moves_them_to_it(
    use_keys,
):
    old, new = a_key(), a_key()
    use_keys(old)
    host = factories.host(credential=SECRET)
    sealed_with_old = stored(host)

    use_keys(new, old)
    assert Host.objects.get(pk=host.pk).credential == SECRET  # the old key still decrypts
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)

    assert "Re-encrypted 1 secret " in out.getvalue()
    assert stored(host) != sealed_with_old
    use_keys(new)  # the old key is dropped
    assert Host.objects.get(pk=host.pk).credential == SECRET
    use_keys(old)  # and no longer opens what was rotated
    with pytest.raises(crypto.SecretUnreadable):
        Host.objects.get(pk=host.pk).credential  # noqa: B018


def test_rotation_is_audited_without_the_secret_or_its_token(use_keys):
    use_keys(a_key())
    host = factories.host(credential=SECRET)

    call_command("rotate_secrets", stdout=io.StringIO())

    event = AuditEvent.objects.get(action="host.rotate_secrets")
    assert (event.actor_name, event.object_id) == ("manage.py rotate_secrets", str(host.pk))
    assert event.after == {"reencrypted": ["credential"]}
    text = f"{event.before} {event.after} {event.object_repr}"
    assert SECRET not in text and "fernet:" not in text


def test_rotate_secrets_with_a_key_that_opens_nothing_changes_nothing_and_names_the_host(
    use_keys,
):
    old = a_key()
    use_keys(old)
    readable = factories.host(credential="another-agent-secret")
    use_keys(a_key(), old)
    lost = factories.host(name="lost-host", credential=SECRET)
    use_keys(old)  # the key that sealed lost-host is gone
    before = (stored(readable), stored(lost))

    with pytest.raises(CommandError) as refused:
        call_command("rotate_secrets", stdout=io.StringIO())

    assert "host lost-host (credential)" in str(refused.value)
    assert "nothing was changed" in str(refused.value)
    assert (stored(readable), stored(lost)) == before
    assert not AuditEvent.objects.filter(action="host.rotate_secrets").exists()


# --- A wrong key ------------------------------------------------------------------------------
@pytest.fixture
def unreadable_host(use_keys):
    """A host whose credential was sealed with a key the portal no longer has."""
    use_keys(a_key())
    host = factories.host(name="hosta", credential=SECRET)
    use_keys(a_key())
    return Host.objects.get(pk=host.pk)


def test_a_wrong_key_says_which_host_and_what_to_do(unreadable_host):
    with pytest.raises(crypto.SecretUnreadable) as unreadable:
        unreadable_host.credential  # noqa: B018

    message = str(unreadable.value)
    assert message.startswith("Host hosta: its stored credential cannot be decrypted")
    assert "PORTAL_SECRET_KEYS" in message and "set it again" in message
    # a job that needs it fails with that message (tasks/tasks.py), retrying cannot help
    assert isinstance(unreadable.value, PermanentJobError)


def test_with_a_wrong_key_hosts_still_list_and_the_admin_page_still_opens(
    unreadable_host, api, admin_user
):
    admin_browser = Client()
    admin_browser.force_login(admin_user)

    assert api.get(f"{V1}/hosts/").status_code == 200
    assert api.get(f"{V1}/hosts/{unreadable_host.pk}/").status_code == 200
    page = admin_browser.get(f"/admin/members/host/{unreadable_host.pk}/change/")
    assert page.status_code == 200


def test_with_a_wrong_key_an_api_change_is_refused_with_the_reason_and_a_new_one_fixes_it(
    unreadable_host, api
):
    url = f"{V1}/hosts/{unreadable_host.pk}/"

    refused = api.patch(url, {"address": "10.8.8.8"}, format="json")

    assert refused.status_code == 400
    assert "cannot be decrypted" in refused.json()["error"]["message"]
    fixed = api.patch(url, {"credential": "the-new-secret-0001"}, format="json")
    assert fixed.status_code == 200
    assert Host.objects.get(pk=unreadable_host.pk).credential == "the-new-secret-0001"


# --- Keys and start-up ------------------------------------------------------------------------
def test_production_without_keys_is_refused_with_the_way_to_make_one():
    with pytest.raises(ImproperlyConfigured) as refused:
        crypto.check_keys([], production=True)

    assert "PORTAL_SECRET_KEYS must be set in production" in str(refused.value)
    assert "Fernet.generate_key()" in str(refused.value)
    assert crypto.check_keys([], production=False) == []


def test_a_key_that_is_no_fernet_key_is_refused_by_position_without_echoing_it():
    good = a_key()

    with pytest.raises(ImproperlyConfigured) as refused:
        crypto.check_keys([good, "not-a-key-but-a-password"], production=True)

    assert "key 2 of 2 is not a Fernet key" in str(refused.value)
    assert "not-a-key-but-a-password" not in str(refused.value)


def manage_check(tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("PORTAL_SECRET_KEYS", "DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, "PORTAL_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_production_process_without_a_key_stops_at_start_up(tmp_path):
    production = {"DJANGO_SECRET_KEY": "a-real-deployment-secret-" + "x" * 40}

    refused = manage_check(tmp_path, **production)
    started = manage_check(tmp_path, **production, PORTAL_SECRET_KEYS=a_key())

    assert refused.returncode != 0
    assert "ImproperlyConfigured: PORTAL_SECRET_KEYS must be set in production" in refused.stderr
    assert started.returncode == 0, started.stderr


def test_check_deploy_warns_when_the_embedded_key_file_is_in_use(settings):
    settings.PORTAL_SECRET_KEYS = []
    assert [w.id for w in checks.secret_keys_from_the_environment()] == ["portal.W001"]

    settings.PORTAL_SECRET_KEYS = [a_key()]
    assert checks.secret_keys_from_the_environment() == []


def test_the_embedded_default_generates_one_private_key_file_and_keeps_it(tmp_path):
    first = crypto.development_keys(tmp_path)
    crypto.development_keys.cache_clear()  # as a new process would
    again = crypto.development_keys(tmp_path)

    assert first == again and len(first) == 1
    Fernet(first[0])  # a real key
    assert stat.S_IMODE((tmp_path / "secret-keys").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret-keys"]


# --- The migration ----------------------------------------------------------------------------
BEFORE = ("members", "0005_mirror_drafts")
AFTER = ("members", "0006_encrypt_host_credential")


@pytest.fixture
def latest_schema_afterwards():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def migrate_to(target):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_credentials_kept_in_clear_and_going_back_opens_them(
    latest_schema_afterwards,
):
    old = migrate_to(BEFORE)
    old.get_model("members", "Host").objects.create(
        name="plain", address="10.1.1.1", credential=SECRET
    )
    old.get_model("members", "Host").objects.create(name="none", address="10.1.1.2")
    plain = old.get_model("members", "Host").objects.get(name="plain")
    assert stored(plain) == SECRET

    migrate_to(AFTER)
    assert stored(plain).startswith("fernet:") and SECRET not in stored(plain)
    assert crypto.unseal(stored(plain)) == SECRET
    assert stored(old.get_model("members", "Host").objects.get(name="none")) == ""

    migrate_to(BEFORE)
    assert stored(plain) == SECRET


def test_the_collector_skips_a_host_whose_credential_no_key_opens_and_follows_the_rest(
    use_keys, caplog
):
    from monitor.collector import Collector

    use_keys(a_key())
    lost = factories.host(name="lost-key", credential=SECRET)
    kept = factories.host(name="kept", credential=SECRET)
    use_keys(a_key())  # the key that sealed them is gone ...
    kept.credential = SECRET  # ... but this one is set again with the new key
    kept.save()
    collector = Collector(holder="test")

    collector._follow_hosts()
    collector._follow_hosts()  # and again: said once, not every second

    try:
        assert list(collector.followers) == [kept.pk]
        said = [r for r in caplog.records if "not following host lost-key" in r.getMessage()]
        assert len(said) == 1 and lost.pk in collector.unreadable
    finally:
        for _, follower in collector.followers.values():
            follower.stop()
