"""Latency of the REST API's list and detail endpoints, served by a real uvicorn process.

Seeds 50 mirrors x 16 members (plus hosts and mirrored databases with copies) into a throwaway
database, starts `uvicorn portal.asgi:application` on a free loopback port against it, and times
sequential keep-alive requests authenticated with a Bearer token. Runs on SQLite, then on
PostgreSQL at 127.0.0.1:5432 (database bench_api_<pid>, dropped afterwards; skipped with a
message when PostgreSQL is not reachable). Target: p99 <= 50 ms per request.

    .venv/bin/python bench/api.py [--quick] [--json]
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, free_ports, terminate  # also puts ROOT on sys.path (for seed())

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_P99_MS = 50.0
MIRRORS, MEMBERS_PER_MIRROR, DATABASES_PER_MIRROR, HOSTS = 50, 16, 2, 100


# --- Seeding (runs in a child process, with DATABASE_URL pointing at the bench database) ------
def seed() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.contrib.auth.models import Group, User

    from accounts.services import create_token
    from members import services
    from members.models import DatabaseCopy, Member, Mirror, MirroredDatabase

    def saved(obj):
        """A mirror's rows are what its members answered (a job records them); seeded here
        directly, each checked by the model's rules first."""
        obj.full_clean()
        obj.save()
        return obj

    admin = User.objects.create_user("bench-admin", password=None)
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    hosts = [
        services.register_host(admin, name=f"host{i}", address=f"10.1.{i // 250}.{i % 250 + 1}")
        for i in range(HOSTS)
    ]
    member = database = mirror = None
    for m in range(MIRRORS):
        mirror = saved(Mirror(name=f"MIRROR{m}", requires_tls=m % 5 == 0))
        failovers = []
        for i in range(MEMBERS_PER_MIRROR):
            kind = "failover" if i < 2 else ("dr", "ro_reporting")[i % 2]
            host = hosts[(m * MEMBERS_PER_MIRROR + i) % HOSTS]
            waits = mirror.requires_tls and i > 0  # on a TLS mirror, until authorized
            member = saved(
                Member(
                    mirror=mirror,
                    name=f"M{m}N{i}",
                    member_type=kind,
                    host=host,
                    superserver_address=host.address,
                    superserver_port=1972,
                    authorization=Member.PENDING if waits else Member.AUTHORIZED,
                )
            )
            if kind == "failover":
                failovers.append(member)
        for d in range(DATABASES_PER_MIRROR):
            database = saved(MirroredDatabase(mirror=mirror, name=f"DB{m}X{d}"))
            for copy_holder in failovers:
                saved(DatabaseCopy(database=database, member=copy_holder))
    _, secret = create_token(admin, name="bench")
    return {
        "token": secret,
        "mirror": mirror.pk,
        "member": member.pk,
        "host": hosts[0].pk,
        "database": database.pk,
    }


# --- Serving and measuring --------------------------------------------------------------------
def bench_env(database_url: str, var_dir: str) -> dict:
    Path(var_dir, "static").mkdir(exist_ok=True)  # whitenoise warns about a missing STATIC_ROOT
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=database_url,
        PORTAL_VAR_DIR=var_dir,
        PORTAL_EMBEDDED_WORKER="false",
        DJANGO_DEBUG="false",
        PORTAL_LOG_LEVEL="WARNING",
    )
    return env


def run(cmd, env) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Server:
    """uvicorn serving the portal; stopped (and waited for) on exit."""

    def __init__(self, env):
        self.port = free_ports(1)[0]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
        )

    def __enter__(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("uvicorn did not answer /healthz within 30 s")

    def __exit__(self, *exc):
        terminate(self.proc)


def measure(port: int, token: str, path: str, requests: int, warmup: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    latencies = []
    for i in range(warmup + requests):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        if i >= warmup:
            latencies.append(elapsed * 1000)
    conn.close()
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "ops_per_s": round(len(latencies) / (sum(latencies) / 1000), 1),
        "requests": len(latencies),
        "response_bytes": len(body),
    }


def endpoints(ids: dict) -> list[str]:
    v1 = "/api/v1"
    return [
        f"{v1}/mirrors/",
        f"{v1}/mirrors/{ids['mirror']}/",
        f"{v1}/members/",
        f"{v1}/members/?mirror={ids['mirror']}",
        f"{v1}/members/{ids['member']}/",
        f"{v1}/hosts/",
        f"{v1}/hosts/{ids['host']}/",
        f"{v1}/databases/",
        f"{v1}/databases/{ids['database']}/",
        f"{v1}/audit-events/",
    ]


def bench_backend(backend: str, database_url: str, var_dir: str, requests: int) -> list[dict]:
    env = bench_env(database_url, var_dir)
    run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env)
    started = time.monotonic()
    ids = json.loads(run([sys.executable, str(Path(__file__).resolve()), "--seed"], env))
    print(f"{backend}: seeded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    results = []
    with Server(env) as server:
        for path in endpoints(ids):
            figures = measure(server.port, ids["token"], path, requests, warmup=5)
            results.append({"name": f"{backend} GET {path}", "backend": backend, **figures})
    return results


def postgres_database():
    """Create bench_api_<pid>; returns (url, drop) or (None, reason)."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # any failure to connect means: skip PostgreSQL
        return None, f"PostgreSQL not reachable on 127.0.0.1:5432 ({exc.__class__.__name__})"
    name = f"bench_api_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop():
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per endpoint")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        print(json.dumps(seed()))
        return 0

    requests = 40 if args.quick else 500
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        sqlite_url = f"sqlite:///{tmp}/bench.sqlite3"
        results += bench_backend("sqlite", sqlite_url, tmp, requests)
        url, drop = postgres_database()
        if url is None:
            print(f"postgresql: SKIPPED — {drop}", file=sys.stderr)
            results.append({"name": "postgresql", "backend": "postgresql", "skipped": drop})
        else:
            try:
                results += bench_backend("postgresql", url, tmp, requests)
            finally:
                drop()

    if args.json:
        print(json.dumps({"benchmark": "api", "results": results}))
        return 0
    print(
        f"API latency, {MIRRORS} mirrors x {MEMBERS_PER_MIRROR} members, target p99 <= "
        f"{TARGET_P99_MS:g} ms, {requests} sequential keep-alive requests per endpoint"
    )
    print(f"{'endpoint':<58} {'p50_ms':>8} {'p99_ms':>8} {'ops_per_s':>10}  target")
    for r in results:
        if "skipped" in r:
            print(f"{r['name']:<58} skipped: {r['skipped']}")
            continue
        verdict = "ok" if r["p99_ms"] <= TARGET_P99_MS else "MISSED"
        print(f"{r['name']:<58} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['ops_per_s']:>10}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
