"""The portal's workflow: an empty portal to a healthy mirror through the REST API, job dispatch
latency, and the refresh of a 16-member mirror.

    .venv/bin/python bench/workflow.py [--quick] [--json] [--embedded]

The API is driven in this process (rest_framework's APIClient as an admin: the real views,
serializers and members.actions) against real agents and instances started from build plans
(engine/cluster, as tests/e2e does). Jobs run on a real Celery worker: with Redis at
127.0.0.1:6379 a `celery -A portal worker --pool threads` process on logical databases 14/15
(flushed before and after); without Redis, or with --embedded, the embedded worker (a thread of
this process, in-memory broker). The database is PostgreSQL bench_workflow_<pid> (dropped
afterwards) when reachable and not --embedded, else a SQLite file (WAL) in a temporary directory.

- build_mirror: wall seconds from the first POST /hosts/ to the last job of a healthy TLS mirror
  built as tests/e2e/test_rest_builds_a_mirror.py builds it (2 failover members, a DR and a
  reporting async; USER created, APP added and downloaded, LEGACY restored, activated, caught
  up). What happens outside the portal (200 rows written per database, the primary's local
  databases, the file copy) is timed apart and subtracted; starting the processes is not counted.
- job_dispatch: a job's started_at (the worker's clock) minus the wall clock just before its
  POST /hosts/{id}/check/, one job at a time (each ends before the next is sent), after 3
  unmeasured. Target p99 <= 100 ms. Named job_dispatch_embedded on the in-memory broker.
- refresh_16_members: finished_at - started_at of POST /mirrors/{id}/refresh/ jobs on a mirror of
  2 failover + 14 async members (4 hosts x 4 instances, no TLS between members, one database),
  itself built through the API. Target p99 <= 500 ms. refresh_16_members_inline: the same reading
  and recording called in this process, without Celery.

Measured on this machine (2 cores), shared by the portal, the worker, the agents and instances
(and whatever else runs: each row carries the 1-minute load average at the end, load_1m).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, free_ports, percentile, stderr_log, terminate  # puts ROOT on sys.path

from engine.client.agent import AgentClient
from engine.client.app import Client
from engine.cluster import hosts as cluster
from engine.cluster.launcher import stop_pids
from engine.cluster.plan import load_plan
from engine.storage.store import Store
from engine.wire.tls import superserver_client_context

log = stderr_log("workflow")
V1 = "/api/v1"
REDIS_DBS = (14, 15)
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS_MS = {"job_dispatch": 100.0, "refresh_16_members": 500.0}
ROWS, WARMUP = 200, 3
SHOP_HOSTS = {"hosta": ["A"], "hostb": ["B"], "hostc": ["DR", "REP"]}
SHOP = {"A": "failover", "B": "failover", "DR": "dr", "REP": "ro_reporting"}
BIG = {"F1": "failover", "F2": "failover"}
BIG |= {f"A{i:02}": ("dr", "ro_reporting")[i % 2] for i in range(1, 15)}
BIG_HOSTS = {f"host{h}": list(BIG)[4 * h : 4 * h + 4] for h in range(4)}


# -- the services: Redis, PostgreSQL, Django, the worker --------------------------------------
def redis(flush: bool = False) -> bool:
    """Is Redis up at 127.0.0.1:6379? With flush, empty the bench's databases there too."""
    import redis as client

    try:
        for db in REDIS_DBS:
            server = client.Redis("127.0.0.1", 6379, db=db, socket_timeout=2)
            server.flushdb() if flush else server.ping()
    except client.RedisError:
        return False
    return True


def postgres(*statements: str) -> bool:
    """Run statements on the server's postgres database; False when it cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            for sql in statements:
                admin.execute(sql)
    except psycopg.OperationalError as exc:
        log(f"PostgreSQL at 127.0.0.1:5432 not usable: {exc.__class__.__name__}")
        return False
    return True


def setup_django(tmp: Path, on_redis: bool, pg_url: str | None):
    """Settings from the environment (before django.setup()), a migrated database, an admin."""
    for key in list(os.environ):
        if key.startswith(("REDIS_", "PORTAL_AGENT_TLS_")) or key == "DATABASE_URL":
            del os.environ[key]
    (tmp / "static").mkdir(exist_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        PORTAL_VAR_DIR=str(tmp),  # without DATABASE_URL: tmp/portal.sqlite3, in WAL mode
        PORTAL_EMBEDDED_WORKER="false",
        PORTAL_LOG_LEVEL="WARNING",
        DJANGO_DEBUG="false",
    )
    if pg_url:
        os.environ["DATABASE_URL"] = pg_url
    if on_redis:
        os.environ["REDIS_URL"] = "redis://127.0.0.1:6379"
        for use, db in zip(("BROKER", "RESULTS", "CHANNELS", "CACHE"), REDIS_DBS * 2, strict=True):
            os.environ[f"REDIS_DB_{use}"] = str(db)
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    admin = User.objects.create_user("bench-admin", password=None)
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    return admin


@contextlib.contextmanager
def worker(on_redis: bool, identity: dict, tmp: Path):
    """The Celery worker, presenting the plan's portal identity to the agents."""
    from django.conf import settings

    from portal.celery import app

    settings.PORTAL_AGENT_TLS = identity  # for this process: an embedded worker, inline calls
    if not on_redis:
        from portal.embedded_worker import start_embedded_worker

        start_embedded_worker(concurrency=2)
        yield
        return
    env = dict(os.environ, **{f"PORTAL_AGENT_TLS_{k.upper()}": v for k, v in identity.items()})
    cmd = [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "threads"]
    cmd += ["--concurrency", "2", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    cmd += ["--loglevel", "WARNING", "--hostname", f"bench-workflow-{os.getpid()}@localhost"]
    with open(tmp / "worker.log", "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {tmp / 'worker.log'}")
        yield
    finally:
        terminate(proc)


# -- real hosts: agents and instances that are not members yet --------------------------------
def plan_text(root: Path, hosts: dict, members: dict, tls: bool) -> str:
    ports = iter(free_ports(len(hosts) + 2 * len(members)))
    lines = ["[mirror]", 'name = "UNUSED"', f'data_root = "{root}"', f"tls = {str(tls).lower()}"]
    for host, instances in hosts.items():
        lines += ["[[hosts]]", f'name = "{host}"', f"agent = {next(ports)}"]
        lines += [f"instances = {json.dumps(instances)}"]
    for name, kind in members.items():
        lines += ["[[members]]", f'name = "{name}"', f'type = "{kind}"']
        lines += [f"superserver = {next(ports)}"]
        lines += [f"private = {next(ports)}"] if kind == "failover" else []
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def hosts(root: Path, host_map: dict, members: dict, tls: bool):
    """Yields (plan, the launcher's agent clients, the portal identity, seconds to start)."""
    root.mkdir(parents=True)
    (root / "plan.toml").write_text(plan_text(root, host_map, members, tls))
    plan = load_plan(root / "plan.toml")
    identities = cluster.make_pki(plan)
    me = identities["client"]
    agents = {
        h.name: AgentClient(h.url, cert=me["cert"], key=me["key"], ca=me["ca"], timeout=30)
        for h in plan.hosts
    }
    entries: list[dict] = []
    try:
        started = time.monotonic()
        entries = cluster.start_processes(plan, identities)
        cluster.wait_started(plan, entries, agents)
        yield plan, agents, identities["portal"], time.monotonic() - started
    finally:
        for agent in agents.values():
            agent.close()
        stop_pids([e for e in entries if e["kind"] == "agent"])
        stop_pids([e for e in entries if e["kind"] == "instance"])


# -- the API, as a script uses it --------------------------------------------------------------
class Api:
    def __init__(self, user):
        from rest_framework.test import APIClient

        self.client = APIClient()
        self.client.force_authenticate(user)

    def get(self, path: str, **params) -> dict:
        return self._answer(self.client.get(V1 + path, params), 200)

    def post(self, path: str, body: dict | None = None, expect: int = 202) -> dict:
        return self._answer(self.client.post(V1 + path, body or {}, format="json"), expect)

    def _answer(self, response, expect: int) -> dict:
        if response.status_code != expect:
            raise RuntimeError(f"{response.status_code}: {response.content[:500]!r}")
        return response.json()

    def run(self, path: str, body: dict | None = None, timeout: float = 180) -> dict:
        """POST an operation and wait (polling GET /jobs/{id}/) for its job to succeed."""
        job = self.post(path, body)
        deadline = time.monotonic() + timeout
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{job['kind']} still {job['state']} after {timeout:g} s")
            time.sleep(0.02)
            job = self.get(f"/jobs/{job['id']}/")
        if job["state"] != "succeeded":
            raise RuntimeError(f"{job['kind']} {job['state']}: {job['error']}")
        return job

    def one(self, path: str, **params) -> dict:
        (row,) = self.get(path, **params)["results"]
        return row


def register_hosts(api: Api, plan) -> dict[str, int]:
    ids = {}
    for host in plan.hosts:
        body = {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port}
        ids[host.name] = api.post("/hosts/", body, expect=201)["id"]
        api.run(f"/hosts/{ids[host.name]}/check/")
    return ids


def join(api: Api, plan, mirror: int, hosts_ids: dict, name: str) -> dict:
    member = plan.member(name)
    body = {"host": hosts_ids[member.host], "instance": name, "member_type": member.type}
    body |= {"private": member.private} if member.private else {}
    return api.run(f"/mirrors/{mirror}/join/", body)


# -- 1. an empty portal to the healthy TLS mirror ----------------------------------------------
class Outside:
    """Time spent outside the portal (writing data, files on the hosts), to subtract."""

    s = 0.0

    def __call__(self, func, *args) -> None:
        started = time.monotonic()
        func(*args)
        self.s += time.monotonic() - started


def write(plan, db: str, label: str) -> None:
    # the TLS mirror's superserver speaks TLS: reached as the host's tools reach it
    ssl = superserver_client_context(plan.data_dir(plan.member("A")))
    with Client([plan.member("A").superserver], timeout=30, ssl=ssl) as client:
        client.pipeline([("set", db, "E2E", (label, i), f"{label} {i}") for i in range(ROWS)])


def local_database(plan, agents, db: str) -> None:
    agents[plan.member("A").host].create_database("A", db, mirrored=False)
    store = Store.open(str(plan.data_dir(plan.member("A")) / "db" / db))
    try:
        for i in range(ROWS):
            store.set("E2E", ("existing", i), f"existing {i}")
    finally:
        store.close()


def copy_files(plan, db: str, names) -> None:
    source = plan.data_dir(plan.member("A")) / "db" / db
    for name in names:
        cluster.copy_database_files(source, plan.data_dir(plan.member(name)) / "db" / db)


def build_mirror(api: Api, plan, agents) -> dict:
    outside, others = Outside(), ("B", "DR", "REP")
    started = time.monotonic()
    host_ids = register_hosts(api, plan)
    for member in plan.members:
        instance = api.one("/instances/", name=member.name)
        paths = map(str, cluster.member_tls(plan, member))
        files = dict(zip(("cert", "key", "ca"), paths, strict=True))
        api.run(f"/instances/{instance['id']}/tls/", files)
    a = plan.member("A")
    body = {"host": host_ids[a.host], "instance": "A", "name": "shop", "private": a.private}
    api.run("/mirrors/", body | {"requires_tls": True, "qos_timeout_ms": 4000})
    mirror = api.one("/mirrors/", name="SHOP")["id"]
    for name in others:
        join(api, plan, mirror, host_ids, name)
    for row in api.get("/pending-members/", mirror=mirror)["results"]:
        api.run(f"/pending-members/{row['id']}/authorize/")
    api.run("/databases/", {"mirror": mirror, "name": "user"})
    outside(write, plan, "USER", "created")
    outside(local_database, plan, agents, "APP")
    api.run("/databases/", {"mirror": mirror, "name": "app", "how": "add"})
    outside(local_database, plan, agents, "LEGACY")
    api.run("/databases/", {"mirror": mirror, "name": "legacy", "how": "add", "members": []})
    legacy = api.one("/databases/", name="LEGACY")["id"]
    member_ids = {m["name"]: m["id"] for m in api.get("/members/", mirror=mirror)["results"]}
    on_a = api.one("/database-copies/", member=member_ids["A"], database=legacy)["id"]
    api.run(f"/database-copies/{on_a}/dismount/")
    outside(copy_files, plan, "LEGACY", others)
    api.run(f"/database-copies/{on_a}/mount/", {})
    outside(write, plan, "LEGACY", "after-copy")
    for name in others:
        api.run(f"/members/{member_ids[name]}/add-database/", {"name": "LEGACY"})
        copy = api.one("/database-copies/", member=member_ids[name], database=legacy)["id"]
        api.run(f"/database-copies/{copy}/activate/")
        api.run(f"/members/{member_ids[name]}/catchup/", {"databases": ["LEGACY"]})
    total = time.monotonic() - started
    check_healthy(plan, agents)
    seconds = {"s": total - outside.s, "total_s": total, "outside_portal_s": outside.s}
    return {"name": "build_mirror"} | {k: round(v, 2) for k, v in seconds.items()}


def check_healthy(plan, agents) -> None:
    """Asked of the members, not the portal: a primary, a backup, two asyncs, every copy current."""
    want = {"A": "Primary", "B": "Backup", "DR": "Connected", "REP": "Connected"}
    for name, status in want.items():
        answer = agents[plan.member(name).host].databases(name)
        copies = {db["name"]: db["status"] for db in answer["databases"]}
        settled = "Normal" if name == "A" else "Dejournaling"
        if answer["status"] != status or copies != dict.fromkeys(
            ("USER", "APP", "LEGACY"), settled
        ):
            raise RuntimeError(f"{name} is not healthy: {answer['status']}, {copies}")


# -- 2. job dispatch; 3. refresh of a 16-member mirror ------------------------------------------
def wait_row(job_id: int, timeout: float = 60):
    """The job's row once final (polled with the ORM, lighter than the API)."""
    from tasks.models import Job

    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.get(pk=job_id)
        if job.is_final:
            if job.state != Job.SUCCEEDED:
                raise RuntimeError(f"{job.kind} {job.state}: {job.error}")
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"{job.kind} still {job.state} after {timeout:g} s")
        time.sleep(0.005)


def job_dispatch(api: Api, host_id: int, n: int) -> tuple[list[float], list[float]]:
    dispatch, post = [], []
    for i in range(WARMUP + n):
        sent = time.time()
        job_id = api.post(f"/hosts/{host_id}/check/")["id"]
        answered = time.time()
        job = wait_row(job_id)
        if i >= WARMUP:
            dispatch.append((job.started_at.timestamp() - sent) * 1000)
            post.append((answered - sent) * 1000)
    return dispatch, post


def build_big(api: Api, plan) -> int:
    host_ids = register_hosts(api, plan)
    first = plan.member("F1")
    body = {"host": host_ids[first.host], "instance": "F1", "name": "big"}
    api.run("/mirrors/", body | {"private": first.private})
    mirror = api.one("/mirrors/", name="BIG")["id"]
    for name in list(BIG)[1:]:
        join(api, plan, mirror, host_ids, name)
    api.run("/databases/", {"mirror": mirror, "name": "user"})
    return mirror


def refreshes(api: Api, mirror: int, n: int) -> list[float]:
    times = []
    for _ in range(n):
        job = wait_row(api.post(f"/mirrors/{mirror}/refresh/")["id"])
        members = job.result["members"]
        if len(members) != 16 or job.result["unreached"] or members["F1"] != "Primary":
            raise RuntimeError(f"the 16-member mirror is not whole: {job.result}")
        times.append((job.finished_at - job.started_at).total_seconds() * 1000)
    return times


def refreshes_inline(mirror_id: int, n: int) -> list[float]:
    from members.models import Mirror
    from members.operations.base import read
    from members.reconcile import record_observed_mirror

    times = []
    for _ in range(n):
        started = time.perf_counter()
        record_observed_mirror(read(Mirror.objects.get(pk=mirror_id)))
        times.append((time.perf_counter() - started) * 1000)
    return times


def figures(name: str, values: list[float], setup: str, **extra) -> dict:
    row = {"name": name, "p50_ms": round(percentile(values, 50), 2)}
    row |= {"p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values), 2)}
    row |= {"n": len(values), "setup": setup, **extra}
    target = TARGETS_MS.get(name.removesuffix("_embedded"))
    if target is not None:
        row |= {"target_p99_ms": target, "met": row["p99_ms"] <= target}
    return row


@contextlib.contextmanager
def site(tmp: Path, name: str, host_map: dict, members: dict, tls: bool, on_redis: bool):
    """Real hosts and a worker that presents their plan's portal identity."""
    with (
        hosts(tmp / name, host_map, members, tls) as (plan, agents, identity, start_s),
        worker(on_redis, identity, tmp),
    ):
        yield plan, agents, start_s


def run(api: Api, tmp: Path, on_redis: bool, quick: bool, setup: str) -> list[dict]:
    with site(tmp, "shop", SHOP_HOSTS, SHOP, True, on_redis) as (plan, agents, start_s):
        log("building the TLS mirror SHOP through the API")
        build = build_mirror(api, plan, agents) | {"hosts_start_s": round(start_s, 2)}
        log("job dispatch: check_host jobs, one at a time")
        host = api.one("/hosts/", name="hosta")["id"]
        dispatch, post = job_dispatch(api, host, 30 if quick else 200)
    post_p50 = round(percentile(post, 50), 2)
    name = "job_dispatch" if on_redis else "job_dispatch_embedded"
    results = [build | {"setup": setup}, figures(name, dispatch, setup, post_p50_ms=post_p50)]
    with site(tmp, "big", BIG_HOSTS, BIG, False, on_redis) as (plan, _, _):
        log("building the 16-member mirror BIG through the API")
        started = time.monotonic()
        mirror = build_big(api, plan)
        built = {"built_through": "API", "build_s": round(time.monotonic() - started, 2)}
        n = 10 if quick else 50
        results.append(figures("refresh_16_members", refreshes(api, mirror, n), setup, **built))
        inline = refreshes_inline(mirror, n)
        results.append(figures("refresh_16_members_inline", inline, "this process, no Celery"))
    return results


def show(results: list[dict]) -> None:
    print(f"Portal workflow ({results[0]['setup']}; 2 cores, load {results[0]['load_1m']} at end)")
    build = results[0]
    print(
        f"  build_mirror: {build['s']} s through the API (total {build['total_s']} s, "
        f"{build['outside_portal_s']} s outside the portal subtracted; "
        f"hosts started in {build['hosts_start_s']} s, not counted)"
    )
    for row in results[1:]:
        met = {True: "met", False: "MISSED"}.get(row.get("met"))
        verdict = f"  target p99 <= {row['target_p99_ms']:g} ms: {met}" if met else ""
        print(
            f"  {row['name']}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"max {row['max_ms']} ms (n={row['n']}){verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs (the whole mirror still)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--embedded", action="store_true", help="embedded worker and SQLite")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below cleans up
    tmp = Path(tempfile.mkdtemp(prefix="bench-workflow-"))
    on_redis = not args.embedded and redis(flush=True)
    pg_name = f"bench_workflow_{os.getpid()}"
    drop = f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'
    on_pg = not args.embedded and postgres(drop, f'CREATE DATABASE "{pg_name}"')
    pg_url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}" if on_pg else None
    kind = "Celery worker process, Redis db 14/15" if on_redis else "embedded worker, memory broker"
    setup = f"{kind}, {'PostgreSQL' if on_pg else 'SQLite'}"
    if not on_redis:
        log("Redis not used: the embedded worker runs the jobs (dispatch on the in-memory broker)")
    try:
        results = run(Api(setup_django(tmp, on_redis, pg_url)), tmp, on_redis, args.quick, setup)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if on_pg:
            postgres(drop)
        if on_redis:
            redis(flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    for row in results:  # the machine is shared: how busy it was, beside the figures
        row["load_1m"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps({"benchmark": "workflow", "results": results}))
    else:
        show(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
