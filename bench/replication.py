"""Durable writes through a mirror vs PostgreSQL synchronous streaming replication.

    .venv/bin/python bench/replication.py [--quick] [--json] [--seconds S] [--repeat N] [--auth]
                                          [--superserver-tls]

Workload: each client sets a random key (1..1,000,000) to a 100-byte value, one request
at a time, waiting for the durable acknowledgement.  Measured at 1, 4 and 16 concurrent
clients, for:

- engine, mirror with an Active backup (journal fsync on the primary + backup ack);
- engine, a single failover member (no backup: journal fsync only);
- PostgreSQL (when /usr/lib/postgresql/*/bin exists): a primary and a synchronous standby
  on loopback (synchronous_commit=remote_write), pgbench upserting the same row shape with
  INSERT ... ON CONFLICT.

Each figure is the median of --repeat runs (3; 1 with --quick) of --seconds each (4;
1.5 with --quick), the three systems taking turns.  Our clients run in one worker
process (asyncio, one connection per client); pgbench is PostgreSQL's own C client.
Everything runs on this machine: the members, the clients and PostgreSQL share its
cores, so other load on the machine moves every figure.

With --auth, a third mirror (primary + Active backup) whose primary holds an application
credential, so its superserver requires authentication (engine/member/app_auth.py): its clients
authenticate each connection (SCRAM-SHA-256 challenge-response) and the same workload runs
there, beside the two rows above; and the time to open a connection (connect, authenticate,
INFO) is measured with and without a credential.

With --superserver-tls, one more mirror (primary + Active backup, its data channel in plain as
the first one's) whose members listen with `--superserver-tls required` (docs/hardening.md,
"Application port TLS"): every client connection is TLS 1.3 with a client certificate from the
mirror's CA, and authenticated with a credential; the same workload, and the time to open a
connection (TCP, TLS handshake, authentication, INFO).

A run in which the backup lost Active status measured something else (writes answered
without the backup's acknowledgement): the bench then fails (exit status 1), naming the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (  # first: puts the repo root on sys.path
    free_ports,
    mirror,
    percentile,
    write_mirror_config,
)

CLIENTS = (1, 4, 16)
VALUE = "v" * 100
CAVEAT = (
    "Caveat: the engine's clients run in one asyncio Python process (a connection each),\n"
    "compared against pgbench's C clients: the client side weighs more on the engine's figures."
)
REVOKED = (
    "Active status revoked"  # what the primary logs when it revokes (engine/replication/sender.py)
)


class BackupLostActive(RuntimeError):
    """The backup was not Active for the whole of a measurement."""


# -- engine -------------------------------------------------------------------------


async def _client_worker(
    address: str, nclients: int, seconds: float, seed: int, credential=None, tls=None
) -> list[float]:
    from engine.client.app import AsyncClient

    rng = random.Random(seed)
    tls = tls or {}
    clients = [AsyncClient([address], credential=credential, **tls) for _ in range(nclients)]
    for c in clients:
        await c.connect()
    lat: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def one(c):
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            await c.set("USER", "Bench", (rng.randint(1, 1_000_000),), VALUE)
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(c) for c in clients))
    for c in clients:
        await c.close()
    return lat


def _worker_entry(args) -> list[float]:
    address, n, seconds, seed, credential, tls = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_client_worker(address, n, seconds, seed, credential, tls))


def run_load(address: str, clients: int, seconds: float, credential=None, tls=None) -> dict:
    # All clients share one worker process (asyncio, a connection each): on 2 cores a
    # second client process only takes CPU from the members (measured).
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    with ctx.Pool(1) as pool:
        job = (address, clients, seconds, 1, credential, tls)
        lat = sorted(pool.apply(_worker_entry, (job,)))
    elapsed = time.perf_counter() - t0
    return {
        "ops": len(lat),
        "ops_per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "wall_s": round(elapsed, 2),
    }


@contextlib.contextmanager
def engine_mirror(with_backup: bool):
    """A running mirror (primary A + backup B, or a lone primary); yields (the primary's
    address, a check(run) that raises BackupLostActive unless B stayed Active, or None)."""
    members = {"A": "failover", "B": "failover"} if with_backup else {"A": "failover"}
    with mirror("bench-repl-", members) as (cfg, _):
        address = str(cfg.first_primary.superserver)
        if not with_backup:
            yield address, None
            return
        wait_backup_active(address)
        yield address, active_check(cfg)


@contextlib.contextmanager
def tls_mirror():
    """Like engine_mirror(True), its members listening with --superserver-tls required: yields
    (the primary's address, check(run), the client's TLS options: its certificate, the CA)."""
    from engine.cluster.launcher import spawn, stop_pids, wait_ready
    from engine.member.config import load_config
    from engine.wire.tls import make_ca, make_cert

    directory = Path(tempfile.mkdtemp(prefix="bench-repl-tls-"))
    procs: dict[str, subprocess.Popen] = {}
    try:
        ca = make_ca(directory / "certs")
        client = make_cert(ca, directory / "certs", "bench-client")
        path = write_mirror_config(directory, {"A": "failover", "B": "failover"})
        lines = []
        for line in path.read_text().splitlines():
            lines.append(line)
            if line.startswith("data_root"):  # the CA of the superservers, not of the mirror
                lines.append(f'tls_ca = "{ca.cert_path}"')
            elif line.startswith('name = "') and len(line) == len('name = "A"'):
                member = make_cert(ca, directory / "certs", line.split('"')[1])
                lines += [f'tls_cert = "{member.cert}"', f'tls_key = "{member.key}"']
        path.write_text("\n".join(lines) + "\n")
        cfg = load_config(path)
        for m in cfg.members:
            args = ["instance", "--config", str(path), "--member", m.name]
            args += ["--superserver-tls", "required"]
            procs[m.name] = spawn(args, Path(m.data_dir) / "instance.log")
        wait_ready(cfg, procs)
        tls = {"ca": str(ca.cert_path), "cert": str(client.cert), "key": str(client.key)}
        address = str(cfg.first_primary.superserver)
        wait_backup_active(address, tls=tls)
        yield address, active_check(cfg, tls), tls
    finally:
        stop_pids([{"pid": p.pid, "member": n} for n, p in procs.items()])
        shutil.rmtree(directory, ignore_errors=True)


def active_check(cfg, tls=None):
    """check(run): the backup says it is Active now, and the primary logged no revocation
    since the previous check (a revocation the backup recovered from within the run would
    leave its status Active again)."""
    from engine.client.app import Client

    primary_log = cfg.first_primary.data_dir / "instance.log"
    backup = cfg.member("B")
    seen = [primary_log.read_text(errors="replace").count(REVOKED)]

    def check(run: str) -> None:
        revoked = primary_log.read_text(errors="replace").count(REVOKED) - seen[0]
        seen[0] += revoked
        try:
            where = [str(backup.superserver)]
            with Client(where, follow_primary=False, retries=0, **(tls or {})) as c:
                transfer = c.status().get("journal_transfer")
        except Exception as exc:
            transfer = f"no status ({exc})"
        if revoked or transfer != "Active":
            raise BackupLostActive(
                f"the backup lost Active status during the run '{run}' (the primary revoked it "
                f"{revoked} time(s); the backup now reports journal transfer {transfer!r}): "
                "its figures are of writes not waiting for the backup"
            )

    return check


def wait_backup_active(address: str, timeout: float = 30.0, tls=None) -> None:
    from engine.client.app import Client

    deadline = time.monotonic() + timeout
    with Client([address], **(tls or {})) as c:
        while time.monotonic() < deadline:
            rows = c.status().get("members", [])
            if any(r.get("journal_transfer") == "Active" for r in rows):
                return
            time.sleep(0.05)
    raise RuntimeError("backup did not become Active")


def make_credential(address: str, tls=None) -> tuple[str, str]:
    """An application credential on the primary at `address` (the admin token is the
    benchmark's ENGINE_ADMIN_TOKEN): from then on its superserver requires authentication."""
    from engine.client.app import Client

    with Client([address], **(tls or {})) as c:
        made = c.admin("app_credential_create", {"name": "bench"})
        assert c.admin("app_credential_list")["auth"] == "required"
    return made["name"], made["secret"]


def connect_cost(address: str, credential, count: int, tls=None) -> dict:
    """Milliseconds to open a connection (TCP, TLS and authentication if any, INFO) and close
    it.  With TLS, the client's context is made once, as an application keeps its own."""
    from engine.client.app import AsyncClient
    from engine.wire.tls import client_context

    ssl = client_context(tls["cert"], tls["key"], tls["ca"]) if tls else None

    async def run() -> list[float]:
        times = []
        for _ in range(count):
            c = AsyncClient([address], credential=credential, ssl=ssl)
            t0 = time.perf_counter()
            await c.connect()
            times.append(time.perf_counter() - t0)
            await c.close()
        return sorted(times)

    times = asyncio.run(run())
    return {
        "connects": count,
        "p50_ms": round(percentile(times, 50) * 1000, 3),
        "p99_ms": round(percentile(times, 99) * 1000, 3),
    }


# -- PostgreSQL ---------------------------------------------------------------------


def pg_bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def postgres_pair():
    """A PostgreSQL primary + synchronous standby; yields run(clients, seconds) -> figures."""
    bindir = pg_bindir()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    os.chmod(tmp, 0o755)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    primary, standby = tmp / "primary", tmp / "standby"
    p1, p2 = free_ports(2)
    started = []
    try:
        _pg(
            [
                str(bindir / "initdb"),
                "-D",
                str(primary),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        with open(primary / "postgresql.conf", "a") as f:
            f.write(
                f"port = {p1}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{tmp}'\n"
                "wal_level = replica\nmax_wal_senders = 4\n"
                "synchronous_standby_names = 'standby1'\nsynchronous_commit = remote_write\n"
            )
        _pg(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(primary),
                "-l",
                str(tmp / "primary.log"),
                "-w",
                "start",
            ]
        )
        started.append(primary)
        _pg(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p1),
                "-U",
                "postgres",
                "-D",
                str(standby),
                "-R",
            ]
        )
        with open(standby / "postgresql.conf", "a") as f:
            f.write(f"port = {p2}\n")
        with open(standby / "postgresql.auto.conf", "a") as f:
            f.write(
                f"primary_conninfo = 'host=127.0.0.1 port={p1} user=postgres "
                "application_name=standby1'\n"
            )
        _pg(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(standby),
                "-l",
                str(tmp / "standby.log"),
                "-w",
                "start",
            ]
        )
        started.append(standby)
        psql = [
            str(bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(p1),
            "-U",
            "postgres",
            "-At",
            "-c",
        ]
        deadline = time.monotonic() + 30
        while _pg([*psql, "select sync_state from pg_stat_replication"]).stdout.strip() != "sync":
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL standby did not become synchronous")
            time.sleep(0.1)
        _pg([*psql, "create table kv (k integer primary key, v text not null)"])
        script = tmp / "upsert.sql"
        script.write_text(
            "\\set k random(1, 1000000)\n"
            "INSERT INTO kv VALUES (:k, repeat('v', 100)) "
            "ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n"
        )
        os.chmod(script, 0o644)

        def run(n: int, seconds: float) -> dict:
            logdir = tmp / f"log{n}-{time.monotonic_ns()}"
            logdir.mkdir()
            if os.geteuid() == 0:
                shutil.chown(logdir, "postgres", "postgres")
            dur = max(1, int(round(seconds)))
            _pg(
                [
                    "pgbench", "-n", "-h", "127.0.0.1", "-p", str(p1), "-U", "postgres",
                    "-c", str(n), "-j", str(min(n, 2)), "-T", str(dur),
                    "-f", str(script), "-l", "--log-prefix", str(logdir / "tx"), "postgres",
                ],
                cwd=str(logdir),
            )  # fmt: skip
            lat = []
            for logfile in logdir.glob("tx*"):
                for line in logfile.read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]) / 1e6)  # per-transaction latency in us
            lat.sort()
            return {
                "ops": len(lat),
                "ops_per_s": round(len(lat) / dur, 1),
                "p50_ms": round(percentile(lat, 50) * 1000, 3),
                "p99_ms": round(percentile(lat, 99) * 1000, 3),
            }

        yield run
    finally:
        for d in reversed(started):
            subprocess.run(
                _as_postgres(
                    [str(bindir / "pg_ctl"), "-D", str(d), "-m", "immediate", "-w", "stop"]
                ),
                capture_output=True,
            )
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (well under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, help="duration of each measurement")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--repeat", type=int, help="runs per figure, the median is kept (default 3)")
    ap.add_argument(
        "--auth",
        action="store_true",
        help="add a mirror whose primary requires authentication (an application credential)",
    )
    ap.add_argument(
        "--superserver-tls",
        action="store_true",
        help="add a mirror whose superservers require TLS with a client certificate, its "
        "clients authenticated by a credential too",
    )
    args = ap.parse_args()
    seconds = args.seconds or (1.5 if args.quick else 4.0)
    repeat = args.repeat or (1 if args.quick else 3)
    use_pg = not args.no_postgres and pg_bindir() is not None
    results = []
    # All three systems stay up and take turns at each client count (and each repetition),
    # so a change in the machine's other load hits them alike; the median run is reported.
    with contextlib.ExitStack() as stack:
        mirrored, still_active = stack.enter_context(engine_mirror(True))
        alone, _ = stack.enter_context(engine_mirror(False))
        pg_run = stack.enter_context(postgres_pair()) if use_pg else None
        if args.auth:
            secured, secured_active = stack.enter_context(engine_mirror(True))
            credential = make_credential(secured)
        if args.superserver_tls:
            tls_primary, tls_active, tls = stack.enter_context(tls_mirror())
            tls_credential = make_credential(tls_primary, tls)

        def with_backup(n: int) -> dict:
            figures = run_load(mirrored, n, seconds)
            still_active(f"engine with active backup, {n} clients")
            return figures

        systems = [
            ("engine with active backup", "engine", True, with_backup),
            ("engine no backup", "engine", False, lambda n: run_load(alone, n, seconds)),
        ]
        if args.auth:

            def authenticated(n: int) -> dict:
                figures = run_load(secured, n, seconds, credential)
                secured_active(f"engine with active backup and authentication, {n} clients")
                return figures

            systems.insert(
                1, ("engine with active backup + auth", "engine-auth", True, authenticated)
            )
        if args.superserver_tls:

            def over_tls(n: int) -> dict:
                figures = run_load(tls_primary, n, seconds, tls_credential, tls)
                tls_active(f"engine with active backup, TLS and authentication, {n} clients")
                return figures

            systems.insert(
                1, ("engine with active backup + TLS + auth", "engine-tls", True, over_tls)
            )
        if pg_run is not None:
            systems.append(
                ("postgresql sync standby", "postgresql", True, lambda n: pg_run(n, seconds))
            )
        for n in CLIENTS:
            runs: dict[str, list[dict]] = {label: [] for label, *_ in systems}
            for _ in range(repeat):
                for label, _system, _backup, measure in systems:
                    runs[label].append(measure(n))
            for label, system, backup, _ in systems:
                # the median run by throughput, with its own latencies
                best = sorted(runs[label], key=lambda r: r["ops_per_s"])[len(runs[label]) // 2]
                row = {"name": f"{label}, {n} clients", "system": system, "backup": backup}
                results.append({**row, "clients": n, "runs": repeat, **best})
        if args.auth:
            count = 20 if args.quick else 200
            for label, cred in (
                ("without authentication", None),
                ("with a credential", credential),
            ):
                cost = connect_cost(secured if cred else mirrored, cred, count)
                results.append({"name": f"engine connect {label}", "system": "connect", **cost})
        if args.superserver_tls:
            count = 20 if args.quick else 200
            if not args.auth:
                cost = connect_cost(mirrored, None, count)
                results.append({"name": "engine connect plain", "system": "connect", **cost})
            for label, cred in (("with TLS", None), ("with TLS and a credential", tls_credential)):
                cost = connect_cost(tls_primary, cred, count, tls)
                results.append({"name": f"engine connect {label}", "system": "connect", **cost})
    by = {(r["system"], r["backup"], r["clients"]): r for r in results if "clients" in r}
    for n in CLIENTS:
        ours, theirs = by.get(("engine", True, n)), by.get(("postgresql", True, n))
        if ours and theirs and theirs["ops_per_s"]:
            results.append(
                {
                    "name": f"ratio engine/postgresql, {n} clients",
                    "clients": n,
                    "ratio": round(ours["ops_per_s"] / theirs["ops_per_s"], 2),
                }
            )
    if args.json:
        print(json.dumps({"benchmark": "replication", "results": results}))
        return 0
    print(f"{'name':<52} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
    for r in results:
        if "connects" in r:
            print(f"{r['name']:<52} {'':>10} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
        elif "ratio" in r:
            print(f"{r['name']:<52} {'':>10} {'':>8} {'':>8} {r['ratio']:>6}")
        else:
            print(
                f"{r['name']:<52} {r['ops_per_s']:>10.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}"
            )
    print()
    print(CAVEAT)
    if not use_pg:
        print("(PostgreSQL not run: no binaries in /usr/lib/postgresql/*/bin or --no-postgres)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BackupLostActive as exc:
        print(f"[replication] FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
