"""Fault schedules (issue 14, deliverable 2): seeded, reproducible, printed.

A schedule is a few steps.  Each step injects one fault or a combination at once (one of the
rows of Table 3-1, guide §3.3.5.2, docs/mirroring-model.md §9.6, or an outage combination of
guide §3.3.3), holds it, heals it, and leaves a gap before the next step; after the last step
everything is healed (tests/faults/harness.py runs a schedule on a real mirror).

Targets are roles, resolved when the step runs: "primary" and "backup" are the failover members
holding those roles then, "dr" the DR async, "arbiter" the arbiter.  So a schedule means the
same thing whoever is primary, and `generate(seed)` gives the same schedule on every machine:
a failing run is replayed from its seed (`bench/faults.py --seed N`).

Faults (`Fault.kind`):

    kill        SIGKILL of a member (healed: started again)
    pause       SIGSTOP of a member (healed: SIGCONT)
    restart     a graceful restart of a member (SIGTERM, then started again at once)
    agent       the agent on a failover member's host dies (healed: started again)
    arbiter     the arbiter dies (healed: started again); arbiter-pause: SIGSTOP / SIGCONT
    blackhole   links go silent, no RST, bytes dropped (tests/faults/links.py "partition";
                at heal the connections it held are reset)
    stall       links go silent and nothing is lost (a short partition TCP survives)
    cut         connections reset and new ones refused (a REJECT rule)
    reset       every open connection on the links reset once (not held)
    delay       a delay line on the links (ms, jitter)

Links (`Fault.target` of a link fault), between the roles of the moment:

    primary-backup    the data channel both ways            (Table 3-1 row 4)
    primary-arbiter   the primary's contact with the arbiter (row 3)
    backup-arbiter    the backup's                          (row 2)
    all               the three links of rows 2-4 at once   (row 8)
    primary           every link of the primary's instance (partner, arbiter, DR) (row 7)
    backup            every link of the backup's instance   (row 6)
    primary-host      the primary's instance and its agent (a whole host cut off)
    backup-host       the same for the backup
    dr                the DR async's links to both failover members
    agent-of-primary  the backup's link to the primary's agent
    agent-of-backup   the primary's link to the backup's agent
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

MEMBER_FAULTS = ("kill", "pause", "restart")
LINK_FAULTS = ("blackhole", "stall", "cut", "reset", "delay")
LINK_GROUPS = (
    "primary-backup",
    "primary-arbiter",
    "backup-arbiter",
    "all",
    "primary",
    "backup",
    "primary-host",
    "backup-host",
    "dr",
    "agent-of-primary",
    "agent-of-backup",
)
HOLDS = (0.3, 0.8, 1.5, 2.5, 4.0)  # seconds a step's faults are held before healing


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    ms: int = 0  # delay only
    jitter_ms: int = 0
    after: float = 0.0  # seconds after the step's first fault (a staggered combination)

    def describe(self) -> str:
        when = f"+{self.after:.1f} s " if self.after else ""
        if self.kind == "delay":
            return f"{when}delay {self.ms}±{self.jitter_ms} ms on {self.target} links"
        if self.kind in LINK_FAULTS:
            return f"{when}{self.kind} {self.target} links"
        if self.kind == "agent":
            return f"{when}kill the agent of the {self.target}'s host"
        if self.kind == "arbiter":
            return f"{when}kill the arbiter"
        if self.kind == "arbiter-pause":
            return f"{when}SIGSTOP the arbiter"
        return f"{when}{_VERB[self.kind]} the {self.target}"


_VERB = {"kill": "SIGKILL", "pause": "SIGSTOP", "restart": "gracefully restart"}


@dataclass(frozen=True)
class Step:
    name: str  # what the step is: a Table 3-1 row, an outage, or "single"
    faults: tuple[Fault, ...]
    hold: float  # seconds from the first fault to the heal
    gap: float  # seconds after the heal before the next step
    settle: bool  # wait until the mirror is whole again before the next step

    def describe(self) -> str:
        what = "; ".join(f.describe() for f in self.faults)
        after = "wait until whole, then " if self.settle else ""
        return f"{self.name}: {what}; hold {self.hold:.1f} s; heal; {after}gap {self.gap:.1f} s"


@dataclass(frozen=True)
class Schedule:
    seed: int | None
    steps: tuple[Step, ...]
    name: str = ""

    def describe(self) -> str:
        head = f"schedule {self.name or self.seed}"
        lines = [head] + [f"  step {i + 1}: {s.describe()}" for i, s in enumerate(self.steps)]
        lines.append("  then: heal everything, wait until whole, check")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        raw = json.loads(text)
        steps = tuple(
            Step(**{**s, "faults": tuple(Fault(**f) for f in s["faults"])}) for s in raw["steps"]
        )
        return cls(seed=raw["seed"], steps=steps, name=raw.get("name", ""))


# -- Table 3-1 and the outage combinations of guide §3.3.3 ---------------------------------------


def _combinations(rng: random.Random) -> dict[str, tuple[Fault, ...]]:
    link = rng.choice(("blackhole", "cut", "stall"))
    gone = rng.choice(("kill", "pause", "isolate"))

    def member_gone(role: str) -> tuple[Fault, ...]:
        if gone == "isolate":
            return (Fault("blackhole", role),)
        return (Fault(gone, role),)

    return {
        "row 2 backup-arbiter lost": (Fault(link, "backup-arbiter"),),
        "row 3 primary-arbiter lost": (Fault(link, "primary-arbiter"),),
        "row 4 primary-backup lost": (Fault(link, "primary-backup"),),
        "row 5 arbiter gone": (Fault(rng.choice(("arbiter", "arbiter-pause")), "arbiter"),),
        "row 6 backup gone": member_gone("backup"),
        "row 7 primary gone": member_gone("primary"),
        "row 8 all links lost": (Fault(link, "all"),),
        # guide §3.3.3.4: the arbiter first, then the primary (its agent decides)
        "outage arbiter then primary": (
            Fault("arbiter", "arbiter"),
            Fault("kill", "primary", after=rng.choice((0.5, 1.5))),
        ),
        # the same with the primary's whole host gone: nothing can confirm it down
        "outage arbiter, primary and its agent": (
            Fault("arbiter", "arbiter"),
            Fault("agent", "primary"),
            Fault("kill", "primary", after=1.0),
        ),
        # guide §3.3.3.5: backup and arbiter silent at once
        "outage backup and arbiter at once": (
            Fault("pause", "backup"),
            Fault("arbiter-pause", "arbiter"),
        ),
        # guide §3.3.3.6 then procedure U6: both failover members
        "outage primary and backup": (Fault("kill", "primary"), Fault("kill", "backup")),
        # row 7 with the primary's agent unreachable too: the arbiter's report alone
        "row 7 host cut off": (Fault("blackhole", "primary-host"),),
        # a takeover while the DR cannot follow
        "DR cut, then primary killed": (
            Fault("blackhole", "dr"),
            Fault("kill", "primary", after=0.5),
        ),
    }


def _single(rng: random.Random) -> Fault:
    roll = rng.random()
    if roll < 0.35:
        return Fault(rng.choice(MEMBER_FAULTS), rng.choice(("primary", "primary", "backup", "dr")))
    if roll < 0.45:
        return Fault("agent", rng.choice(("primary", "backup")))
    if roll < 0.52:
        return Fault(rng.choice(("arbiter", "arbiter-pause")), "arbiter")
    kind = rng.choice(LINK_FAULTS)
    group = rng.choice(LINK_GROUPS)
    if kind == "delay":
        return Fault(kind, group, ms=rng.choice((20, 100, 400)), jitter_ms=rng.choice((0, 50)))
    return Fault(kind, group)


def generate(seed: int, max_steps: int = 3) -> Schedule:
    """The schedule of `seed`: 1 to max_steps steps, each a single fault, two at once, a row
    of Table 3-1 or an outage combination."""
    rng = random.Random(seed)
    steps = []
    for _ in range(rng.randint(1, max_steps)):
        roll = rng.random()
        if roll < 0.45:
            combos = _combinations(rng)
            name = rng.choice(sorted(combos))
            faults = combos[name]
        elif roll < 0.75:
            name, faults = "single", (_single(rng),)
        else:
            first, second = _single(rng), _single(rng)
            second = Fault(**{**asdict(second), "after": rng.choice((0.0, 0.3, 1.0))})
            name, faults = "two at once", (first, second)
        hold = max(rng.choice(HOLDS), max(f.after for f in faults) + 0.3)
        steps.append(
            Step(
                name=name,
                faults=faults,
                hold=hold,
                gap=rng.choice((0.2, 0.5, 1.0, 2.0)),
                settle=rng.random() < 0.5,
            )
        )
    return Schedule(seed=seed, steps=tuple(steps))


def fixed(name: str, *steps: Step) -> Schedule:
    return Schedule(seed=None, steps=tuple(steps), name=name)


def step(name: str, *faults: Fault, hold: float = 2.5, gap: float = 0.5, settle=True) -> Step:
    return Step(name=name, faults=tuple(faults), hold=hold, gap=gap, settle=settle)


# The short fixed set the normal test run goes through (tests/faults/test_random_schedules.py):
# the faults that move the primary, each once, and the combinations where a write is most
# easily lost or answered twice.
CI_SCHEDULES = {
    "the primary is killed": fixed("kill", step("row 7 primary gone", Fault("kill", "primary"))),
    "the primary is cut off from everything but its clients": fixed(
        "isolate", step("row 7 primary gone", Fault("blackhole", "primary"), hold=3.0)
    ),
    # its agent unreachable too, so nothing forces it down: it must wait, in trouble, past the
    # trouble timeout of Agent Controlled mode (2 x QoS, docs/failover.md) until it hears of B
    "the primary's whole host is cut off for longer than any trouble timeout": fixed(
        "host", step("row 7 host cut off", Fault("blackhole", "primary-host"), hold=4.5)
    ),
    "the primary hangs, then the old one wakes up": fixed(
        "hang", step("row 7 primary gone", Fault("pause", "primary"), hold=3.0)
    ),
    "the primary restarts gracefully, then the backup link flaps": fixed(
        "handover",
        step("single", Fault("restart", "primary"), hold=0.5, settle=False, gap=0.2),
        step("row 4 primary-backup lost", Fault("cut", "primary-backup"), hold=1.5),
    ),
    "the arbiter dies, then the primary, and its agent decides": fixed(
        "agent",
        step(
            "outage arbiter then primary",
            Fault("arbiter", "arbiter"),
            Fault("kill", "primary", after=1.5),
            hold=3.5,
        ),
    ),
    "the DR is cut off while the primary is killed, and both failover members die": fixed(
        "dr-u6",
        step(
            "DR cut, then primary killed",
            Fault("blackhole", "dr"),
            Fault("kill", "primary", after=0.5),
            hold=2.0,
            settle=False,
        ),
        step("outage primary and backup", Fault("kill", "primary"), Fault("kill", "backup")),
    ),
}

# Two seeded schedules as well (they caught a primary that acknowledged before its backup held
# the journal, tried on a branch: docs/fault-testing.md): a primary's whole host cut off while
# the backup's links slow down; and a host cut off, a DR restarted while the backup's link to
# the primary's agent is slow, then the DR cut off as the primary is killed.
CI_SEEDS = (2007, 2022)
