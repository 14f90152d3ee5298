"""Agent Controlled takeover (guide §3.3.2.2, §3.3.2.3, §3.3.5.1; docs/takeover.md): with no
arbiter, a backup takes over only when the primary's agent confirms the primary down or forces
it down, and a backup that was not Active first fetches the latest journal through that agent.
Real member processes, one real agent per member's "host"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from engine.client.agent import AgentClient, AgentError
from engine.member.config import load_config
from engine.wire import mirror_secret
from engine.wire.tls import fingerprint_sha256, load_certificate
from tests.engine.agent_fixtures import (  # noqa: F401
    instance_entries,
    pki_fixture,
    start_agent_fixture,
)
from tests.engine.cluster_fixtures import make_cluster_fixture, wait_for  # noqa: F401
from tests.engine.test_takeover import read, write
from tests.engine.test_write_contracts import journal_bytes

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mirror_with_agents(make_cluster, start_agent):
    """A and B, each with its own agent, the agents' addresses in the mirror file."""

    def make(qos_ms: int = 1000, pki=None, pin: str | None = None, tls_secret: Path | None = None):
        """pki: the agents serve https with its agent certificate, which the mirror file pins
        (or `pin` instead, to pin the wrong one).  tls_secret: a TLS mirror whose members also
        share the mirror secret kept there (it proves them to each other's agents)."""
        settings = {"qos_timeout_ms": qos_ms}
        if tls_secret is not None:
            tls_secret.write_text(mirror_secret.new_secret() + "\n")
            settings["secret_file"] = str(tls_secret)
        cluster = make_cluster(
            ("failover", "failover"), start=False, mirror=settings, tls=tls_secret is not None
        )
        entries = {e["name"]: e for e in instance_entries(cluster)}
        agents = {name: start_agent(pki=pki, instances=[entries[name]]) for name in "AB"}
        text = cluster.path.read_text()
        scheme = "https" if pki else "http"
        for name in "AB":
            line = f'private = "{cluster.cfg.member(name).private}"'
            agent = f'agent = "{scheme}://127.0.0.1:{agents[name].port}"'
            if pki:
                fingerprint = pin or fingerprint_sha256(load_certificate(pki.agent.cert))
                agent += f'\nagent_cert_sha256 = "{fingerprint}"'
            text = text.replace(line, f"{line}\n{agent}")
        cluster.path.write_text(text)
        cluster.cfg = load_config(cluster.path)
        cluster.start()
        cluster.wait_backup_active()
        return cluster, agents

    return make


def test_on_a_tls_mirror_file_the_secret_proves_the_backup_to_the_primarys_agent(
    mirror_with_agents, tmp_path
):
    # TLS secures the data channel; the mirror secret, set as well, is what the partner's
    # agent checks (a mirror file has no other proof to offer it, docs/takeover.md)
    cluster, _ = mirror_with_agents(tls_secret=tmp_path / "partner-secret")
    before = f"before-{uuid.uuid4().hex}"
    with cluster.client() as c:  # over TLS, as the superservers speak it
        c.set("USER", "Takeover", (before,), before)
    cluster.kill9("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    assert "agent confirmed it down; this member was its Active backup" in cluster.log("B")
    assert read(cluster, "B", before) == before


def test_scenario_3_an_active_backup_takes_over_when_the_primarys_agent_confirms_it_down(
    mirror_with_agents,
):
    cluster, _ = mirror_with_agents()
    kept = f"kept-{uuid.uuid4().hex}"
    write(cluster, kept)
    cluster.kill9("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    assert "agent confirmed it down; this member was its Active backup" in cluster.log("B")
    assert read(cluster, "B", kept) == kept
    cluster.start("A")  # the former primary rejoins as backup
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)


def test_scenario_2_a_hung_primary_is_forced_down_by_its_agent_and_the_backup_takes_over(
    mirror_with_agents,
):
    cluster, _ = mirror_with_agents()
    proc = cluster.procs["A"]
    os.kill(proc.pid, signal.SIGSTOP)  # alive, silent: hung
    wait_for(lambda: cluster.role("B") == "primary", 20, "B primary")
    assert "agent forced it down" in cluster.log("B")
    assert proc.wait(10) == -signal.SIGKILL  # forced down, and it stays down
    cluster.procs.pop("A")
    write(cluster, f"after-{uuid.uuid4().hex}")


def test_scenario_1_a_non_active_backup_takes_over_with_the_latest_journal_from_the_agent(
    mirror_with_agents,
):
    # procedure U3 as well: the primary's host is up without its instance; the backup, which
    # was not Active, fetches the journal it lacks through the agent, then becomes primary
    cluster, _ = mirror_with_agents()
    cluster.kill9("B")
    only_on_a = f"only-on-a-{uuid.uuid4().hex}"
    write(cluster, only_on_a)  # answered after the trouble timeout: on A alone
    cluster.kill9("A")
    assert only_on_a.encode() not in journal_bytes(cluster, "B")
    cluster.start("B")
    wait_for(lambda: cluster.role("B") == "primary", 20, "B primary")
    assert "of its latest journal fetched through the agent" in cluster.log("B")
    assert read(cluster, "B", only_on_a) == only_on_a


def test_without_the_primarys_agent_the_backup_does_not_take_over(mirror_with_agents):
    cluster, agents = mirror_with_agents()
    agents["A"].stop()
    cluster.kill9("A")
    time.sleep(3)  # well past QoS and the trouble timeout (2 x 1 s)
    assert cluster.role("B") == "backup"
    assert "cannot reach the agent of primary A" in cluster.log("B")


def test_the_agent_refuses_a_partner_request_without_the_mirror_secret(mirror_with_agents):
    cluster, agents = mirror_with_agents()
    agent = agents["A"]
    stamp = f"{int(time.time())}:{os.urandom(12).hex()}"
    forged = {"asker": "B", "target": "A", "stamp": stamp, "proof": "00" * 32}
    with AgentClient(f"http://127.0.0.1:{agent.port}") as client:
        with pytest.raises(AgentError) as refused:
            client.call("POST", "/v1/failover/TEST/confirm-down", body=forged)
        assert refused.value.status == 403
        secret = (cluster.path.parent / "secret").read_text().strip()
        good = dict(forged, proof=mirror_secret.partner_proof(secret, "TEST", "B", "A", stamp))
        answer = client.call("POST", "/v1/failover/TEST/confirm-down", body=good)
        assert answer["state"] == "primary"  # alive and primary: nothing to take over
        with pytest.raises(AgentError) as replayed:
            client.call("POST", "/v1/failover/TEST/confirm-down", body=good)
        assert replayed.value.status == 401
    assert cluster.role("A") == "primary"  # nothing was done to it
    log = agent.log_path.read_text()
    assert "did not prove the mirror secret" in log and "stamp was used already" in log
    auth = json.loads((cluster.cfg.member("A").data_dir / "partner-auth.json").read_text())
    assert auth["member"] == "A"
    assert (
        oct((cluster.cfg.member("A").data_dir / "partner-auth.json").stat().st_mode)[-3:] == "600"
    )


def confirm_down(cluster, agent, target: str, asker: str, **extra) -> dict:
    """A partner's confirm-down request, signed as the asker's member would sign it."""
    secret = (cluster.path.parent / "secret").read_text().strip()
    stamp = f"{int(time.time())}:{os.urandom(12).hex()}"
    proof = mirror_secret.partner_proof(secret, "TEST", asker, target, stamp)
    body = {"asker": asker, "target": target, "stamp": stamp, "proof": proof, **extra}
    with AgentClient(f"http://127.0.0.1:{agent.port}") as client:
        return client.call("POST", "/v1/failover/TEST/confirm-down", body=body)


def failover_json(cluster, name: str) -> dict:
    return json.loads((cluster.cfg.member(name).data_dir / "failover.json").read_text())


def test_a_primary_confirmed_down_learns_who_took_over_before_it_can_start_again(
    mirror_with_agents,
):
    cluster, _ = mirror_with_agents()
    cluster.kill9("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    b_term = failover_json(cluster, "B")["term"]
    # told by its agent, while it was down, not by B after it restarted
    assert failover_json(cluster, "A") == {"term": b_term, "primary": "B", "no_failover": False}
    cluster.start("A")
    cluster.wait_backup_active(backup="A", primary="B", timeout=20)


def test_the_agent_never_says_down_while_an_instance_process_holds_the_data_directory(
    mirror_with_agents,
):
    # the restart race (docs/takeover.md): a process that started but does not answer yet
    # holds the data-directory lock, so its partner cannot take over from under it
    cluster, agents = mirror_with_agents()
    cluster.kill9("B")
    cluster.stop("A")
    before = failover_json(cluster, "A")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(cluster.cfg.member("A").data_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        answer = confirm_down(cluster, agents["A"], "A", "B", term=before["term"] + 1)
        assert answer["state"] == "starting"
        assert failover_json(cluster, "A") == before  # nothing told to a running process
    finally:
        holder.kill()
        holder.wait()
    answer = confirm_down(cluster, agents["A"], "A", "B", term=before["term"] + 1)
    assert answer["state"] == "down"
    assert failover_json(cluster, "A")["primary"] == "B"


def test_a_second_instance_process_on_the_same_data_directory_is_refused(mirror_with_agents):
    cluster, _ = mirror_with_agents()
    command = ["-m", "engine", "instance", "--config", str(cluster.path), "--member", "A"]
    second = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert second.returncode != 0
    assert "another instance process runs on" in second.stderr + second.stdout
    assert cluster.role("A") == "primary"  # the first one carries on


HOLD_LOCK = """
import sys, time
from pathlib import Path
from engine.storage import dir_lock
dir_lock.hold(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def test_over_https_the_partners_agent_is_trusted_by_the_certificate_the_mirror_pins(
    mirror_with_agents, pki
):
    # an agent's certificate need not come from the mirror's CA (this mirror has no TLS)
    cluster, _ = mirror_with_agents(pki=pki)
    cluster.kill9("A")
    wait_for(lambda: cluster.role("B") == "primary", 15, "B primary")
    assert "agent confirmed it down" in cluster.log("B")


def test_an_agent_presenting_another_certificate_is_not_believed(mirror_with_agents, pki):
    cluster, _ = mirror_with_agents(pki=pki, pin="ab" * 32)
    cluster.kill9("A")
    wait_for(lambda: "other than the one the mirror knows" in cluster.log("B"), 15, "refusal")
    assert cluster.role("B") == "backup"
