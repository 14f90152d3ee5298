"""The checker of a randomized fault run (issue 14, deliverable 3): given the history the clients
recorded (tests/faults/history.py), the members' own logs, and what each member holds once the
faults are healed and the mirror has caught up, it says whether the mirror kept its two
promises:

1. **What the primary acknowledged survives.**  Every acknowledged write is on the primary, the
   backup and the DR async (the primary and the DR answer reads; the backup serves none, guide
   §3.1.1, so it is compared by digest, and a missing key is looked for in its journal).  A read
   answered by the only primary, of a key acknowledged before the read began, that finds nothing
   is a lost write too.  An "unknown" write is all there (same value on every member) or not at
   all; a refused one is nowhere.
2. **There is never more than one primary.**  The members log their becoming primary: "the
   mirror's primary is X (term N)", written by X itself when it records its new term, before
   its first commit (docs/takeover.md, "Who is primary: terms").  So the terms give the
   timeline of primaries: term N is X's from that line until a later term begins.  An
   acknowledged write must have been answered by the member that held the latest term at some
   moment between the write's start and its answer, and at the term the client saw when it
   connected (the clients' view, cross-checked against the logs).  A write answered by a primary
   after its successor's term had begun, a term claimed by two members, a write answered by a
   member whose log never made it primary at that term: each is a dual primary.  A replaced
   primary that still runs in trouble (it commits nothing, docs/failover.md) overlaps its
   successor in the timeline without accepting a write; that is shown, not counted.

Then the final state must be the SPEC's (guide §5.1.1.1; docs/takeover.md): one primary with
status Primary, its partner Backup and Active, the DR Connected and Caught up, both failover
members Arbiter Controlled and at the same term, the three members' contents identical.

`check(...)` returns a `Verdict`; `Verdict.report(...)` is the text a failing schedule leaves
behind (seed, schedule, role timeline, offending writes).  Pure functions over data: the unit
tests in test_random_schedules.py feed it fabricated histories that must fail.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine import rules
from tests.faults.history import ACK, READ, REFUSED, UNKNOWN, WRITE, Op, stamp

# log timestamps are truncated to the millisecond; the clients' clock is the same clock
EPS = 0.005
SHOWN = 40  # findings a report lists

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) (\w+) (\S+): (.*)$")
_PRIMARY_IS = re.compile(r"the mirror's primary is (\S+) \(term (\d+)\)")
_EVENTS = (  # (pattern, what the timeline says); the first match of a line wins
    (re.compile(r"becomes primary: (.*)"), "takes over: {0}"),
    (re.compile(r"member \S+ is primary \(term (\d+)\)"), "is primary (term {0})"),
    (re.compile(r"started as (\w+)"), "started as {0}"),
    (re.compile(r"^primary in trouble(.*)"), "in trouble{0}"),
    (re.compile(r"^primary out of trouble(.*)"), "out of trouble{0}"),
    (re.compile(r"handing over to backup (\S+)"), "hands over to {0}"),
    (re.compile(r"(restart this member to rejoin as backup)"), "stands down ({0})"),
    (re.compile(r"(inconsistent with the mirror.*)"), "{0}"),
    (re.compile(r"failover mode (.*?) \(arbiter"), "failover mode {0}"),
    (re.compile(r"Active status revoked: (.*)"), "backup Active revoked: {0}"),
    (re.compile(r"backup (\S+) is Active"), "backup {0} Active"),
    (re.compile(r"agent (confirmed it down|forced it down)"), "partner's agent {0}"),
    (re.compile(r"(its agent forced it down)"), "former primary: {0}"),
    (re.compile(r"member \S+ stopping"), "stopping"),
    (re.compile(r"(taking over failed.*)"), "{0}"),
)


@dataclass(frozen=True)
class Event:
    """One line of the role timeline: a member's log line or the harness's own act."""

    time: float
    source: str  # a member's name, or "harness"
    text: str

    def line(self) -> str:
        return f"{stamp(self.time)}  {self.source:<8} {self.text}"


@dataclass(frozen=True)
class Claim:
    """A member's log saying it became primary at a term."""

    term: int
    member: str
    time: float


def parse_time(text: str) -> float:
    """A log line's asctime ("2024-05-01 12:00:00,123", local time) as time.time() seconds."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def read_log(member: str, text: str) -> tuple[list[Claim], list[Event]]:
    """The claims of primaryship and the timeline events in one member's instance.log (every
    process it ran: the launcher appends)."""
    claims, events = [], []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        when, label, message = parse_time(m.group(1)), m.group(2), m.group(5)
        if label != member:
            continue
        if "superserver authentication mode" in message:
            events.append(Event(when, member, "process starts"))
            continue
        said = _PRIMARY_IS.search(message)
        if said is not None:
            who, term = said.group(1), int(said.group(2))
            if who == member:
                claims.append(Claim(term, member, when))
                events.append(Event(when, member, f"becomes primary (term {term})"))
            else:
                events.append(Event(when, member, f"knows {who} as primary (term {term})"))
            continue
        for pattern, text_ in _EVENTS:
            found = pattern.search(message)
            if found is not None:
                events.append(Event(when, member, text_.format(*found.groups())))
                break
    return claims, events


@dataclass
class Terms:
    """Who held which term from when, by the members' logs."""

    claims: dict[int, list[Claim]] = field(default_factory=dict)

    @classmethod
    def from_logs(cls, logs: dict[str, str]) -> tuple[Terms, list[Event]]:
        terms, events = cls(), []
        for member, text in logs.items():
            claims, evs = read_log(member, text)
            for c in claims:
                terms.claims.setdefault(c.term, []).append(c)
            events += evs
        return terms, sorted(events, key=lambda e: e.time)

    @classmethod
    def of(cls, claims: Iterable[Claim]) -> Terms:
        terms = cls()
        for c in claims:
            terms.claims.setdefault(c.term, []).append(c)
        return terms

    def owner(self, term: int) -> str | None:
        """The member that claimed `term`, None if nobody did or several did."""
        members = {c.member for c in self.claims.get(term, [])}
        return members.pop() if len(members) == 1 else None

    def begin(self, term: int) -> float | None:
        claims = self.claims.get(term)
        return min(c.time for c in claims) if claims else None

    def end(self, term: int) -> float:
        """When a later term began (infinity while none has)."""
        later = [self.begin(t) for t in self.claims if t > term]
        return min(later) if later else float("inf")

    def successor(self, term: int) -> Claim | None:
        later = [c for t in self.claims if t > term for c in self.claims[t]]
        return min(later, key=lambda c: c.time) if later else None

    def doubly_claimed(self) -> dict[int, list[Claim]]:
        return {t: cs for t, cs in self.claims.items() if len({c.member for c in cs}) > 1}

    def latest(self) -> int | None:
        return max(self.claims) if self.claims else None


def sole_primary_problem(op: Op, terms: Terms) -> str | None:
    """Why `op` was not answered by the only primary of its moment, None if it was: the member
    must be the client's primary, own the term the client saw, and that term must have been the
    latest at some moment between the operation's start and its answer."""
    if op.role != "primary":
        return f"the client saw {op.member} as {op.role}, not primary"
    if op.term is None:
        return f"{op.member} gave the client no term"
    owner = terms.owner(op.term)
    if owner is None and op.term in terms.claims:
        who = ", ".join(sorted({c.member for c in terms.claims[op.term]}))
        return f"term {op.term} was claimed by several members ({who})"
    if owner != op.member:
        said = f"the logs give it to {owner}" if owner else "no member's log claims it"
        return f"{op.member} answered at term {op.term}, but {said}"
    begin, end = terms.begin(op.term), terms.end(op.term)
    if op.end + EPS < begin:
        return f"answered before {op.member} became primary at term {op.term} ({stamp(begin)})"
    if op.start - EPS >= end:
        nxt = terms.successor(op.term)
        return (
            f"answered by {op.member} at term {op.term} although {nxt.member} had become "
            f"primary at term {nxt.term} at {stamp(nxt.time)}, before the write began"
        )
    return None


@dataclass
class Finding:
    kind: str  # lost, dual_primary, half_applied, phantom, final_state
    text: str
    op: Op | None = None

    def line(self) -> str:
        return f"[{self.kind}] {self.text}" + (f"\n      {self.op.describe()}" if self.op else "")


@dataclass
class Verdict:
    findings: list[Finding]
    acked_checked: int  # this history's acknowledged writes
    rechecked: int  # earlier ones (earlier schedules on the same mirror), checked again
    unknown: int
    refused: int
    timeline: list[Event]
    terms: Terms

    @property
    def ok(self) -> bool:
        return not self.findings

    def count(self, kind: str) -> int:
        """Findings of a kind ("lost": see `lost`, which counts each write once)."""
        return sum(1 for f in self.findings if f.kind == kind)

    @property
    def lost(self) -> int:
        """Acknowledged writes lost (each key once), and members whose content differs
        where the lost writes could not be named."""
        lost = [f for f in self.findings if f.kind == "lost"]
        return len({f.op.key for f in lost if f.op}) + sum(1 for f in lost if f.op is None)

    @property
    def dual_primary(self) -> int:
        return self.count("dual_primary")

    def summary(self) -> str:
        kinds = sorted({f.kind for f in self.findings})
        counts = {k: self.lost if k == "lost" else self.count(k) for k in kinds}
        found = ", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing wrong"
        again = f" (and {self.rechecked} earlier ones again)" if self.rechecked else ""
        return (
            f"{self.acked_checked} acknowledged writes checked{again}, {self.unknown} unknown, "
            f"{self.refused} refused: {found}"
        )

    def report(
        self,
        seed: int | None,
        schedule: str,
        *,
        replay: str = "",
        final: dict | None = None,
        history: list[Op] | None = None,
    ) -> str:
        """The text a failing schedule leaves behind: the seed (and how to replay it), the
        schedule, what was found, the offending writes, the role timeline, the final state."""
        out = [f"fault schedule, seed {seed}: {'PASSED' if self.ok else 'FAILED'}"]
        if replay:
            out.append(f"replay: {replay}")
        out += ["", "schedule:", *(f"  {line}" for line in schedule.splitlines())]
        out += [
            "",
            f"summary: {self.summary()}",
            "",
            "findings, each with its offending operation:",
        ]
        out += [f"  {f.line()}" for f in self.findings[:SHOWN]] or ["  none"]
        if len(self.findings) > SHOWN:
            more = len(self.findings) - SHOWN
            out.append(f"  ... and {more} more (every operation is in the history)")
        offending = [f.op for f in self.findings if f.op is not None]
        out += ["", "terms (from the members' logs):"]
        for term in sorted(self.terms.claims):
            claims = ", ".join(f"{c.member} at {stamp(c.time)}" for c in self.terms.claims[term])
            out.append(f"  term {term}: {claims}")
        out += ["", "role timeline (members' logs and the harness's acts):"]
        out += [f"  {e.line()}" for e in self.timeline]
        if final is not None:
            out += ["", "final statuses:"]
            for member, st in sorted(final.items()):
                out.append(f"  {member}: {_brief_status(st)}")
        if history:
            out += ["", "operations near the findings:"]
            out += [f"  {op.describe()}" for op in _near(history, offending)]
        return "\n".join(out) + "\n"


def _brief_status(st) -> str:
    if not isinstance(st, dict):
        return str(st)
    keys = ("status", "journal_transfer", "failover_mode", "arbiter_connection", "term")
    brief = {k: st[k] for k in keys if k in st}
    for row in st.get("members", []) or []:
        brief[f"sees {row.get('member')}"] = f"{row.get('status')} / {row.get('journal_transfer')}"
    if st.get("waiting_reason"):
        brief["waiting"] = st["waiting_reason"]
    return ", ".join(f"{k}: {v}" for k, v in brief.items())


def _near(history: list[Op], offending: list[Op], span: float = 0.5, cap: int = 60) -> list[Op]:
    """The operations around the first offending ones."""
    if not offending:
        return []
    first = sorted(offending, key=lambda op: op.start)[:5]
    windows = [(op.start - span, op.end + span) for op in first]
    near = [op for op in history if any(lo <= op.start <= hi for lo, hi in windows)]
    return near[:cap]


# -- the final state -----------------------------------------------------------------------


def final_state_problems(
    statuses: dict[str, dict | None], failover: Iterable[str] = ("A", "B"), dr: Iterable[str] = ()
) -> list[str]:
    """What keeps the final state from being the SPEC's ([] when it is): exactly one failover
    member Primary (not In Trouble), the other Backup and Active in the primary's view, every DR
    Connected and Caught up there, both failover members Arbiter Controlled, both arbiter
    connections up, one term."""
    failover, dr = list(failover), list(dr)
    problems = []
    missing = [m for m in [*failover, *dr] if not isinstance(statuses.get(m), dict)]
    if missing:
        return [f"{', '.join(missing)} not answering"]
    primaries = [m for m in failover if statuses[m].get("status") in rules.PRIMARY_STATUSES]
    if len(primaries) != 1:
        return [f"{len(primaries)} failover members say they are primary: {primaries}"]
    (primary,) = primaries
    if statuses[primary]["status"] != rules.PRIMARY:
        problems.append(f"{primary} is {statuses[primary]['status']}")
    rows = {r.get("member"): r for r in statuses[primary].get("members", []) or []}
    for backup in [m for m in failover if m != primary]:
        row = rows.get(backup, {})
        if statuses[backup].get("status") != rules.BACKUP:
            problems.append(f"{backup} is {statuses[backup].get('status')}, not Backup")
        if row.get("journal_transfer") != rules.ACTIVE:
            problems.append(f"{primary} sees {backup} {row.get('journal_transfer')}, not Active")
    for member in dr:
        row = rows.get(member, {})
        if row.get("status") != rules.CONNECTED or row.get("journal_transfer") != rules.CAUGHT_UP:
            problems.append(
                f"{primary} sees {member} {row.get('status')} / {row.get('journal_transfer')}"
            )
    for member in failover:
        st = statuses[member]
        if st.get("failover_mode") != rules.ARBITER_CONTROLLED:
            problems.append(f"{member} is {st.get('failover_mode')}")
        if st.get("arbiter_connection") != rules.ARBITER_BOTH:
            problems.append(f"{member}: {st.get('arbiter_connection')}")
    terms = {statuses[m].get("term") for m in failover}
    if len(terms) != 1:
        problems.append(f"the failover members disagree on the term: {sorted(map(str, terms))}")
    return problems


# -- the check -------------------------------------------------------------------------------


def check(
    history: list[Op],
    logs: dict[str, str],
    contents: dict[str, dict[str, object]],
    *,
    digests: dict[str, object] | None = None,
    journals: dict[str, bytes] | None = None,
    final: dict[str, dict | None] | None = None,
    failover: Iterable[str] = ("A", "B"),
    dr: Iterable[str] = (),
    earlier: Iterable[Op] = (),
    harness_events: Iterable[Event] = (),
) -> Verdict:
    """Check one run.

    history     this schedule's operations
    logs        {member: instance.log text}
    contents    {member: {key: value}} of the members that answer reads (primary, DR): the
                workload's global after the mirror has caught up
    digests     {member: digest of the database}: members that serve no reads (the backup)
                must match the primary's
    journals    {member: journal bytes}: where a key missing from a digest-mismatched member
                is looked for, to name the lost writes
    final       {member: status}: the final state (final_state_problems)
    earlier     acknowledged writes of earlier schedules on the same mirror: still present
    """
    terms, timeline = Terms.from_logs(logs)
    timeline = sorted([*timeline, *harness_events], key=lambda e: e.time)
    findings: list[Finding] = []

    # -- never two primaries ------------------------------------------------------------------
    for term, claims in sorted(terms.doubly_claimed().items()):
        who = ", ".join(f"{c.member} at {stamp(c.time)}" for c in claims)
        findings.append(Finding("dual_primary", f"term {term} claimed by several members: {who}"))
    for op in history:
        if op.kind == WRITE and op.outcome == ACK:
            why = sole_primary_problem(op, terms)
            if why is not None:
                findings.append(Finding("dual_primary", why, op))

    # -- nothing acknowledged lost, nothing half-applied ----------------------------------------
    # a member the final state shows not caught up is "behind": what it lacks is reported once,
    # as a failure of the final state, not as lost writes (the primary still has them)
    behind = _behind(final, failover, dr) if final is not None else {}
    lacking: dict[str, list[Op]] = {}
    acked = [op for op in [*earlier, *history] if op.kind == WRITE and op.outcome == ACK]
    readers = list(contents)
    for op in acked:
        seen = {m: contents[m].get(op.key, _ABSENT) for m in readers}
        absent = [m for m, v in seen.items() if v is _ABSENT and m not in behind]
        wrong = {m: v for m, v in seen.items() if v is not _ABSENT and v != op.key}
        for m in readers:
            if m in behind and seen[m] is _ABSENT:
                lacking.setdefault(m, []).append(op)
        if absent or wrong:
            said = [f"absent on {', '.join(absent)}"] if absent else []
            said += [f"{m} has {v!r}" for m, v in wrong.items()]
            findings.append(Finding("lost", f"acknowledged, {'; '.join(said)}", op))
    if digests:
        reference = next((digests[m] for m in readers if m in digests), None)
        for member, digest in digests.items():
            if member in readers or reference is None or digest == reference:
                continue
            journal = (journals or {}).get(member)
            missing = [op for op in acked if journal is not None and op.key.encode() not in journal]
            if member in behind:
                lacking.setdefault(member, []).extend(missing)
                if not missing:
                    findings.append(Finding("behind", f"{member} ({behind[member]}) differs"))
                continue
            for op in missing:
                findings.append(Finding("lost", f"acknowledged, not in {member}'s journal", op))
            if not missing:
                findings.append(
                    Finding("lost", f"{member}'s content differs from {readers[0]}'s (digest)")
                )
    for member, ops in sorted(lacking.items()):
        first = min(ops, key=lambda op: op.start)
        findings.append(
            Finding(
                "behind",
                f"{member} never caught up ({behind[member]}): {len(ops)} acknowledged writes "
                f"not on it, the first",
                first,
            )
        )
    for op in history:
        if op.kind != WRITE or op.outcome == ACK:
            continue
        seen = {m: contents[m].get(op.key, _ABSENT) for m in readers if m not in behind}
        present = [m for m, v in seen.items() if v is not _ABSENT]
        if op.outcome == REFUSED and present:
            findings.append(Finding("phantom", f"refused, yet present on {present}", op))
        elif present and (len(present) != len(seen) or any(seen[m] != op.key for m in present)):
            findings.append(Finding("half_applied", f"unknown write, on members as {seen}", op))

    # -- reads: the only primary never answers "absent" for an acknowledged write -------------
    acked_at = {op.key: op.end for op in acked}
    for op in history:
        if op.kind != READ or op.outcome != ACK or op.value is not None:
            continue
        done = acked_at.get(op.key)
        if done is not None and done < op.start and sole_primary_problem(op, terms) is None:
            findings.append(
                Finding("lost", "read back as absent from the primary after its ack", op)
            )

    # -- the final state ------------------------------------------------------------------------
    if final is not None:
        for problem in final_state_problems(final, failover, dr):
            findings.append(Finding("final_state", problem))
        latest = terms.latest()
        primary_terms = {
            st.get("term")
            for st in final.values()
            if isinstance(st, dict) and st.get("status") in rules.PRIMARY_STATUSES
        }
        if latest is not None and primary_terms and primary_terms != {latest}:
            findings.append(
                Finding("final_state", f"the primary is at term {primary_terms}, logs say {latest}")
            )

    writes = [op for op in history if op.kind == WRITE]
    return Verdict(
        findings=findings,
        acked_checked=sum(1 for op in writes if op.outcome == ACK),
        rechecked=len(acked) - sum(1 for op in writes if op.outcome == ACK),
        unknown=sum(1 for op in writes if op.outcome == UNKNOWN),
        refused=sum(1 for op in writes if op.outcome == REFUSED),
        timeline=timeline,
        terms=terms,
    )


_ABSENT = object()


def _behind(final: dict, failover: Iterable[str], dr: Iterable[str]) -> dict[str, str]:
    """{member: how it stands} of the members the primary does not see caught up: a backup
    that is not Active, a DR that is not Connected and Caught up.  {} without one primary."""
    failover = list(failover)
    said = [m for m in failover if (final.get(m) or {}).get("status") in rules.PRIMARY_STATUSES]
    if len(said) != 1:
        return {}
    rows = {r.get("member"): r for r in final[said[0]].get("members", []) or []}
    out = {}
    for member in [m for m in failover if m != said[0]]:
        row = rows.get(member, {})
        if row.get("journal_transfer") != rules.ACTIVE:
            out[member] = f"{row.get('status')} / {row.get('journal_transfer')}"
    for member in dr:
        row = rows.get(member, {})
        if row.get("status") != rules.CONNECTED or row.get("journal_transfer") != rules.CAUGHT_UP:
            out[member] = f"{row.get('status')} / {row.get('journal_transfer')}"
    return out


def failover_times(history: list[Op], terms: Terms, faults: Iterable[Event]) -> list[float]:
    """Seconds from a fault to the first write acknowledged by the primary it brought: for
    each term that began after a fault of this run, from the latest fault before the term
    began to the first acknowledged write at that term."""
    faults = sorted(faults, key=lambda e: e.time)
    if not faults:
        return []
    out = []
    for term in sorted(terms.claims):
        begin = terms.begin(term)
        before = [f for f in faults if f.time <= begin]
        if not before:
            continue
        acks = [
            op.end for op in history if op.kind == WRITE and op.outcome == ACK and op.term == term
        ]
        if acks:
            out.append(min(acks) - before[-1].time)
    return out
