"""Operator actions on an instance need its admin token (engine/member/admin_auth.py): the token
in its data directory, new at every start; without it an action is refused with a clear
error, changes nothing, and the connection keeps serving.  Members' read-only questions to
each other stay open.  Real instance processes started without a shared token."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys

import pytest

from engine.client.agent import AgentError
from engine.client.app import AsyncClient, Client, EngineError
from engine.wire import tls
from engine.wire.admin_token import TOKEN_ENV, TOKEN_FILE, read_token
from tests.engine.agent_fixtures import instance_entries, start_agent_fixture  # noqa: F401
from tests.engine.cluster_fixtures import make_cluster_fixture  # noqa: F401
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_membership_join import create_tls_mirror, join, pending_names

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def no_shared_token(monkeypatch):
    """Instances make their own tokens and clients are given none unless a test says so."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def refused(client: Client, action: str, arg=None) -> EngineError:
    with pytest.raises(EngineError) as info:
        client.admin(action, arg)
    assert info.value.code == "unauthorized", info.value
    return info.value


def test_an_action_without_the_token_is_refused_and_changes_nothing(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    with Client([cluster.address("B")], follow_primary=False) as c:
        err = refused(c, "dismount", "APP")
        assert TOKEN_FILE in err.message
        refused(c, "stop_mirroring")
        refused(c, "digest", "APP")  # a full scan: not for anyone who asks
        # the same connection goes on serving, and what members ask each other stays open
        status = c.status()
        assert status["member"] == "B" and status["status"] != "Stopped"
        assert c.admin("copy_info", "APP")["database"] == "APP"
    with Client([cluster.address("B")], follow_primary=False, admin_token="guessed") as c:
        refused(c, "dismount", "APP")
    rows = {r["name"]: r["status"] for r in cluster.status("B")["databases"]}
    assert rows["APP"] == "Dejournaling"


def test_the_token_is_the_instances_file_readable_by_its_owner_only_and_new_each_start(
    make_cluster,
):
    cluster = make_cluster(("failover", "dr"))
    path = cluster.cfg.member("B").data_dir / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = read_token(cluster.cfg.member("B").data_dir)
    with Client([cluster.address("B")], follow_primary=False, admin_token=first) as c:
        assert c.admin("dismount", "APP")["status"] == "Database Dismounted"
    cluster.stop("B")
    cluster.start("B")
    second = read_token(cluster.cfg.member("B").data_dir)
    assert second != first
    with Client([cluster.address("B")], follow_primary=False, admin_token=first) as c:
        refused(c, "mount", "APP")
    with Client([cluster.address("B")], follow_primary=False, admin_token=second) as c:
        assert c.admin("mount", "APP")["already"] is False


def test_the_command_line_reads_the_token_from_the_members_data_directory(make_cluster):
    cluster = make_cluster(("failover", "dr"))
    cmd = [sys.executable, "-m", "engine", "admin", "--config", str(cluster.path), "--member", "B"]
    out = subprocess.run([*cmd, "dismount", "APP"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["status"] == "Database Dismounted"


def test_a_pending_member_cannot_authorize_itself_on_the_primary(hosts):  # noqa: F811
    a, b = create_tls_mirror(hosts, "A", "B")
    join(b, a, "failover")
    assert pending_names(a) == {"B"} or b.wait_state("Waiting")
    # B's own certificate opens the primary's superserver (it speaks TLS), not its actions
    b_tls = tls.superserver_client_context(b.data_dir)
    with Client([a.superserver], follow_primary=False, ssl=b_tls) as c:
        refused(c, "authorize_member", {"member": "B"})
        refused(c, "edit_mirror", {"settings": {"qos_timeout_ms": 9000}})
        # what a joining member asks before it joins stays open
        assert c.admin("mirror_info")["name"] == "DEMO"
    assert pending_names(a) == {"B"}
    a.admin("authorize_member", {"member": "B"})  # with the token, as its host's admin
    assert b.wait_state("Backup")["type"] == "Failover"


def test_the_agent_acts_with_the_token_it_reads_from_its_instances_data_directory(
    make_cluster,
    start_agent,
):
    cluster = make_cluster(("failover", "dr"))
    entries = instance_entries(cluster)
    agent = start_agent(instances=entries)
    with agent.client(credential=agent.credential) as client:
        assert client.dismount("B", "APP")["status"] == "Database Dismounted"
    # an agent configured with the wrong data directory cannot act, and says why
    wrong = start_agent(instances=[{**e, "data_dir": str(cluster.path.parent)} for e in entries])
    with wrong.client(credential=wrong.credential) as client:
        with pytest.raises(AgentError) as info:
            client.dismount("A", "APP")
        assert info.value.status == 502 and "data_dir" in str(info.value)


def test_only_the_blocking_client_takes_the_token_from_the_environment(make_cluster, monkeypatch):
    cluster = make_cluster(("failover", "dr"))
    monkeypatch.setenv(TOKEN_ENV, read_token(cluster.cfg.member("B").data_dir))
    # the operator's tool sends it...
    with Client([cluster.address("B")], follow_primary=False) as c:
        assert c.admin("dismount", "APP")["status"] == "Database Dismounted"

    # ...the AsyncClient members use to ask each other does not: an instance's own token
    # never leaves for another host
    async def ask():
        async with AsyncClient([cluster.address("B")], follow_primary=False) as c:
            return await c.admin("mount", "APP")

    with pytest.raises(EngineError) as info:
        asyncio.run(ask())
    assert info.value.code == "unauthorized"
