"""Hooks around becoming primary (guide §4.17; engine/member/hooks.py, docs/takeover.md
"Hooks"): executables named in the member's configuration, run by real member processes."""

from __future__ import annotations

import pytest

from engine.member.config import ConfigError, load_config
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for, write_config  # noqa: F401
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_promote_demote import backup_active

pytestmark = pytest.mark.timeout(120)


def script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def hooked(tmp_path, make_cluster, monkeypatch):
    """A and B; B's hooks: can_become_primary says yes only once `allow` exists,
    check_become_primary "acquires the virtual IP" (writes vip), the notifications count."""
    monkeypatch.setenv("ENGINE_HOOK_RETRY_S", "0.5")  # the members inherit it
    d = tmp_path / "hooks"
    d.mkdir()
    hooks = {
        "can_become_primary": script(d / "can", f"test -e {d}/allow"),
        "check_become_primary": script(
            d / "check", f'echo "$MIRROR_MEMBER term $MIRROR_TERM" > {d}/vip'
        ),
        "notify_become_primary": script(d / "notify", f"echo done >> {d}/became"),
        "notify_become_primary_failed": script(d / "failed", f"echo no >> {d}/failed-count"),
    }
    cluster = make_cluster(("failover", "failover"), member_extra={"B": {"hooks": hooks}})
    cluster.wait_backup_active()
    return cluster, d


def test_a_hook_that_says_no_holds_the_takeover_and_it_is_asked_again_until_yes(hooked):
    cluster, d = hooked
    cluster.stop("A")  # a graceful shutdown: A asks B to take over
    status = cluster.wait_status("B", "status", "Waiting", timeout=15)
    assert "a hook said no to becoming primary" in status["waiting_reason"]
    assert cluster.role("B") == "backup"
    wait_for(lambda: (d / "failed-count").exists(), 10, "notify_become_primary_failed")
    (d / "allow").touch()
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary once the hook agrees")
    assert (d / "vip").read_text().strip() == "B term 2"  # check_become_primary ran first
    wait_for(lambda: (d / "became").exists(), 10, "notify_become_primary")
    # one notification of failure per incident, however often the hook was asked
    assert (d / "failed-count").read_text().count("no") == 1
    assert "hook can_become_primary exited 1" in cluster.log("B")


def test_an_unknown_hook_is_refused_with_the_names_it_may_have(tmp_path):
    path = write_config(tmp_path, ("failover",), member_extra={"A": {"hooks": {"on_fire": "x"}}})
    with pytest.raises(ConfigError, match="unknown hook.*on_fire.*can_become_primary"):
        load_config(path)


def test_an_instance_configured_through_its_agent_runs_the_hooks_installed_in_its_directory(
    hosts,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setenv("ENGINE_HOOK_RETRY_S", "0.5")  # the instances inherit it
    a, b = hosts.add("A"), hosts.add("B")
    installed = b.data_dir / "hooks"
    installed.mkdir()
    script(installed / "can_become_primary", f"test -e {installed}/allow")
    a.admin("mirror_create", {"mirror": "HOOKED", "private": a.private})
    a.after_restart()
    join = {"mirror": "HOOKED", "address": a.superserver, "type": "failover"}
    b.admin("mirror_join", {**join, "private": b.private})
    b.after_restart()
    b.wait_state("Backup")
    assert b.status()["hooks"] == ["can_become_primary"]
    wait_for(lambda: backup_active(a, "B"), 20, "B Active")
    a.stop()  # a graceful shutdown hands over to B, whose hook says no
    status = b.wait_state("Waiting", timeout=15)
    assert "a hook said no to becoming primary" in status["waiting_reason"]
    (installed / "allow").touch()
    b.wait_state("Primary", timeout=15)
