"""PostgreSQL for the bench scripts to compare against: a throwaway primary with a synchronous
standby (synchronous_commit = remote_write) and any number of asynchronous streaming standbys,
all on loopback, and pgbench run against the primary.

Not a benchmark (the Makefile's bench loop runs only bench/[!_]*.py).  Uses the newest
/usr/lib/postgresql/*/bin; run as root, every PostgreSQL command runs as the user postgres
(runuser), since initdb and the server refuse root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import free_ports

UPSERT = (
    "\\set k random(1, 1000000)\n"
    "INSERT INTO kv VALUES (:k, repeat('v', 100)) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n"
)
SYNC_NAME = "standby1"  # the one name in synchronous_standby_names


def pg_bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


def as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def pg(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(as_postgres(cmd), check=True, capture_output=True, text=True, **kw)


def _owned_dir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    os.chmod(path, 0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


# (latencies in seconds, the duration pgbench ran) for (clients, seconds)
PgRun = Callable[[int, float], tuple[list[float], int]]


@contextlib.contextmanager
def postgres_cluster(asyncs: int = 0) -> Iterator[PgRun]:
    """A PostgreSQL primary, a synchronous standby (remote_write) and `asyncs` asynchronous
    streaming standbys, each standby streaming from the primary; table kv (k integer primary
    key, v text) on the primary.  Yields run(clients, seconds) -> (the sorted per-transaction
    latencies in seconds, the whole seconds pgbench ran): pgbench upserting one random key
    (1..1,000,000) to a 100-byte value per transaction.  Everything is stopped and removed
    on exit."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries in /usr/lib/postgresql/*/bin")
    tmp = _owned_dir(Path(tempfile.mkdtemp(prefix="bench-pg-")))
    ports = free_ports(2 + asyncs)
    primary_port = ports[0]
    standbys = {SYNC_NAME: ports[1]}
    standbys.update({f"async{i}": ports[1 + i] for i in range(1, asyncs + 1)})
    started: list[Path] = []

    def start(datadir: Path, wait: bool = True) -> None:
        log = tmp / f"{datadir.name}.log"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log)]
        started.append(datadir)
        pg([*pg_ctl, "-w" if wait else "-W", "start"])

    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres"]
    psql += ["-At", "-c"]
    try:
        primary = tmp / "primary"
        initdb = [str(bindir / "initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust"]
        pg([*initdb, "-E", "UTF8", "--no-sync"])
        with open(primary / "postgresql.conf", "a") as f:
            f.write(
                f"port = {primary_port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{tmp}'\nwal_level = replica\n"
                f"max_wal_senders = {len(standbys) + 4}\n"
                f"synchronous_standby_names = '{SYNC_NAME}'\nsynchronous_commit = remote_write\n"
            )
        start(primary)
        # One base backup, copied for every standby: a base backup may be restored any number
        # of times, and one checkpoint beats fifteen.
        template = tmp / "base"
        pg(
            [
                str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
                "-U", "postgres", "-D", str(template), "-R", "-c", "fast", "--no-sync",
            ]
        )  # fmt: skip
        for name, port in standbys.items():
            datadir = tmp / name
            pg(["cp", "-a", str(template), str(datadir)])
            with open(datadir / "postgresql.conf", "a") as f:
                f.write(f"port = {port}\n")
            # application_name decides which standby is synchronous: only SYNC_NAME is
            with open(datadir / "postgresql.auto.conf", "a") as f:
                f.write(
                    f"primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres "
                    f"application_name={name}'\n"
                )
            # not waited for one by one: wait_streaming waits for them all at once
            start(datadir, wait=False)
        shutil.rmtree(template, ignore_errors=True)
        wait_streaming(psql, asyncs)
        pg([*psql, "create table kv (k integer primary key, v text not null)"])
        script = tmp / "upsert.sql"
        script.write_text(UPSERT)
        os.chmod(script, 0o644)
        pgbench = str(bindir / "pgbench") if (bindir / "pgbench").exists() else "pgbench"
        # The copies above (some 40 MB a server) were not flushed one by one (--no-sync, cp):
        # flushed now, at once, so that their writeback does not fall inside a measurement.
        os.sync()

        def run(clients: int, seconds: float) -> tuple[list[float], int]:
            logdir = _owned_dir(tmp / f"log{clients}-{time.monotonic_ns()}")
            duration = max(1, int(round(seconds)))  # pgbench -T takes whole seconds
            pg(
                [
                    pgbench, "-n", "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
                    "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(duration),
                    "-f", str(script), "-l", "--log-prefix", str(logdir / "tx"), "postgres",
                ],
                cwd=str(logdir),
            )  # fmt: skip
            latencies = []
            for logfile in logdir.glob("tx*"):
                for line in logfile.read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 3:
                        latencies.append(int(parts[2]) / 1e6)  # per-transaction, microseconds
            shutil.rmtree(logdir, ignore_errors=True)
            return sorted(latencies), duration

        yield run
    finally:
        for datadir in reversed(started):
            stop = [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]
            subprocess.run(as_postgres(stop), capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def wait_streaming(psql: list[str], asyncs: int, timeout: float = 60.0) -> None:
    """Until the primary sees SYNC_NAME as its synchronous standby and `asyncs` asynchronous
    standbys streaming."""
    query = "select application_name, sync_state, state from pg_stat_replication"
    deadline = time.monotonic() + timeout
    while True:
        rows = [line.split("|") for line in pg([*psql, query]).stdout.splitlines()]
        sync = [r for r in rows if r[0] == SYNC_NAME and r[1] == "sync" and r[2] == "streaming"]
        streaming = [r for r in rows if r[1] == "async" and r[2] == "streaming"]
        if sync and len(streaming) == asyncs:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"PostgreSQL standbys not streaming after {timeout:.0f}s (want {SYNC_NAME} sync "
                f"and {asyncs} async): {rows}"
            )
        time.sleep(0.1)
