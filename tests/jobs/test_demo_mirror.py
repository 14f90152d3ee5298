"""The demo mirror of `make run`, for real: a TLS mirror built by `python -m engine cluster build`
(agents and instances as processes), registered in the portal by `manage.py ensure_demo_mirror`,
and checked by the portal's "check host" job over mutual TLS with the certificate the build
made for the portal. Beside the mirror runs a spare instance, in no mirror, which the import
leaves alone and the host check lists with its certificate (ready for the wizard)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import AuditEvent
from engine.cluster.launcher import is_running
from members import services
from members.models import DatabaseCopy, Host, Instance, Member, Mirror, MirroredDatabase
from tasks.models import Job
from tasks.services import start_job
from tests import factories
from tests.engine.cluster_fixtures import free_ports
from tests.jobs.conftest import wait_until_final

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
HOSTS = {"alpha": ["A", "SPARE"], "beta": ["B", "REP"]}
MEMBERS = {"A": "failover", "B": "failover", "REP": "ro_reporting"}
SPARES = ["SPARE"]


def plan_text(ports) -> str:
    ports = iter(ports)
    lines = ["[mirror]", 'name = "SHOP"', 'data_root = "var"', "tls = true"]
    lines += ["qos_timeout_ms = 4000", 'parallel_dejournaling = "all"', ""]
    for host, instances in HOSTS.items():
        lines += ["[[hosts]]", f'name = "{host}"', f"agent = {next(ports)}"]
        lines += [f"instances = {json.dumps(instances)}", ""]
    for name, mtype in MEMBERS.items():
        lines += ["[[members]]", f'name = "{name}"', f'type = "{mtype}"']
        lines.append(f"superserver = {next(ports)}")
        if mtype == "failover":
            lines.append(f"private = {next(ports)}")
        lines.append("")
    for name in SPARES:
        lines += ["[[spares]]", f'name = "{name}"', f"superserver = {next(ports)}"]
        lines += [f"private = {next(ports)}", ""]
    lines += ["[[databases]]", 'name = "ORDERS"', 'how = "create"', "rows = 20", ""]
    lines += ["[[databases]]", 'name = "STOCK"', 'how = "create"', "rows = 20"]
    lines.append('members = ["A", "B"]')  # a reporting async may hold only some
    return "\n".join(lines) + "\n"


def cluster(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A plan built by a real `cluster build`: (plan path, state file contents)."""
    directory = tmp_path_factory.mktemp("demo")
    plan = directory / "plan.toml"
    plan.write_text(plan_text(free_ports(len(HOSTS) + len(MEMBERS) + 2 + 2 * len(SPARES))))
    build = cluster("build", "-f", str(plan))
    state_path = directory / "var" / "cluster-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    try:
        assert build.returncode == 0, build.stdout + build.stderr
        # what the teardown below checks is stopped: every instance and agent of the plan
        started = sorted((e["kind"], e["name"]) for e in state["processes"])
        instances = [("instance", name) for name in [*MEMBERS, *SPARES]]
        assert started == sorted([("agent", h) for h in HOSTS] + instances)
        yield plan, state
    finally:
        if state_path.exists():
            cluster("down", "-f", str(plan))
        for e in state.get("processes", []):
            assert not is_running(e), f"{e['kind']} {e['name']} still runs"


def ensure_demo_mirror(state_file: Path) -> str:
    out = io.StringIO()
    call_command("ensure_demo_mirror", "--state", str(state_file), stdout=out)
    return out.getvalue()


def configuration() -> dict:
    """What the import records as configuration (not observations such as a member's status
    or a host's round trip), as comparable values."""
    return {
        "mirror": sorted(Mirror.objects.values_list("name", "requires_tls", "qos_timeout_ms")),
        "hosts": sorted(Host.objects.values_list("name", "address", "agent_port", "tls_dn")),
        "members": sorted(
            Member.objects.values_list(
                "name", "member_type", "host__name", "superserver_port", "x509_dn", "authorization"
            )
        ),
        "databases": sorted(MirroredDatabase.objects.values_list("name", flat=True)),
        "copies": sorted(
            DatabaseCopy.objects.values_list("database__name", "member__name", "status")
        ),
    }


@pytest.fixture
def demo_portal_identity(demo, settings, monkeypatch):
    """The portal presents the certificate the build made for it (in this process and in a
    worker process started after this fixture), as `make run` arranges."""
    _, state = demo
    for key, value in state["portal"].items():
        monkeypatch.setenv(f"PORTAL_AGENT_TLS_{key.upper()}", value)
    settings.PORTAL_AGENT_TLS = dict(state["portal"])
    return state["portal"]


def test_the_built_mirror_is_imported_with_its_hosts_members_and_databases(
    demo, demo_portal_identity, db
):
    plan, state = demo
    state_file = plan.parent / "var" / "cluster-state.json"

    out = ensure_demo_mirror(state_file)

    assert "Demo mirror SHOP imported from" in out
    mirror = Mirror.objects.get()
    assert (mirror.name, mirror.requires_tls, mirror.qos_timeout_ms) == ("SHOP", True, 4000)
    assert mirror.parallel_dejournaling == "all"
    hosts = {h.name: h for h in Host.objects.all()}
    assert set(hosts) == set(HOSTS)
    for name, host in hosts.items():
        assert f"https://{host.address}:{host.agent_port}" == state["agents"][name]
        # the DN the agent presented at its first check
        assert host.tls_dn == f"CN=agent-{name},O=Mirror Portal" and not host.credential
    members = {m.name: m for m in Member.objects.filter(mirror=mirror)}
    assert {name: m.member_type for name, m in members.items()} == MEMBERS
    assert {name: m.host.name for name, m in members.items()} == {
        name: host for host, names in HOSTS.items() for name in names if name in MEMBERS
    }
    assert Member.objects.count() == len(MEMBERS)  # the spare is no member of anything
    assert all(m.authorization == Member.AUTHORIZED for m in members.values())
    assert {name: m.status for name, m in members.items()} == {
        "A": "Primary",
        "B": "Backup",
        "REP": "Connected",
    }
    assert members["B"].x509_dn == "CN=B,O=Mirror Portal"
    assert members["A"].mirror_private_address == "127.0.0.1"
    assert members["REP"].mirror_private_address == ""
    assert members["REP"].agent_port == hosts["beta"].agent_port
    copies = {
        (c.database.name, c.member.name): c.status
        for c in DatabaseCopy.objects.select_related("database", "member")
    }
    assert copies == {
        ("ORDERS", "A"): "Normal",
        ("ORDERS", "B"): "Dejournaling",
        ("ORDERS", "REP"): "Dejournaling",
        ("STOCK", "A"): "Normal",
        ("STOCK", "B"): "Dejournaling",
    }
    # recorded as the members reported it: the member is the actor of each change
    added = AuditEvent.objects.filter(action="member.add")
    assert sorted(added.values_list("actor_name", "object_repr")) == [
        ("member A", f"SHOP/{n}") for n in ("A", "B", "REP")
    ]

    before = configuration()
    again = ensure_demo_mirror(state_file)

    assert "imported from" in again
    assert configuration() == before
    assert AuditEvent.objects.filter(action="member.add").count() == 3


def test_a_mirror_no_demo_instance_reports_any_more_is_forgotten_one_elsewhere_kept(
    demo, demo_portal_identity, db
):
    plan, _ = demo
    state_file = plan.parent / "var" / "cluster-state.json"
    ensure_demo_mirror(state_file)
    demo_host = Host.objects.get(name="alpha")
    vanished = factories.mirror(name="GONE")  # made on the demo before it was rebuilt
    on_demo = {"host": demo_host, "agent_port": demo_host.agent_port}
    factories.member(vanished, name="SPARE", **on_demo)
    elsewhere = factories.mirror(name="ELSEWHERE")
    factories.member(elsewhere, name="X", host=factories.host(name="far"))
    factories.member(elsewhere, name="Y", **on_demo)

    out = ensure_demo_mirror(state_file)

    assert "Forgot mirror GONE" in out
    assert set(Mirror.objects.values_list("name", flat=True)) == {"SHOP", "ELSEWHERE"}
    assert AuditEvent.objects.filter(action="mirror.forget", object_repr="GONE").exists()


def test_importing_again_puts_back_a_host_whose_agent_port_was_changed(
    demo, demo_portal_identity, db
):
    plan, _ = demo
    state_file = plan.parent / "var" / "cluster-state.json"
    ensure_demo_mirror(state_file)
    host = Host.objects.get(name="alpha")
    port = host.agent_port
    (elsewhere,) = free_ports(1)  # not another host's port (ports are handed out in turn)
    services.update_host(None, host, agent_port=elsewhere)

    ensure_demo_mirror(state_file)

    assert Host.objects.get(name="alpha").agent_port == port


def test_make_runs_commands_import_the_demo_mirror_in_fresh_processes(demo, tmp_path):
    """As scripts/run-portal runs them: each command a new interpreter on the portal's own
    SQLite file (the in-process tests share modules a lone command must load itself)."""
    plan, state = demo
    env = dict(os.environ, PORTAL_VAR_DIR=str(tmp_path))
    for name in ("DATABASE_URL", "REDIS_URL"):  # make run's embedded default
        env.pop(name, None)
    env.update({f"PORTAL_AGENT_TLS_{k.upper()}": v for k, v in state["portal"].items()})

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    migrated = manage("migrate", "--noinput", "-v0")
    imported = manage(
        "ensure_demo_mirror", "--state", str(plan.parent / "var" / "cluster-state.json")
    )

    assert migrated.returncode == 0, migrated.stderr
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "Demo mirror SHOP imported from" in imported.stdout
    assert "member REP recorded (ro_reporting)" in imported.stdout
    assert "Instances in no mirror yet, for a new one: SPARE on alpha" in imported.stdout


def test_check_host_reaches_every_demo_agent_over_mutual_tls_as_the_portal(
    demo, demo_portal_identity, celery_worker, admin_user
):
    plan, _ = demo
    ensure_demo_mirror(plan.parent / "var" / "cluster-state.json")

    hosts = list(Host.objects.all())
    assert sorted(h.name for h in hosts) == sorted(HOSTS)
    for host in hosts:
        job = wait_until_final(start_job(admin_user, "check_host", host))

        assert job.state == Job.SUCCEEDED, job.error
        agent = job.result["agent"]
        assert agent["auth"] == "mutual-tls"
        assert agent["instances"] == len(HOSTS[host.name])
        assert agent["certificate"]["subject_dn"] == host.tls_dn
        host.refresh_from_db()
        assert host.reachable is True and host.last_check_error == ""
        # what the wizard offers for a new mirror: the spares, up, in no mirror, with the
        # certificate the build set up for them
        seen = {i.name: i for i in Instance.objects.filter(host=host)}
        assert sorted(seen) == sorted(HOSTS[host.name])
        for name in set(seen) & set(SPARES):
            spare = seen[name]
            assert (spare.state, spare.mirror_name, spare.member_name) == ("up", "", "")
            assert spare.certificate_dn == f"CN={name},O=Mirror Portal"
        for name in set(seen) & set(MEMBERS):
            assert seen[name].mirror_name == "SHOP"
