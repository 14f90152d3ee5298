"""Hostile connections against a primary under a write load: idle, slow and half-sent frames.

    .venv/bin/python bench/hostile.py [--quick] [--json] [--seconds S] [--repeat N]
                                      [--idle N] [--slow N]

A mirror of two real failover members on loopback (primary A, backup B, as
bench/replication.py builds it).  A runs with superserver limits given on its command line
(docs/hardening.md, "Application port (superserver)"): the defaults (handshake 10 s, idle
300 s, 16 MiB per connection, 64 MiB in all), except max_connections = idle + slow (11,000;
quick 1,100) and frame_timeout_s = 5 s (quick 2 s), so that the slow ones are cut within a
run.  The 16 good clients take 16 places, so the last 16 hostile connections are refused.

Good load: 16 clients (one asyncio worker process, a connection each, connected before any
hostile socket and kept for the whole bench) each set a random key (1..1,000,000) to a
100-byte value, one request at a time, waiting for the durable acknowledgement (journal
fsync on A + B's ack), as in bench/replication.py.

Hostile load, from this process (asyncio, 127.0.0.1 only; RLIMIT_NOFILE raised as needed):

- idle (10,000; quick 1,000), opened first: connect, one PING, then nothing (idle_timeout_s
  is 300 s: held for the whole run);
- slow (1,000; quick 100), opened next; each sends a PING and then, half of them:
  - drip: a 600-byte SET frame 4 bytes every 0.25 s (the frame would take 37 s), and
  - half-sent: the header of a frame and half of its body (256 KiB of 512 KiB; quick
    2.6 MiB of 5.1 MiB), then nothing; together they offer twice max_buffered_total;
  a slow connection that is cut or refused comes back after 0.5 to 1.5 s, so the slow
  attack is kept up for the whole run.

Method: a warm-up, then `--repeat` cycles (3; quick 1) of: a run of `--seconds` (5; quick
2) without hostile connections; the hostile connections opened (idle, then slow, then 1 s to
settle); a run with them; all of them closed.  A last run without ends it.  The runs take
turns because other load on the machine comes and goes.  "without" is the median run of
those without, "with" the median of those with; `ratio` = with / without ops_per_s (target
>= 0.8).  Each run also gives the CPU seconds the primary, the clients' worker and this
process (the hostile sockets) used during it.  A's peak RSS (VmHWM, reset through
/proc/PID/clear_refs after the first run without) and descriptors (sampled every 0.5 s) are
reported with the bound expected from its settings: RSS before + max_connections x CONN_KIB
+ 1.25 x max_buffered_total (a bytearray grows by up to 1/8, plus the read in hand), and
descriptors at most max_connections + those it had before.  Refusals and cuts are counted
on both sides: what the hostile sockets were told (the error frame's `[limit NAME=...]`, or
a reset), and what A logged (lines naming a limit, plus the "(+N more not logged)" counts of
the rate-limited log).  Everything shares this machine's cores (2 here, shared with other
work): the figures move with the machine's other load.

If B stops being Active during a run, the figures are printed and the bench fails (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import _common  # first: puts the repository root on sys.path, for engine
from _common import percentile, stderr_log, write_mirror_config
from replication import REVOKED, wait_backup_active

from engine.cluster.launcher import spawn, wait_ready
from engine.member.config import load_config
from engine.wire.limits import MIB, LimitSettings
from engine.wire.protocol import (
    HEADER,
    MAGIC,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    MsgType,
    encode_frame,
    unpack,
)

log = stderr_log("hostile")
GOOD_CLIENTS = 16
VALUE = "v" * 100
# Python-side cost of one held superserver connection on the primary (Connection, uvloop
# transport, decoder, limits state), measured with 1,000 to 8,000 idle connections: 2 to 3 KiB
# (docs/benchmarks-hostile.md); the bound below allows about three times that.
CONN_KIB = 8
RECONNECT = (0.5, 1.5)  # a cut slow connection comes back after this many seconds
DRIP_BYTES, DRIP_EVERY = 4, 0.25
CONNECTS_AT_ONCE = 256


# -- the good clients: a worker process made before any hostile socket ----------------


async def _good_main(pipe, address: str, n: int) -> None:
    from engine.client.app import AsyncClient

    loop = asyncio.get_running_loop()
    clients = [AsyncClient([address], retries=0, timeout=30) for _ in range(n)]
    for c in clients:
        await c.connect()
    pipe.send("ready")
    while True:
        cmd = await loop.run_in_executor(None, pipe.recv)
        if cmd[0] == "stop":
            break
        _, seconds, seed = cmd
        rng = random.Random(seed)
        lat: list[float] = []
        errors: list[str] = []
        stop_at = time.perf_counter() + seconds

        async def one(c, rng=rng, stop_at=stop_at, lat=lat, errors=errors):
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await c.set("USER", "Bench", (rng.randint(1, 1_000_000),), VALUE)
                except Exception as exc:  # counted: a good write that failed is a finding
                    errors.append(repr(exc))
                    await asyncio.sleep(0.05)
                    continue
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(one(c) for c in clients))
        pipe.send((lat, errors))
    for c in clients:
        await c.close()


def _good_entry(pipe, address: str, n: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_good_main(pipe, address, n))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GoodLoad:
    """The good clients' worker; each run() also measures the CPU time of the primary, the
    worker and this process (the hostile connections) over the run."""

    def __init__(self, address: str, n: int, primary_pid: int):
        self.primary_pid = primary_pid
        ctx = mp.get_context("fork")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_good_entry, args=(child, address, n), daemon=True)
        self.proc.start()
        if not self.pipe.poll(30) or self.pipe.recv() != "ready":
            raise RuntimeError("the good clients did not connect")
        self.seed = 0

    async def run(self, seconds: float) -> dict:
        self.seed += 1
        pids = {"primary": self.primary_pid, "clients": self.proc.pid, "bench": os.getpid()}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        self.pipe.send(("run", seconds, self.seed))
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.pipe.poll, seconds + 60):
            raise RuntimeError("the good clients did not finish their run")
        cpu = {f"cpu_{k}_s": round(cpu_seconds(p) - cpu0[k], 2) for k, p in pids.items()}
        lat, errors = self.pipe.recv()
        lat.sort()
        if errors:
            log(f"{len(errors)} good writes failed, first: {errors[0]}")
        return {
            "ops": len(lat),
            "ops_per_s": round(len(lat) / seconds, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 3),
            "p99_ms": round(percentile(lat, 99) * 1000, 3),
            "errors": len(errors),
            **cpu,
        }

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.pipe.send(("stop",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# -- the primary: a mirror whose primary runs with the given superserver limits --------


class Primary:
    """A's pid, log and /proc figures."""

    def __init__(self, pid: int, log_path: Path):
        self.pid, self.log_path = pid, log_path

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_counts(self, since: int = 0) -> dict:
        """Per limit, from the log after byte `since`: lines naming it, and the events they
        tell of (each line counts one, plus its "(+N more not logged)")."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        out: dict[str, dict] = {}
        for line in text.splitlines():
            m = re.search(r"\[limit (\w+)(=|\])", line)
            if not m:
                continue
            row = out.setdefault(m.group(1), {"lines": 0, "events": 0})
            row["lines"] += 1
            row["events"] += 1 if m.group(2) == "=" else 0
            more = re.search(r"\(\+(\d+) more not logged\)", line)
            row["events"] += int(more.group(1)) if more else 0
        return out

    def log_size(self) -> int:
        return self.log_path.stat().st_size


@contextlib.contextmanager
def hostile_mirror(limits: dict):
    """Mirror BENCH: A (primary, with `limits` as --superserver-* options) and B (backup);
    yields (config, Primary).  Stopped and removed on exit, and on SIGTERM by _common."""
    directory = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    procs: dict = {}
    entry = (procs, directory)
    _common._RUNNING.append(entry)
    try:
        cfg = load_config(write_mirror_config(directory, {"A": "failover", "B": "failover"}))
        extra = []
        for key, value in limits.items():
            extra += ["--superserver-" + key.removesuffix("_s").replace("_", "-"), str(value)]
        for m in cfg.members:
            args = ["instance", "--config", str(cfg.source), "--member", m.name]
            args += extra if m.name == "A" else []
            procs[m.name] = spawn(args, Path(m.data_dir) / "instance.log")
        wait_ready(cfg, procs)
        a = cfg.member("A")
        yield cfg, Primary(procs["A"].pid, Path(a.data_dir) / "instance.log")
    finally:
        _common._RUNNING[:] = [e for e in _common._RUNNING if e is not entry]
        _common._remove(procs, directory)


def raise_nofile(need: int) -> int:
    """Raise this process's descriptor limit to `need` (the hard one too, when allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # root only
            return need
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# -- the hostile connections ------------------------------------------------------------


def _reason(frames: list) -> str | None:
    for f in frames:
        if isinstance(f, Frame) and f.type == MsgType.ERROR and f.req_id == 0:
            with contextlib.suppress(Exception):
                return unpack(f.body).get("message", "")
    return None


class Attack:
    """`idle` idle and `slow` slow connections (half dripping, half with a half-sent frame)."""

    def __init__(self, host: str, port: int, idle: int, slow: int, half_bytes: int):
        self.host, self.port = host, port
        self.kinds = ["drip"] * (slow - slow // 2) + ["half"] * (slow // 2) + ["idle"] * idle
        self.half_bytes = half_bytes
        self.stop = asyncio.Event()
        self.connect_gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        self.outcomes: Counter[str] = Counter()  # "kind outcome" -> count
        self.open: Counter[str] = Counter()  # kind -> admitted and open now
        self.first: Counter[str] = Counter()  # kind -> connections admitted or told no once
        self.tasks: list[asyncio.Task] = []
        drip = encode_frame(MsgType.SET, 9, ["USER", "Slow", [1], "s" * 560])
        self.drip_frame = drip
        header = HEADER.pack(MAGIC, PROTOCOL_VERSION, int(MsgType.SET), 7, 2 * half_bytes)
        self.half_frame = header + b"h" * half_bytes

    def start(self, kind: str) -> int:
        """Start the connections of one kind (drip, half or idle); how many."""
        n = self.kinds.count(kind)
        self.tasks += [asyncio.ensure_future(self._keep(kind)) for _ in range(n)]
        return n

    async def settled(self, kinds: tuple[str, ...], timeout: float) -> None:
        """Wait until every connection of `kinds` was admitted or has its first outcome."""
        deadline = time.monotonic() + timeout
        want = sum(self.kinds.count(k) for k in kinds)
        while sum(self.first[k] for k in kinds) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _keep(self, kind: str) -> None:
        fresh = [True]  # until this connection was first admitted or refused
        while not self.stop.is_set():
            outcome = await self._session(kind, fresh)
            self.outcomes[f"{kind} {outcome}"] += 1
            self._settle(kind, fresh)
            if kind == "idle" or outcome == "stopped":
                return  # an idle connection refused does not retry (see the docstring)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), random.uniform(*RECONNECT))

    def _settle(self, kind: str, fresh: list) -> None:
        if fresh[0]:
            fresh[0] = False
            self.first[kind] += 1

    async def _session(self, kind: str, fresh: list) -> str:
        async with self.connect_gate:
            if self.stop.is_set():
                return "stopped"
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 30
                )
            except (OSError, TimeoutError) as exc:
                return f"connect failed ({type(exc).__name__})"
        admitted = asyncio.Event()
        watch = asyncio.ensure_future(self._watch(reader, admitted))
        stopper = asyncio.ensure_future(self.stop.wait())
        greeted = asyncio.ensure_future(admitted.wait())
        try:
            writer.write(encode_frame(MsgType.PING, 1, []))
            await asyncio.wait([watch, greeted, stopper], return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                return watch.result()
            if stopper.done():
                return "stopped"
            self.open[kind] += 1
            self._settle(kind, fresh)
            try:
                if kind == "half":
                    writer.write(self.half_frame)
                elif kind == "drip":
                    frame, pos = self.drip_frame, 0
                    while not watch.done() and not self.stop.is_set():
                        writer.write(frame[pos : pos + DRIP_BYTES])
                        pos = (pos + DRIP_BYTES) % len(frame)
                        await asyncio.wait([watch, stopper], timeout=DRIP_EVERY)
                await asyncio.wait([watch, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.open[kind] -= 1
            return watch.result() if watch.done() else "stopped"
        except (ConnectionError, OSError):
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch), 1)
            return watch.result() if watch.done() else "reset"
        finally:
            stopper.cancel()
            greeted.cancel()
            if not watch.done():
                watch.cancel()
            writer.transport.abort()

    async def _watch(self, reader: asyncio.StreamReader, admitted: asyncio.Event) -> str:
        """Read until the server closes: what it said (the limit that bit), or how it closed."""
        decoder, frames = FrameDecoder(), []
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got = decoder.feed(chunk)
                if any(isinstance(f, Frame) and f.type == MsgType.OK for f in got):
                    admitted.set()
                frames += [f for f in got if isinstance(f, Frame) and f.type == MsgType.ERROR]
        except (ConnectionError, OSError):
            reason = _reason(frames)
            return _classify(reason) if reason else "reset"
        reason = _reason(frames)
        return _classify(reason) if reason else "closed"


def _classify(reason: str) -> str:
    if "too many connections" in reason:
        return "refused"
    m = re.search(r"\[limit (\w+)=", reason)
    if not m:
        return f"error {reason[:60]}"
    # the total cap closes the largest holders of unfinished frames: "evicted" when this
    # connection was closed for another's bytes (engine/wire/limits.py)
    return f"cut {m.group(1)}" + (" (evicted)" if reason.startswith("evicted") else "")


# -- the bench ---------------------------------------------------------------------------


async def sample(primary: Primary, stop: asyncio.Event, peaks: dict) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        with contextlib.suppress(OSError):
            fds = await loop.run_in_executor(None, primary.descriptors)
            peaks["fds"] = max(peaks.get("fds", 0), fds)
            peaks["rss_kib"] = max(peaks.get("rss_kib", 0), primary.status_kib("VmRSS"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def median_run(runs: list[dict]) -> dict:
    best = sorted(runs, key=lambda r: r["ops_per_s"])[len(runs) // 2]
    return {**best, "runs": len(runs), "errors": sum(r["errors"] for r in runs)}


async def hostile_cycle(args, primary: Primary, attack: Attack, good: GoodLoad) -> dict:
    """Open the hostile connections (the idle ones, then the slow ones), let them settle,
    run the good load, close them."""
    t0 = time.monotonic()
    rss_kib = primary.status_kib("VmRSS")
    attack.start("idle")
    await attack.settled(("idle",), 120)
    await asyncio.sleep(0.5)
    idle_kib = (primary.status_kib("VmRSS") - rss_kib) / max(1, attack.open["idle"])
    attack.start("drip")
    attack.start("half")
    await attack.settled(("drip", "half"), 60)
    opened_s = time.monotonic() - t0
    await asyncio.sleep(1.0)
    fds_held = primary.descriptors()
    open_now = dict(attack.open)
    log(f"hostile connections opened in {opened_s:.1f} s; open {open_now}")
    run = await good.run(args.seconds)
    log(f"with run: {run['ops_per_s']} ops/s, p99 {run['p99_ms']} ms; open {dict(attack.open)}")
    await attack.close()
    return {
        "run": run,
        "opened_s": opened_s,
        "idle_kib": idle_kib,
        "fds_held": fds_held,
        "open": open_now,
    }


async def bench(args, settings: LimitSettings, primary: Primary, cfg, good: GoodLoad) -> dict:
    """Runs without and with the hostile connections, taking turns (the machine's other load
    changes over time and hits both alike)."""
    backup = cfg.member("B")
    revoked_before = primary.log_path.read_text(errors="replace").count(REVOKED)
    host, port = cfg.member("A").superserver.host, cfg.member("A").superserver.port

    await good.run(1.0)  # warm-up
    primary.reset_peak()
    without: list[dict] = []
    cycles: list[dict] = []
    outcomes: Counter[str] = Counter()
    peaks: dict = {}
    peak_without_kib = rss_before_kib = fds_before = log_mark = 0
    for i in range(args.repeat):
        run = await good.run(args.seconds)
        log(f"without run {i + 1}: {run['ops_per_s']} ops/s, p99 {run['p99_ms']} ms")
        without.append(run)
        if i == 0:
            peak_without_kib = primary.status_kib("VmHWM")
            rss_before_kib = primary.status_kib("VmRSS")
            fds_before = primary.descriptors()
            log_mark = primary.log_size()
            primary.reset_peak()  # from here VmHWM is the peak with the hostile connections
        attack = Attack(host, port, args.idle, args.slow, args.half_bytes)
        sampling_stop = asyncio.Event()
        sampler = asyncio.ensure_future(sample(primary, sampling_stop, peaks))
        cycles.append(await hostile_cycle(args, primary, attack, good))
        sampling_stop.set()
        await sampler
        outcomes += attack.outcomes
        deadline = time.monotonic() + 30
        while primary.descriptors() > fds_before + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    peak_with_kib = primary.status_kib("VmHWM")
    fds_after = primary.descriptors()
    run = await good.run(args.seconds)
    log(f"without run (last): {run['ops_per_s']} ops/s, p99 {run['p99_ms']} ms")
    without.append(run)
    await asyncio.sleep(1.5)  # the rate-limited log tells its last counts
    counts = primary.log_counts(log_mark)

    revoked = primary.log_path.read_text(errors="replace").count(REVOKED) - revoked_before
    from engine.client.app import Client

    with Client([str(backup.superserver)], follow_primary=False, retries=0) as c:
        transfer = c.status().get("journal_transfer")

    base = median_run(without)
    hostile = median_run([c["run"] for c in cycles])
    conn_bound_kib = settings.max_connections * CONN_KIB
    buffered_bound_kib = int(1.25 * settings.max_buffered_total / 1024)
    bound_mb = (rss_before_kib + conn_bound_kib + buffered_bound_kib) / 1024
    hostile_side = {
        "refused": sum(v for k, v in outcomes.items() if k.endswith(" refused")),
        "cut": sum(v for k, v in outcomes.items() if " cut " in k),
        "reset_or_closed": sum(v for k, v in outcomes.items() if k.endswith((" reset", " closed"))),
        "connect_failed": sum(v for k, v in outcomes.items() if "connect failed" in k),
    }
    n = GOOD_CLIENTS
    results = [
        {"name": f"{n} good clients, without hostile connections", **base},
        {
            "name": f"{n} good clients, with {args.idle} idle + {args.slow} slow connections",
            **hostile,
        },
        {
            "name": "ratio with / without (ops_per_s; target >= 0.8)",
            "ratio": round(hostile["ops_per_s"] / max(base["ops_per_s"], 1e-9), 3),
            "p99_ratio": round(hostile["p99_ms"] / max(base["p99_ms"], 1e-9), 2),
            "target": 0.8,
            "runs_ops_per_s_without": [r["ops_per_s"] for r in without],
            "runs_ops_per_s_with": [c["run"]["ops_per_s"] for c in cycles],
        },
        {
            "name": "primary memory",
            "rss_before_mb": round(rss_before_kib / 1024, 1),
            "peak_rss_without_mb": round(peak_without_kib / 1024, 1),
            "peak_rss_mb": round(peak_with_kib / 1024, 1),
            "sampled_rss_max_mb": round(peaks.get("rss_kib", 0) / 1024, 1),
            "per_idle_connection_kib": round(cycles[0]["idle_kib"], 2),
            "expected_bound_mb": round(bound_mb, 1),
            "bound": (
                f"RSS before + max_connections {settings.max_connections} x {CONN_KIB} KiB "
                f"+ 1.25 x max_buffered_total {settings.max_buffered_total // MIB} MiB"
            ),
            "within_bound": peak_with_kib / 1024 <= bound_mb,
        },
        {
            "name": "primary descriptors",
            "fds_before": fds_before,
            "fds_held": max(c["fds_held"] for c in cycles),
            "fds_peak": peaks.get("fds", 0),
            "fds_after": fds_after,
            "expected_bound": fds_before + settings.max_connections,
        },
        {
            "name": f"hostile connections (totals over {len(cycles)} cycles)",
            "cycles": len(cycles),
            "attempted_idle": args.idle,
            "attempted_slow": args.slow,
            "half_sent_bytes": args.half_bytes,
            "opened_s": round(statistics.median(c["opened_s"] for c in cycles), 2),
            "open_when_settled": cycles[0]["open"],
            **hostile_side,
            "outcomes": dict(sorted(outcomes.items())),
        },
        {
            "name": "primary log (rate-limited)",
            "lines": sum(r["lines"] for r in counts.values()),
            "events": sum(r["events"] for r in counts.values()),
            "per_limit": counts,
        },
        {"name": "backup", "journal_transfer": transfer, "revoked": revoked},
    ]
    return {"results": results, "backup_ok": transfer == "Active" and not revoked}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 idle + 100 slow, short runs")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, help="length of each run (5; quick 2)")
    ap.add_argument("--repeat", type=int, help="runs per phase (3; quick 1)")
    ap.add_argument("--idle", type=int, help="idle connections (10000; quick 1000)")
    ap.add_argument("--slow", type=int, help="slow connections (1000; quick 100)")
    args = ap.parse_args()
    q = args.quick
    args.seconds = args.seconds or (2.0 if q else 5.0)
    args.repeat = args.repeat or (1 if q else 3)
    args.idle = args.idle if args.idle is not None else (1000 if q else 10_000)
    args.slow = args.slow if args.slow is not None else (100 if q else 1000)
    settings = LimitSettings.from_mapping(
        {"max_connections": max(1, args.idle + args.slow), "frame_timeout_s": 2.0 if q else 5.0}
    )
    half = max(1, args.slow // 2)
    # the half-sent frames together offer twice max_buffered_total, in whole KiB
    args.half_bytes = max(1024, (2 * settings.max_buffered_total // half) & ~1023)
    nofile = raise_nofile(args.idle + args.slow + 2048)
    log(f"RLIMIT_NOFILE {nofile}; primary limits {settings.changed()}")

    good: GoodLoad | None = None

    def on_sigterm(*_):
        if good is not None and good.proc.is_alive():
            good.proc.kill()
        _common._on_sigterm()

    signal.signal(signal.SIGTERM, on_sigterm)
    with hostile_mirror(settings.changed()) as (cfg, primary):
        address = str(cfg.first_primary.superserver)
        wait_backup_active(address)
        try:
            good = GoodLoad(
                address, GOOD_CLIENTS, primary.pid
            )  # forked before any hostile socket exists
            with contextlib.suppress(ImportError):
                import uvloop

                uvloop.install()
            out = asyncio.run(bench(args, settings, primary, cfg, good))
        finally:
            if good is not None:
                good.stop()
    results = out["results"]
    if args.json:
        print(json.dumps({"benchmark": "hostile", "results": results}))
    else:
        for r in results:
            name = r["name"]
            rest = {k: v for k, v in r.items() if k != "name"}
            print(f"{name}:")
            for k, v in rest.items():
                print(f"    {k}: {v}")
    if not out["backup_ok"]:
        log("FAILED: the backup was not Active for the whole bench (see 'backup' above)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("[hostile] interrupted", file=sys.stderr)
        sys.exit(130)
