"""Stored mirror settings move to the engine's spelling and back (members 0003)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("members", "0002_plain_labels")
AFTER = ("members", "0003_engine_setting_values")


def migrate_to(target):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def settings_of(apps, name):
    mirror = apps.get_model("members", "Mirror").objects.get(name=name)
    return mirror.failover_compression, mirror.async_compression, mirror.parallel_dejournaling


@pytest.fixture(autouse=True)
def latest_schema_afterwards():
    """Going back to 0002 unapplies every later migration (and the tasks ones that depend on
    them): the tests after this one need the whole schema again."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_stored_settings_take_the_engines_values_and_go_back():
    old = migrate_to(BEFORE)
    Mirror = old.get_model("members", "Mirror")
    Mirror.objects.create(name="ONE")  # the old defaults
    Mirror.objects.create(
        name="TWO",
        failover_compression="compressed",
        async_compression="uncompressed",
        parallel_dejournaling="failover_only",
    )
    Mirror.objects.create(name="THREE", parallel_dejournaling="all")

    new = migrate_to(AFTER)
    assert settings_of(new, "ONE") == ("System Selected", "System Selected", "failover+dr")
    assert settings_of(new, "TWO") == ("Compressed", "Uncompressed", "failover")
    assert settings_of(new, "THREE")[2] == "all"

    back = migrate_to(BEFORE)
    assert settings_of(back, "ONE") == ("system_selected", "system_selected", "failover_dr")
    assert settings_of(back, "TWO") == ("compressed", "uncompressed", "failover_only")
    assert settings_of(back, "THREE")[2] == "all"
