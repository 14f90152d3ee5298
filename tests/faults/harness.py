"""Running a fault schedule (tests/faults/schedule.py) on a real mirror, with a workload
recording the history (tests/faults/history.py), and checking it (tests/faults/checker.py).

`FaultMirror` is a LinkedMirror (tests/faults/mirror.py: failover members A and B whose links to
each other and to the arbiter cross our proxy) with a DR async C and an agent on each failover
member's host, where also

    "C->A", "C->B"                       the DR's data channel to each failover member, and
    "C->A (superserver)", ...            its fallback through their superservers (an async
                                         looks for the primary there too)
    "A->agent B", "B->agent A"           each failover member's link to its partner's agent
                                         (docs/takeover.md, "Asking the partner's agent")

cross a LinkProxy too.  Clients reach A and B directly: an isolated primary keeps its clients,
the harshest case for "never two primaries".  Everything listens on loopback.

`run_schedule(mirror, schedule)` starts the workload, plays the steps (each fault or
combination, held, healed; the harness heals everything between steps: links, stopped
processes, and every process that died or stood down is started again), heals at the end,
waits until the mirror is whole (one primary, its backup Active, the DR caught up, Arbiter
Controlled), stops the clients, waits until the three members' contents agree, and checks.  A
failing schedule leaves a report (seed, schedule, role timeline, offending writes) and the
history as JSON in `report_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import rules
from engine.client.app import Client, EngineError
from engine.member.config import load_config
from engine.wire.admin_token import read_token
from tests.faults.checker import Event, Terms, Verdict, check, failover_times, final_state_problems
from tests.faults.history import DATABASE, Op, Workload
from tests.faults.links import PARTITION, STALL
from tests.faults.mirror import LinkedMirror
from tests.faults.schedule import Fault, Schedule

FAILOVER, DR = ("A", "B"), ("C",)
GNAME = "Faults"


class FaultMirror(LinkedMirror):
    """A, B (failover), C (DR), an arbiter and two agents, every link between them proxied."""

    def __init__(self, directory: Path, arbiter, qos_ms: int = 1000):
        super().__init__(
            directory, arbiter, types=("failover", "failover", "dr"), qos_ms=qos_ms, agents=True
        )
        self.directory = directory
        self.events: list[Event] = []  # what the harness did, for the role timeline
        self.faults: list[Event] = []  # when each fault began (failover times)
        self.paused: set[str] = set()
        self.arbiter_paused = False
        self.last_primary = "A"
        self._proxy_dr_and_agents()

    def _proxy_dr_and_agents(self) -> None:
        text = self.path.read_text()
        mine = text
        for other in FAILOVER:
            member = self.cfg.member(other)
            for what, real, name in (
                ("private", member.private, f"C->{other}"),
                ("superserver", member.superserver, f"C->{other} (superserver)"),
            ):
                proxy = self.links.add(name, real)
                line = f'{what} = "{real}"'
                assert mine.count(line) == 1, line
                mine = mine.replace(line, f'{what} = "{proxy.address}"')
        own = self.directory / "mirror-C.toml"
        own.write_text(mine)
        self.member_cfgs["C"] = load_config(own)
        for me, other in (("A", "B"), ("B", "A")):
            url = f"http://127.0.0.1:{self.agents[other].port}"
            proxy = self.links.add(f"{me}->agent {other}", f"127.0.0.1:{self.agents[other].port}")
            own = self.directory / f"mirror-{me}.toml"
            text = own.read_text()
            assert text.count(f'agent = "{url}"') == 1
            own.write_text(text.replace(f'agent = "{url}"', f'agent = "http://{proxy.address}"'))
            self.member_cfgs[me] = load_config(own)

    # -- the harness's own record ----------------------------------------------------------------
    def note(self, text: str, fault: bool = False) -> None:
        event = Event(time.time(), "harness", text)
        self.events.append(event)
        if fault:
            self.faults.append(event)

    # -- who is who now ----------------------------------------------------------------------------
    def info(self, member: str, timeout: float = 1.5) -> dict | None:
        if member in self.paused or self.exited(member) or member not in self.procs:
            return None
        try:
            with Client(
                [self.address(member)], follow_primary=False, timeout=timeout, retries=0
            ) as c:
                return c.info()
        except (EngineError, OSError, TimeoutError):
            return None

    def roles(self) -> tuple[str, str]:
        """(primary, backup) now: the failover member answering as primary at the latest
        term (the last one known when none answers), and the other."""
        best = None
        for member in FAILOVER:
            info = self.info(member)
            if info and info.get("role") == "primary":
                term = (info.get("failover_state") or {}).get("term") or 0
                if best is None or term > best[1]:
                    best = (member, term)
        if best is not None:
            self.last_primary = best[0]
        primary = self.last_primary
        return primary, "B" if primary == "A" else "A"

    def link_names(self, group: str, primary: str, backup: str) -> list[str]:
        p, k = primary, backup
        pk = [f"{p}->{k}", f"{k}->{p}"]

        def dr(m):
            return [f"C->{m}", f"C->{m} (superserver)"]

        groups = {
            "primary-backup": pk,
            "primary-arbiter": [f"{p}->arbiter"],
            "backup-arbiter": [f"{k}->arbiter"],
            "all": [*pk, f"{p}->arbiter", f"{k}->arbiter"],
            "primary": [*pk, f"{p}->arbiter", *dr(p)],
            "backup": [*pk, f"{k}->arbiter", *dr(k)],
            "primary-host": [*pk, f"{p}->arbiter", *dr(p), f"{k}->agent {p}", f"{p}->agent {k}"],
            "backup-host": [*pk, f"{k}->arbiter", *dr(k), f"{p}->agent {k}", f"{k}->agent {p}"],
            "dr": [*dr(p), *dr(k)],
            "agent-of-primary": [f"{k}->agent {p}"],
            "agent-of-backup": [f"{p}->agent {k}"],
        }
        return groups[group]

    # -- faults ----------------------------------------------------------------------------------
    def inject(self, fault: Fault, primary: str, backup: str) -> None:
        member = {"primary": primary, "backup": backup, "dr": "C"}.get(fault.target)
        kind = fault.kind
        if kind in ("blackhole", "stall", "cut", "reset", "delay"):
            names = self.link_names(fault.target, primary, backup)
            self.note(f"{fault.describe()}: {', '.join(names)}", fault=True)
            if kind == "blackhole":
                self.links.cut(*names, mode=PARTITION)
            elif kind == "stall":
                self.links.cut(*names, mode=STALL)
            elif kind == "cut":
                self.links.refuse(*names)
                self.links.reset(*names)
            elif kind == "reset":
                self.links.reset(*names)
            else:
                self.links.delay(fault.ms, *names, jitter_ms=fault.jitter_ms)
            return
        if kind == "arbiter":
            self.note("kill the arbiter", fault=True)
            self._signal(self.arbiter.proc, signal.SIGKILL)
            return
        if kind == "arbiter-pause":
            self.note("SIGSTOP the arbiter", fault=True)
            self._signal(self.arbiter.proc, signal.SIGSTOP)
            self.arbiter_paused = True
            return
        if kind == "agent":
            self.note(f"kill the agent of {member}'s host", fault=True)
            agent = self.agents[member]
            self._signal(agent.proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.proc.wait(10)
            return
        proc = self.procs.get(member)
        if proc is None or proc.poll() is not None:
            self.note(f"{fault.describe()} ({member}): not running, nothing to do")
            return
        self.note(f"{fault.describe()} ({member})", fault=True)
        if kind == "kill":
            self._signal(proc, signal.SIGCONT)
            self._signal(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            self.paused.discard(member)
        elif kind == "pause":
            self._signal(proc, signal.SIGSTOP)
            self.paused.add(member)
        elif kind == "restart":
            self._signal(proc, signal.SIGCONT)
            self.paused.discard(member)
            self.stop(member)  # SIGTERM: a primary hands over to its Active backup
            self.note(f"{member} stopped (exit {proc.returncode}); starting it again")
            self._start(member)

    @staticmethod
    def _signal(proc, sig) -> None:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    # -- healing ---------------------------------------------------------------------------------
    def heal_all(self) -> None:
        """Every link forwarding again without delay, every stopped process resumed, the
        arbiter and the agents running, every member that died or stood down started again."""
        self.links.heal()
        self.links.delay(0)
        for member in sorted(self.paused):
            self._signal(self.procs.get(member), signal.SIGCONT)
        self.paused.clear()
        if self.arbiter_paused:
            self._signal(self.arbiter.proc, signal.SIGCONT)
            self.arbiter_paused = False
        self.note("heal: links, SIGCONT")
        self.restart_dead()

    def restart_dead(self) -> None:
        if self.arbiter.proc is None or self.arbiter.proc.poll() is not None:
            self.note("start the arbiter again")
            self.arbiter.start()
        for name, agent in self.agents.items():
            if not agent.alive():
                self.note(f"start the agent of {name}'s host again")
                agent.restart()
        dead = [m for m in (*FAILOVER, *DR) if m not in self.procs or self.exited(m)]
        for member in dead:
            if member in self.procs:
                code = self.procs[member].poll()
                self.note(f"{member} exited ({code}); starting it again")
                self.procs.pop(member)
        if dead:
            self._start(*dead)

    def _start(self, *members: str) -> None:
        try:
            self.start(*members)
        except RuntimeError as exc:  # it exited at once: the next heal tries again
            self.note(f"start of {', '.join(members)}: {exc}")

    # -- the mirror's state ----------------------------------------------------------------------
    def statuses(self, timeout: float = 2.0) -> dict[str, dict | None]:
        out = {}
        for member in (*FAILOVER, *DR):
            if member in self.paused or member not in self.procs or self.exited(member):
                out[member] = None
                continue
            try:
                with self.client(member, timeout=timeout, retries=0) as c:
                    out[member] = c.status()
            except (EngineError, OSError, TimeoutError):
                out[member] = None
        return out

    def wait_whole(self, timeout: float) -> list[str]:
        """Wait until the mirror is whole (checker.final_state_problems), starting again any
        member that dies meanwhile; the problems left at the timeout ([] when whole)."""
        deadline = time.monotonic() + timeout
        problems = ["not looked at yet"]
        while time.monotonic() < deadline:
            self.restart_dead()
            problems = final_state_problems(self.statuses(), FAILOVER, DR)
            if not problems:
                return []
            time.sleep(0.25)
        return problems

    def digests(self, timeout: float = 5.0) -> dict[str, object]:
        out = {}
        for member in (*FAILOVER, *DR):
            try:
                with self.client(member, timeout=timeout, retries=1) as c:
                    out[member] = c.admin("digest", DATABASE)
            except (EngineError, OSError, TimeoutError) as exc:
                out[member] = f"unreadable: {exc}"
        return out

    def contents(self, member: str) -> dict[str, object]:
        token = read_token(self.cfg.member(member).data_dir)
        with Client(
            [self.address(member)], follow_primary=False, timeout=30, admin_token=token
        ) as c:
            return {subs[0]: value for subs, value in c.query(DATABASE, GNAME)}

    def journal(self, member: str) -> bytes:
        directory = Path(self.cfg.member(member).data_dir) / "journal"
        return b"".join(p.read_bytes() for p in sorted(directory.glob("MIRROR-*")))


@dataclass
class Run:
    schedule: Schedule
    verdict: Verdict
    history: list[Op]
    failover_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None
    report_text: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict.ok


def replay_command(schedule: Schedule) -> str:
    if schedule.seed is not None:
        return f".venv/bin/python bench/faults.py --seed {schedule.seed}"
    return f".venv/bin/pytest tests/faults/test_random_schedules.py -k {schedule.name}"


def run_schedule(
    mirror: FaultMirror,
    schedule: Schedule,
    *,
    label: str,
    report_dir: Path,
    earlier: list[Op] | None = None,
    clients: int = 3,
    whole_timeout: float = 120.0,
    log=print,
) -> Run:
    """Play `schedule` on `mirror` under a workload and check it (module doc).  `earlier`:
    acknowledged writes of earlier schedules on this mirror, checked again."""
    began = time.time()
    log(schedule.describe())
    left = mirror.wait_whole(whole_timeout)
    if left:
        mirror.note(f"not whole before the schedule: {'; '.join(left)}")
        log(f"the mirror was not whole before the schedule: {left}")
    members = {mirror.address(m): m for m in FAILOVER}
    workload = Workload(
        [mirror.address(m) for m in FAILOVER],
        members,
        GNAME,
        label,
        clients=clients,
        timeout=max(2.0, 2 * mirror.qos_ms / 1000 + 1),
        seed=schedule.seed or 0,
    )
    qos_s = mirror.qos_ms / 1000
    with workload:
        time.sleep(0.5)
        for i, step in enumerate(schedule.steps):
            primary, backup = mirror.roles()
            mirror.note(f"step {i + 1}: {step.name} (primary {primary}, backup {backup})")
            t0 = time.monotonic()
            for fault in sorted(step.faults, key=lambda f: f.after):
                wait = t0 + fault.after - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                mirror.inject(fault, primary, backup)
            wait = t0 + step.hold - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            mirror.heal_all()
            if step.settle:
                left = mirror.wait_whole(max(30.0, 20 * qos_s))
                if left:
                    mirror.note(f"not whole after step {i + 1}: {'; '.join(left)}")
            time.sleep(step.gap)
        mirror.heal_all()
        mirror.note("final heal")
        left = mirror.wait_whole(whole_timeout)
        if not left:
            time.sleep(1.0)  # writes acknowledged by the final primary, Active backup
    history = workload.history.ops
    mirror.note("clients stopped")
    # caught up: the three members hold the same content
    deadline = time.monotonic() + 60
    digests = mirror.digests()
    while len({repr(d) for d in digests.values()}) > 1 and time.monotonic() < deadline:
        time.sleep(0.25)
        digests = mirror.digests()
    final = mirror.statuses()
    said = [m for m in FAILOVER if (final.get(m) or {}).get("status") in rules.PRIMARY_STATUSES]
    primary = said[0] if said else mirror.roles()[0]
    contents = {}
    for member in (primary, *DR):
        try:
            contents[member] = mirror.contents(member)
        except (EngineError, OSError, TimeoutError) as exc:
            mirror.note(f"{member}'s content unreadable: {exc}")
            contents[member] = {}
    backup = "B" if primary == "A" else "A"
    mismatch = digests.get(backup) != digests.get(primary)
    verdict = check(
        history,
        {m: mirror.log(m) for m in (*FAILOVER, *DR)},
        contents,
        digests={m: digests[m] for m in (primary, backup)},
        journals={backup: mirror.journal(backup)} if mismatch else None,
        final=final,
        failover=FAILOVER,
        dr=DR,
        earlier=earlier or (),
        harness_events=[e for e in mirror.events if e.time >= began - 1],
    )
    terms = verdict.terms
    since = [e for e in mirror.faults if e.time >= began]
    times = failover_times(history, _terms_since(terms, began), since)
    verdict.timeline = [e for e in verdict.timeline if e.time >= began - 2]
    run = Run(schedule, verdict, history, times, time.time() - began)
    if not verdict.ok:
        report_dir.mkdir(parents=True, exist_ok=True)
        name = f"seed-{schedule.seed}" if schedule.seed is not None else schedule.name
        run.report = report_dir / f"faults-{name}-{label}.txt"
        run.report_text = verdict.report(
            schedule.seed,
            schedule.describe(),
            replay=replay_command(schedule),
            final=final,
            history=history,
        )
        run.report.write_text(run.report_text)
        run.report.with_suffix(".history.json").write_text(
            json.dumps([op.to_json() for op in history], indent=0, default=repr)
        )
    log(f"  {verdict.summary()} in {run.seconds:.1f} s")
    return run


def _terms_since(terms: Terms, began: float) -> Terms:
    return Terms.of(c for cs in terms.claims.values() for c in cs if c.time >= began)
