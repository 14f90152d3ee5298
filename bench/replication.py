"""Durable writes through a mirror vs PostgreSQL synchronous streaming replication.

    .venv/bin/python bench/replication.py [--quick] [--json] [--seconds S] [--repeat N]
                                          [--[no-]auth] [--[no-]fanout] [--superserver-tls]
                                          [--no-postgres]

Workload: each client sets a random key (1..1,000,000) to a 100-byte value, one request
at a time, waiting for the durable acknowledgement.  Each load figure gives ops/s and the
p50, p99 and p99.9 latencies (ms).  Measured at 1, 4, 16 and 64 concurrent clients, for:

- engine, mirror with an Active backup (journal fsync on the primary + backup ack);
- engine, a single failover member (no backup: journal fsync only);
- PostgreSQL (when /usr/lib/postgresql/*/bin exists): a primary and a synchronous standby
  on loopback (synchronous_commit=remote_write), pgbench upserting the same row shape with
  INSERT ... ON CONFLICT (bench/_postgres.py);
- with authentication on (--auth; on by default in a full run, off with --quick unless
  asked): a mirror (primary + Active backup) authenticated on both of its channels.  The
  application port: its primary holds an application credential, so its superserver requires
  authentication (engine/member/app_auth.py) and every client connection authenticates
  (SCRAM-SHA-256 challenge-response).  The data channel: the mirror file names a mirror
  secret (`secret_file`, docs/hardening.md), so the backup and the primary prove it to each
  other before any journal moves; the bench fails if a member still logs that the data
  channel is not authenticated.  The same workload runs there, beside the rows above, with
  its own ratio to PostgreSQL; and the time to open a connection (connect, authenticate,
  INFO) is measured with and without a credential.

Ratio rows: the engine's ops/s over PostgreSQL's, per client count (with an Active backup,
and with authentication on).

Fan-out (--fanout; on by default in a full run, off with --quick unless asked, then only
N = 0 and 2): for N = 0, 2, 6 and 14 disaster-recovery asyncs, 16 clients, both systems built
afresh for each N and up together:

- engine: primary A + Active backup B + N members of type "dr", all receiving (each says
  journal transfer "Caught up") before the load starts;
- PostgreSQL: a primary, a synchronous standby (remote_write) and N asynchronous streaming
  standbys, pgbench upserting the same rows;

with a ratio row (engine ops/s / PostgreSQL tps) per N.

Each figure is the median of --repeat runs (3; 1 with --quick) of --seconds each (4;
1.5 with --quick; pgbench runs whole seconds), the systems taking turns.  Our clients run in
one worker process (asyncio, one connection per client); pgbench is PostgreSQL's own C
client.  Everything runs on this machine: the members, the clients and PostgreSQL share its
cores, so other load on the machine moves every figure.

With --superserver-tls, one more mirror (primary + Active backup, its data channel in plain as
the first one's) whose members listen with `--superserver-tls required` (docs/hardening.md,
"Application port TLS"): every client connection is TLS 1.3 with a client certificate from the
mirror's CA, and authenticated with a credential; the same workload, and the time to open a
connection (TCP, TLS handshake, authentication, INFO).

A run in which the backup lost Active status measured something else (writes answered
without the backup's acknowledgement), as does a fan-out run in which a DR async dropped
its link: the bench then fails (exit status 1), naming the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _common import (  # first: puts the repo root on sys.path
    mirror,
    percentile,
    stderr_log,
    write_mirror_config,
)
from _postgres import pg_bindir, postgres_cluster

CLIENTS = (1, 4, 16, 64)
FANOUT = (0, 2, 6, 14)  # DR asyncs beside the failover pair (14 is the most a mirror takes)
FANOUT_QUICK = (0, 2)
FANOUT_CLIENTS = 16
VALUE = "v" * 100
CAVEAT = (
    "Caveat: the engine's clients run in one asyncio Python process (a connection each),\n"
    "compared against pgbench's C clients: the client side weighs more on the engine's figures."
)
REVOKED = (
    "Active status revoked"  # what the primary logs when it revokes (engine/replication/sender.py)
)
# what a member logs at start when its data channel is not authenticated
# (engine/member/membership.py)
UNAUTHENTICATED = "has neither TLS nor a mirror secret"

log = stderr_log("replication")


class NotAsSetUp(RuntimeError):
    """A mirror was not in the state it was set up in for the whole of a measurement."""


class BackupLostActive(NotAsSetUp):
    """The backup was not Active for the whole of a measurement."""


class AsyncLost(NotAsSetUp):
    """A DR async of a fan-out mirror dropped its link during a measurement."""


PERCENTILES = (("p50_ms", 50), ("p99_ms", 99), ("p999_ms", 99.9))


def figures(latencies: list[float], seconds: float) -> dict:
    """ops, ops/s and the p50, p99 and p99.9 latencies in ms of one run."""
    ms = {name: round(percentile(latencies, p) * 1000, 3) for name, p in PERCENTILES}
    return {"ops": len(latencies), "ops_per_s": round(len(latencies) / seconds, 1), **ms}


def median_run(runs: list[dict]) -> dict:
    """The median run by throughput, with its own latencies."""
    return sorted(runs, key=lambda r: r["ops_per_s"])[len(runs) // 2]


def take_turns(
    measures: dict[str, Callable[[int], dict]], clients: int, repeat: int
) -> dict[str, dict]:
    """Each measure(clients) `repeat` times, the systems taking turns, so that a change in the
    machine's other load hits them alike; the median run of each."""
    runs: dict[str, list[dict]] = {label: [] for label in measures}
    for _ in range(repeat):
        for label, measure in measures.items():
            runs[label].append(measure(clients))
    return {label: median_run(r) for label, r in runs.items()}


def ratio(ours: dict | None, theirs: dict | None) -> float | None:
    if not ours or not theirs or not theirs["ops_per_s"]:
        return None
    return round(ours["ops_per_s"] / theirs["ops_per_s"], 2)


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
    return {**figures(lat, seconds), "wall_s": round(time.perf_counter() - t0, 2)}


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
def edited_mirror(prefix: str, members: dict[str, str], edit, member_args=()):
    """Like _common.mirror(prefix, members), its configuration file's text passed through
    edit(directory, text) -> text first (which may write files beside it), and member_args
    added to every member's command line; yields the configuration."""
    from engine.cluster.launcher import spawn, stop_pids, wait_ready
    from engine.member.config import load_config

    directory = Path(tempfile.mkdtemp(prefix=prefix))
    procs: dict[str, subprocess.Popen] = {}
    try:
        path = write_mirror_config(directory, members)
        path.write_text(edit(directory, path.read_text()))
        cfg = load_config(path)
        for m in cfg.members:
            args = ["instance", "--config", str(path), "--member", m.name, *member_args]
            procs[m.name] = spawn(args, Path(m.data_dir) / "instance.log")
        wait_ready(cfg, procs)
        yield cfg
    finally:
        stop_pids([{"pid": p.pid, "member": n} for n, p in procs.items()])
        shutil.rmtree(directory, ignore_errors=True)


def _in_mirror_table(text: str, lines: list[str]) -> str:
    """text with lines added to its [mirror] table (write_mirror_config ends it with
    data_root)."""
    head, sep, rest = text.partition("\ndata_root")
    line, nl, rest = rest.partition("\n")
    return head + sep + line + nl + "".join(f"{x}\n" for x in lines) + rest


def _with_secret(directory: Path, text: str) -> str:
    from engine.wire.mirror_secret import new_secret

    secret = directory / "secret"
    secret.write_text(new_secret() + "\n")
    secret.chmod(0o600)
    return _in_mirror_table(text, [f'secret_file = "{secret}"'])


@contextlib.contextmanager
def authenticated_mirror():
    """Like engine_mirror(True), its data channel authenticated by a mirror secret and its
    primary holding an application credential: yields (the primary's address, check(run),
    the credential)."""
    members = {"A": "failover", "B": "failover"}
    with edited_mirror("bench-repl-auth-", members, _with_secret) as cfg:
        address = str(cfg.first_primary.superserver)
        wait_backup_active(address)
        # the backup is Active, so the members proved the secret to each other; and none of
        # them says otherwise
        for m in cfg.members:
            if UNAUTHENTICATED in (m.data_dir / "instance.log").read_text(errors="replace"):
                raise RuntimeError(f"member {m.name}: data channel not authenticated")
        yield address, active_check(cfg), make_credential(address)


@contextlib.contextmanager
def tls_mirror():
    """Like engine_mirror(True), its members listening with --superserver-tls required: yields
    (the primary's address, check(run), the client's TLS options: its certificate, the CA)."""
    from engine.wire.tls import make_ca, make_cert

    made = {}

    def with_certificates(directory: Path, text: str) -> str:
        ca = made["ca"] = make_ca(directory / "certs")
        made["client"] = make_cert(ca, directory / "certs", "bench-client")
        lines = []
        for line in text.splitlines():
            lines.append(line)
            if line.startswith("data_root"):  # the CA of the superservers, not of the mirror
                lines.append(f'tls_ca = "{ca.cert_path}"')
            elif line.startswith('name = "') and len(line) == len('name = "A"'):
                member = make_cert(ca, directory / "certs", line.split('"')[1])
                lines += [f'tls_cert = "{member.cert}"', f'tls_key = "{member.key}"']
        return "\n".join(lines) + "\n"

    members = {"A": "failover", "B": "failover"}
    tls_args = ("--superserver-tls", "required")
    with edited_mirror("bench-repl-tls-", members, with_certificates, tls_args) as cfg:
        ca, client = made["ca"], made["client"]
        tls = {"ca": str(ca.cert_path), "cert": str(client.cert), "key": str(client.key)}
        address = str(cfg.first_primary.superserver)
        wait_backup_active(address, tls=tls)
        yield address, active_check(cfg, tls), tls


@contextlib.contextmanager
def fanout_mirror(asyncs: int):
    """Primary A + backup B + `asyncs` DR asyncs (DR1..), the backup Active and every async
    receiving; yields (the primary's address, check(run): B stayed Active and no async
    dropped its link)."""
    from engine.client.app import Client

    drs = [f"DR{i}" for i in range(1, asyncs + 1)]
    with mirror(
        "bench-repl-fan-", {"A": "failover", "B": "failover", **dict.fromkeys(drs, "dr")}
    ) as (cfg, _):
        address = str(cfg.first_primary.superserver)
        # generous: up to 16 members share the machine's cores as they start
        wait_backup_active(address, timeout=90)
        wait_asyncs_receiving(cfg, drs, timeout=90)
        backup_check = active_check(cfg)

        def check(run: str) -> None:
            backup_check(run)
            with Client([address]) as c:
                rows = c.status().get("members", [])
            linked = {r["member"] for r in rows if not str(r.get("status")).startswith("Down")}
            lost = [name for name in drs if name not in linked]
            if lost:
                raise AsyncLost(
                    f"DR async(s) {', '.join(lost)} lost their link during the run '{run}': "
                    "its figures are of a smaller fan-out"
                )

        yield address, check


def wait_asyncs_receiving(cfg, names: list[str], timeout: float) -> None:
    """Until each of the members `names` says, in its own status, that its journal transfer
    is caught up with the primary (connected and receiving)."""
    from engine.client.app import Client
    from engine.rules import CAUGHT_UP

    deadline = time.monotonic() + timeout
    waiting = list(names)
    while waiting:
        for name in list(waiting):
            where = [str(cfg.member(name).superserver)]
            with Client(where, follow_primary=False, retries=0) as c:
                if c.status().get("journal_transfer") == CAUGHT_UP:
                    waiting.remove(name)
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"DR asyncs not receiving after {timeout:.0f}s: {waiting}")
        if waiting:
            time.sleep(0.1)


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


def pgbench_load(pg_run, clients: int, seconds: float) -> dict:
    """The figures of one pgbench run of `clients` (bench/_postgres.py)."""
    latencies, duration = pg_run(clients, seconds)
    return figures(latencies, duration)


# -- the tables ---------------------------------------------------------------------


def main_table(args, seconds: float, repeat: int, use_pg: bool) -> list[dict]:
    """The rows per client count (and the connection costs), then the ratio rows."""
    results = []
    # All the systems stay up and take turns at each client count (and each repetition).
    with contextlib.ExitStack() as stack:
        # label -> (system, with a backup, measure(clients) -> figures)
        systems: dict[str, tuple[str, bool, Callable[[int], dict]]] = {}

        def guarded(label, address, check, credential=None, tls=None):
            def measure(n: int) -> dict:
                result = run_load(address, n, seconds, credential, tls)
                check(f"{label}, {n} clients")
                return result

            return measure

        label = "engine with active backup"
        mirrored, check = stack.enter_context(engine_mirror(True))
        systems[label] = ("engine", True, guarded(label, mirrored, check))
        if args.auth:
            label = "engine with active backup + auth"
            secured, check, credential = stack.enter_context(authenticated_mirror())
            systems[label] = ("engine-auth", True, guarded(label, secured, check, credential))
        if args.superserver_tls:
            label = "engine with active backup + TLS + auth"
            tls_primary, check, tls = stack.enter_context(tls_mirror())
            tls_credential = make_credential(tls_primary, tls)
            measure = guarded(label, tls_primary, check, tls_credential, tls)
            systems[label] = ("engine-tls", True, measure)
        alone, _ = stack.enter_context(engine_mirror(False))
        systems["engine no backup"] = ("engine", False, partial(run_load, alone, seconds=seconds))
        if use_pg:
            pg_run = stack.enter_context(postgres_cluster(asyncs=0))
            measure = partial(pgbench_load, pg_run, seconds=seconds)
            systems["postgresql sync standby"] = ("postgresql", True, measure)
        log(f"main table: {', '.join(systems)} up")

        for n in CLIENTS:
            medians = take_turns({label: s[2] for label, s in systems.items()}, n, repeat)
            for label, (system, backup, _) in systems.items():
                row = {"name": f"{label}, {n} clients", "system": system, "backup": backup}
                results.append({**row, "clients": n, "runs": repeat, **medians[label]})
            log(f"main table: {n} clients done")

        count = 20 if args.quick else 200
        if args.auth:
            for label, where, cred in (
                ("without authentication", mirrored, None),
                ("with a credential", secured, credential),
            ):
                cost = connect_cost(where, cred, count)
                results.append({"name": f"engine connect {label}", "system": "connect", **cost})
        if args.superserver_tls:
            if not args.auth:
                cost = connect_cost(mirrored, None, count)
                results.append({"name": "engine connect plain", "system": "connect", **cost})
            for label, cred in (("with TLS", None), ("with TLS and a credential", tls_credential)):
                cost = connect_cost(tls_primary, cred, count, tls)
                results.append({"name": f"engine connect {label}", "system": "connect", **cost})

    by = {(r["system"], r["backup"], r["clients"]): r for r in results if "clients" in r}
    for n in CLIENTS:
        theirs = by.get(("postgresql", True, n))
        for system in ("engine", "engine-auth"):
            value = ratio(by.get((system, True, n)), theirs)
            if value is not None:
                name = f"ratio {system}/postgresql, {n} clients"
                results.append({"name": name, "clients": n, "ratio": value})
    return results


def fanout_table(args, seconds: float, repeat: int, use_pg: bool) -> list[dict]:
    """Per number of DR asyncs: the engine's row, PostgreSQL's, their ratio."""
    results = []
    for asyncs in FANOUT_QUICK if args.quick else FANOUT:
        medians = fanout_runs(asyncs, seconds, repeat, use_pg)
        label = f"fan-out, {asyncs} DR asyncs"
        for system, best in medians.items():
            row = {"name": f"{label}, {system}", "system": system, "backup": True}
            row.update(asyncs=asyncs, clients=FANOUT_CLIENTS, runs=repeat)
            results.append({**row, **best})
        value = ratio(medians["engine"], medians.get("postgresql"))
        if value is not None:
            name = f"ratio engine/postgresql, fan-out {asyncs} DR asyncs"
            row = {"name": name, "asyncs": asyncs, "clients": FANOUT_CLIENTS, "ratio": value}
            results.append(row)
    return results


def fanout_runs(asyncs: int, seconds: float, repeat: int, use_pg: bool) -> dict[str, dict]:
    """{"engine": figures, "postgresql": figures} with `asyncs` asyncs at FANOUT_CLIENTS."""
    # Both systems built afresh for each N, so that neither carries the tables and processes
    # of the previous N; up together, taking turns.
    with contextlib.ExitStack() as stack:
        address, check = stack.enter_context(fanout_mirror(asyncs))

        def engine(n: int) -> dict:
            result = run_load(address, n, seconds)
            check(f"fan-out, {asyncs} DR asyncs, engine")
            return result

        measures = {"engine": engine}
        if use_pg:
            pg_run = stack.enter_context(postgres_cluster(asyncs=asyncs))
            measures["postgresql"] = partial(pgbench_load, pg_run, seconds=seconds)
        log(f"fan-out, {asyncs} DR asyncs: up")
        return take_turns(measures, FANOUT_CLIENTS, repeat)


def print_table(results: list[dict]) -> None:
    print(f"{'name':<52} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'ratio':>6}")
    for r in results:
        if "connects" in r:
            print(f"{r['name']:<52} {'':>10} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
        elif "ratio" in r:
            print(f"{r['name']:<52} {'':>10} {'':>8} {'':>8} {'':>9} {r['ratio']:>6}")
        else:
            print(
                f"{r['name']:<52} {r['ops_per_s']:>10.0f} {r['p50_ms']:>8.3f} "
                f"{r['p99_ms']:>8.3f} {r['p999_ms']:>9.3f}"
            )


def _stop_on_sigterm(*_) -> None:
    # raised in the main thread, so every `with` unwinds: the members and the PostgreSQL
    # servers are stopped and their directories removed (nothing else would stop them)
    raise SystemExit(143)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="A full run (without --quick) includes --auth and --fanout unless told --no-auth "
        "or --no-fanout.",
    )
    ap.add_argument("--quick", action="store_true", help="short runs (well under 90 s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, help="duration of each measurement")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--repeat", type=int, help="runs per figure, the median is kept (default 3)")
    ap.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        help="add a mirror with authentication on: an application credential on its primary "
        "and a mirror secret on its data channel (default: on in a full run, off with --quick)",
    )
    ap.add_argument(
        "--fanout",
        action=argparse.BooleanOptionalAction,
        help="add the fan-out table: 16 clients, 0, 2, 6 and 14 DR asyncs (0 and 2 with "
        "--quick) beside PostgreSQL's asynchronous standbys (default: on in a full run, off "
        "with --quick)",
    )
    ap.add_argument(
        "--superserver-tls",
        action="store_true",
        help="add a mirror whose superservers require TLS with a client certificate, its "
        "clients authenticated by a credential too",
    )
    args = ap.parse_args()
    if args.auth is None:
        args.auth = not args.quick
    if args.fanout is None:
        args.fanout = not args.quick
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    seconds = args.seconds or (1.5 if args.quick else 4.0)
    repeat = args.repeat or (1 if args.quick else 3)
    use_pg = not args.no_postgres and pg_bindir() is not None
    results = main_table(args, seconds, repeat, use_pg)
    if args.fanout:
        results += fanout_table(args, seconds, repeat, use_pg)
    if args.json:
        print(json.dumps({"benchmark": "replication", "results": results}))
        return 0
    print_table(results)
    print()
    print(CAVEAT)
    if not use_pg:
        print("(PostgreSQL not run: no binaries in /usr/lib/postgresql/*/bin or --no-postgres)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NotAsSetUp as exc:
        print(f"[replication] FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
