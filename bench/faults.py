"""Randomized fault injection (issue 14): no acknowledged write lost, never two primaries.

    .venv/bin/python bench/faults.py [--quick] [--json] [--schedules N] [--minutes M]
                                     [--base-seed S] [--seed S] [--qos-ms MS] [--clients N]
                                     [--report-dir DIR]

The long run of the suite whose short fixed set is in the normal test run
(tests/faults/test_random_schedules.py; docs/fault-testing.md).  A real mirror on loopback
(tests/faults/harness.py FaultMirror: failover members A and B, a DR async C, a real arbiter,
an agent on each failover member's host, every link between them through our proxy) plays
--schedules seeded schedules (200; quick 8) one after the other under a workload of concurrent
clients (tests/faults/history.py), each schedule mixing SIGKILL, SIGSTOP/SIGCONT, graceful
restarts, agent and arbiter deaths, and blackholes, stalls, cuts, resets and delays of the
links, singly and in the combinations of Table 3-1 (tests/faults/schedule.py), healed between
steps and at the end.  After each schedule the mirror must be whole again and the checker
(tests/faults/checker.py) finds every acknowledged write, of this schedule and every earlier one
on the same mirror, on the primary, the backup and the DR, and no write answered by a member
that was not the only primary.

Schedule i's seed is --base-seed + i (the base is printed; default: from the clock), so any
schedule replays with --seed S (on a fresh mirror).  A failing schedule writes a report (the
seed, the schedule, the role timeline, the offending writes) and the history as JSON to
--report-dir (default: the run's directory, kept), and the mirror is replaced for the next
schedule.  --minutes bounds the run: no schedule starts after that.  The mirror is replaced
every 20 schedules as well, so the re-checked writes stay a few thousand.

Figures: schedules, acked_checked (the acknowledged writes of the schedules, each counted
once; each is checked again after every later schedule on the same mirror), lost (must be 0),
dual_primary (must be 0), unknown (writes whose answer was lost), failover_p50_ms /
failover_p99_ms: from the fault to the first write a new primary acknowledged to the clients
(client-observed: it includes the client's timeout on a silent primary, 2 x QoS + 1 s), over
every takeover the schedules caused.  Exit status 1 if any schedule lost a write, saw two
primaries or failed its checks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from _common import percentile, stderr_log  # first: puts the repository root on sys.path

from tests.faults.harness import FaultMirror, Run, run_schedule  # noqa: E402
from tests.faults.history import ACK, WRITE, Op  # noqa: E402
from tests.faults.mirror import Arbiter  # noqa: E402
from tests.faults.schedule import generate  # noqa: E402

REPLACE_EVERY = 20
log = stderr_log("faults")


class Mirrors:
    """The mirror schedules run on, replaced after a failure and every REPLACE_EVERY."""

    def __init__(self, directory: Path, qos_ms: int):
        self.directory = directory
        self.qos_ms = qos_ms
        self.made = 0
        self.used = 0
        self.mirror: FaultMirror | None = None
        self.arbiter: Arbiter | None = None
        self.acked: list[Op] = []

    def get(self) -> FaultMirror:
        if self.mirror is not None and self.used >= REPLACE_EVERY:
            self.close(keep=False)
        if self.mirror is None:
            self.made += 1
            self.used = 0
            self.where = self.directory / f"mirror{self.made}"
            self.where.mkdir(parents=True)
            self.arbiter = Arbiter(self.where)
            self.arbiter.start()
            self.mirror = FaultMirror(self.where / "mirror", self.arbiter, qos_ms=self.qos_ms)
            self.mirror.start()
            self.acked = []
        self.used += 1
        return self.mirror

    def after(self, run: Run) -> None:
        if run.ok:
            self.acked += [o for o in run.history if o.kind == WRITE and o.outcome == ACK]
        else:
            log(f"keeping the failed mirror's logs in {self.where}")
            self.close(keep=True)

    def close(self, keep: bool = True) -> None:
        if self.mirror is not None:
            self.mirror.close()
            self.arbiter.stop()
            if not keep:
                shutil.rmtree(self.where, ignore_errors=True)
        self.mirror = self.arbiter = None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 schedules")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--schedules", type=int, help="how many (200; quick 8)")
    ap.add_argument("--minutes", type=float, help="start no schedule after this long")
    ap.add_argument("--base-seed", type=int, help="schedule i's seed is this + i")
    ap.add_argument("--seed", type=int, help="replay the one schedule of this seed")
    ap.add_argument("--qos-ms", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--report-dir", type=Path)
    args = ap.parse_args()
    if args.seed is not None:
        seeds = [args.seed]
    else:
        count = args.schedules or (8 if args.quick else 200)
        base = args.base_seed if args.base_seed is not None else int(time.time()) % 1_000_000 * 1000
        log(f"base seed {base}: schedule i has seed {base} + i")
        seeds = [base + i for i in range(count)]
    directory = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    report_dir = args.report_dir or directory / "reports"
    # a SIGTERM unwinds through the finally below, which stops every process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.seed is not None:
        log(f"replaying seed {args.seed}:\n{generate(args.seed).describe()}")
    mirrors = Mirrors(directory, args.qos_ms)
    runs: list[Run] = []
    errors: list[int] = []  # seeds whose schedule the harness could not play
    started = time.monotonic()
    try:
        for i, seed in enumerate(seeds):
            if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
                log(f"{args.minutes} minutes passed: stopping after {len(runs)} schedules")
                break
            schedule = generate(seed)
            try:
                run = run_schedule(
                    mirrors.get(),
                    schedule,
                    label=f"s{seed}",
                    report_dir=report_dir,
                    earlier=mirrors.acked,
                    clients=args.clients,
                    log=lambda text: None,
                )
            except Exception:  # the harness itself failed (a process that would not start)
                log(f"{i + 1}/{len(seeds)} seed {seed}: harness error\n{traceback.format_exc()}")
                errors.append(seed)
                mirrors.close(keep=True)
                continue
            mirrors.after(run)
            runs.append(run)
            took = ", ".join(f"{t * 1000:.0f}" for t in run.failover_s) or "-"
            log(
                f"{i + 1}/{len(seeds)} seed {seed}: {'ok' if run.ok else 'FAILED'}, "
                f"{run.verdict.summary()}; failover ms {took} ({run.seconds:.1f} s)"
            )
            if not run.ok:
                log(f"report: {run.report}\n{run.report_text}")
    finally:
        mirrors.close(keep=True)
    failed = [r for r in runs if not r.ok]
    failover_ms = [t * 1000 for r in runs for t in r.failover_s]
    result = {
        "name": "random",
        "schedules": len(runs),
        "acked_checked": sum(r.verdict.acked_checked for r in runs),
        "lost": sum(r.verdict.lost for r in runs),
        "dual_primary": sum(r.verdict.dual_primary for r in runs),
        "unknown": sum(r.verdict.unknown for r in runs),
        "failover_p50_ms": round(percentile(failover_ms, 50), 1),
        "failover_p99_ms": round(percentile(failover_ms, 99), 1),
        "takeovers": len(failover_ms),
        "failed_schedules": [r.schedule.seed for r in failed],
        "harness_errors": errors,
        "qos_ms": args.qos_ms,
        "seconds": round(time.monotonic() - started, 1),
    }
    if failed or errors:
        log(
            f"{len(failed)} schedules failed, {len(errors)} harness errors: reports in "
            f"{report_dir}; logs kept in {directory}"
        )
    else:
        shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        print(json.dumps({"benchmark": "faults", "results": [result]}))
    else:
        print(
            f"fault schedules: {result['schedules']} (QoS {args.qos_ms} ms, "
            f"{result['seconds']:.0f} s), acknowledged writes checked {result['acked_checked']}, "
            f"lost {result['lost']}, dual primary {result['dual_primary']}, "
            f"unknown {result['unknown']}"
        )
        print(
            f"failover (fault -> first write a new primary acknowledged, as clients saw it), "
            f"{result['takeovers']} takeovers: p50 {result['failover_p50_ms']:.0f} ms, "
            f"p99 {result['failover_p99_ms']:.0f} ms"
        )
        if failed:
            print(f"FAILED schedules (seeds): {result['failed_schedules']}")
        if errors:
            print(f"schedules the harness could not play (seeds): {errors}")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
