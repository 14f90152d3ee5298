"""A mirror's two promises under faults mixed the way Jepsen mixes them (issue 14): what the
primary acknowledged survives, and there is never more than one primary.

First the checker (tests/faults/checker.py) is shown to fail: fabricated histories with a lost
write, an overlap of primaries, a term claimed twice and the other wrongs it looks for.  Then
the schedules (tests/faults/schedule.py) are shown to be reproducible from their seeds and to
cover every fault and every row of Table 3-1.  Last, the short fixed set of schedules runs on a
real mirror (tests/faults/harness.py: failover members A and B, a DR async C, an arbiter and two
agents, every link between them through our proxy) under a workload of concurrent clients,
and each must end with nothing lost and no second primary.  The long randomized run is
bench/faults.py (docs/fault-testing.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine import rules
from tests.faults.checker import Claim, Event, Terms, check, failover_times, read_log
from tests.faults.harness import FaultMirror, run_schedule
from tests.faults.history import ACK, READ, REFUSED, UNKNOWN, WRITE, Op, classify
from tests.faults.mirror import Arbiter
from tests.faults.schedule import (
    CI_SCHEDULES,
    CI_SEEDS,
    LINK_FAULTS,
    MEMBER_FAULTS,
    Schedule,
    generate,
)

T0 = 1_900_000_000.0  # a fabricated history's clock


# -- fabricated histories -----------------------------------------------------------------------


def log_line(t: float, member: str, message: str, logger: str = "engine.member.membership") -> str:
    """A line as a member writes it (engine/__main__.py's format), at time.time() `t`."""
    asctime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{int(t * 1000) % 1000:03d}"
    return f"{asctime} {member} INFO {logger}: {message}"


def becomes_primary(t: float, member: str, term: int) -> str:
    return log_line(t, member, f"the mirror's primary is {member} (term {term})")


def write(
    client: int, key: str, start: float, end: float, member: str, term: int, outcome=ACK
) -> Op:
    return Op(client, WRITE, key, start + T0, end + T0, outcome, member, "primary", term)


def final_whole(primary: str = "A", term: int = 1) -> dict:
    """Final statuses as the SPEC wants them: primary, Active backup, caught-up DR."""
    backup = "B" if primary == "A" else "A"
    common = {
        "failover_mode": rules.ARBITER_CONTROLLED,
        "arbiter_connection": rules.ARBITER_BOTH,
        "term": term,
    }
    rows = [
        {"member": backup, "status": rules.BACKUP, "journal_transfer": rules.ACTIVE},
        {"member": "C", "status": rules.CONNECTED, "journal_transfer": rules.CAUGHT_UP},
    ]
    return {
        primary: {"status": rules.PRIMARY, "members": rows, **common},
        backup: {"status": rules.BACKUP, **common},
        "C": {"status": rules.CONNECTED},
    }


# A took writes at term 1; at 10 s the arbiter's report made B primary at term 2 (row 7)
LOGS = {
    "A": becomes_primary(T0, "A", 1) + "\n",
    "B": "\n".join(
        [
            log_line(T0, "B", "the mirror's primary is A (term 1)"),
            becomes_primary(T0 + 10, "B", 2),
            log_line(T0 + 10.02, "B", "member B is primary (term 2) after 0.020 s"),
        ]
    ),
}


def clean_history() -> list[Op]:
    return [
        write(0, "k-a", 1.0, 1.01, "A", 1),
        write(1, "k-b", 9.99, 10.3, "A", 1),  # in flight across the takeover: fine
        write(0, "k-c", 11.0, 11.01, "B", 2),
        write(1, "k-u", 9.5, 12.5, "A", 1, outcome=UNKNOWN),  # lost answer, never applied
    ]


def everywhere(*keys: str) -> dict[str, dict]:
    return {m: {k: k for k in keys} for m in ("B", "C")}


def test_the_checker_passes_a_history_where_every_acknowledged_write_is_everywhere():
    verdict = check(
        clean_history(),
        LOGS,
        everywhere("k-a", "k-b", "k-c"),
        final=final_whole("B", 2),
        dr=("C",),
    )
    assert verdict.ok, verdict.report(1, "fabricated")
    assert verdict.acked_checked == 3 and verdict.unknown == 1


def test_the_checker_catches_an_acknowledged_write_missing_from_the_new_primary():
    contents = everywhere("k-a", "k-c")  # k-b, acknowledged by A, never reached B
    verdict = check(clean_history(), LOGS, contents)
    assert not verdict.ok
    assert verdict.lost == 1
    assert {f.op.key for f in verdict.findings} == {"k-b"}


def test_the_checker_catches_an_acknowledged_write_the_dr_lacks():
    contents = everywhere("k-a", "k-b", "k-c")
    del contents["C"]["k-a"]
    verdict = check(clean_history(), LOGS, contents)
    assert verdict.lost == 1 and "absent on C" in verdict.findings[0].text


def test_the_checker_catches_an_acknowledged_write_the_backup_lacks_by_its_digest_and_journal():
    verdict = check(
        clean_history(),
        LOGS,
        everywhere("k-a", "k-b", "k-c"),
        digests={"B": "d1", "A": "d2"},
        journals={"A": b"...k-a...k-c..."},
    )
    assert verdict.lost == 1
    assert verdict.findings[0].op.key == "k-b" and "A's journal" in verdict.findings[0].text


def test_the_checker_catches_a_write_acknowledged_by_a_primary_already_replaced():
    # A, replaced by B at 10 s, still acknowledges a write that began at 11 s: two primaries
    history = [*clean_history(), write(2, "k-late", 11.0, 11.05, "A", 1)]
    verdict = check(history, LOGS, everywhere("k-a", "k-b", "k-c", "k-late"))
    assert verdict.dual_primary == 1 and verdict.lost == 0
    (finding,) = verdict.findings
    assert finding.op.key == "k-late"
    assert "although B had become primary at term 2" in finding.text


def test_the_checker_catches_a_term_claimed_by_two_members():
    logs = {**LOGS, "A": LOGS["A"] + becomes_primary(T0 + 10.5, "A", 2) + "\n"}
    verdict = check(clean_history(), logs, everywhere("k-a", "k-b", "k-c"))
    assert verdict.dual_primary >= 1
    assert "term 2 claimed by several members" in verdict.findings[0].text


def test_the_checker_catches_a_write_answered_by_a_member_the_logs_never_made_primary():
    history = [*clean_history(), write(2, "k-x", 11.0, 11.01, "A", 2)]
    verdict = check(history, LOGS, everywhere("k-a", "k-b", "k-c", "k-x"))
    assert verdict.dual_primary == 1
    assert "the logs give it to B" in verdict.findings[0].text


def test_the_checker_catches_a_write_the_client_saw_answered_by_a_backup():
    op = write(2, "k-y", 11.0, 11.01, "B", 2)
    op.role = "backup"
    verdict = check([*clean_history(), op], LOGS, everywhere("k-a", "k-b", "k-c", "k-y"))
    assert verdict.dual_primary == 1 and "as backup, not primary" in verdict.findings[0].text


def test_a_replaced_primary_still_running_in_trouble_is_shown_but_not_counted():
    logs = {
        **LOGS,
        "A": "\n".join(
            [
                becomes_primary(T0, "A", 1),
                log_line(T0 + 9.6, "A", "primary in trouble with no timeout: cut off"),
                log_line(
                    T0 + 12,
                    "A",
                    "member B is primary at term 2 (this member's term 1): "
                    "stopping; restart this member to rejoin as backup",
                ),
            ]
        ),
    }
    verdict = check(clean_history(), logs, everywhere("k-a", "k-b", "k-c"))
    assert verdict.ok
    said = [e.text for e in verdict.timeline if e.source == "A"]
    assert said == [
        "becomes primary (term 1)",
        "in trouble with no timeout: cut off",
        "stands down (restart this member to rejoin as backup)",
    ]


def test_an_unknown_write_may_be_there_or_not_but_never_half_applied():
    history = clean_history()
    assert check(history, LOGS, everywhere("k-a", "k-b", "k-c")).ok  # absent everywhere
    assert check(history, LOGS, everywhere("k-a", "k-b", "k-c", "k-u")).ok  # present everywhere
    half = everywhere("k-a", "k-b", "k-c", "k-u")
    del half["C"]["k-u"]
    verdict = check(history, LOGS, half)
    assert [f.kind for f in verdict.findings] == ["half_applied"]


def test_the_checker_catches_a_refused_write_that_was_applied():
    history = [*clean_history(), write(2, "k-r", 11.0, 11.01, "B", 2, outcome=REFUSED)]
    verdict = check(history, LOGS, everywhere("k-a", "k-b", "k-c", "k-r"))
    assert [f.kind for f in verdict.findings] == ["phantom"]


def test_the_checker_catches_a_read_of_an_acknowledged_write_that_finds_nothing():
    read = Op(1, READ, "k-a", T0 + 12, T0 + 12.01, ACK, "B", "primary", 2, value=None)
    verdict = check([*clean_history(), read], LOGS, everywhere("k-a", "k-b", "k-c"))
    assert verdict.lost == 1 and "read back as absent" in verdict.findings[0].text


def test_a_stale_read_from_a_replaced_primary_is_not_counted_as_a_lost_write():
    read = Op(1, READ, "k-c", T0 + 12, T0 + 12.01, ACK, "A", "primary", 1, value=None)
    assert check([*clean_history(), read], LOGS, everywhere("k-a", "k-b", "k-c")).ok


def test_the_checker_reports_a_final_state_that_is_not_the_specs():
    final = final_whole("B", 2)
    final["B"]["members"][0]["journal_transfer"] = "3 seconds behind"
    final["A"]["failover_mode"] = rules.AGENT_CONTROLLED
    verdict = check(clean_history(), LOGS, everywhere("k-a", "k-b", "k-c"), final=final, dr=("C",))
    assert sorted(f.text for f in verdict.findings if f.kind == "final_state") == [
        "A is Agent Controlled",
        "B sees A 3 seconds behind, not Active",
    ]


def test_a_member_that_never_caught_up_is_reported_once_as_behind_not_as_lost_writes():
    final = final_whole("B", 2)
    final["B"]["members"][1]["journal_transfer"] = "2 minutes 3 seconds behind"
    contents = everywhere("k-a", "k-b", "k-c")
    del contents["C"]["k-b"], contents["C"]["k-c"]
    verdict = check(clean_history(), LOGS, contents, final=final, dr=("C",))
    assert verdict.lost == 0
    assert [f.kind for f in verdict.findings] == ["behind", "final_state"]
    assert "C never caught up (Connected / 2 minutes 3 seconds behind): 2 acknowledged" in (
        verdict.findings[0].text
    )


def test_a_failing_report_names_the_seed_the_schedule_the_timeline_and_the_offending_writes():
    history = [*clean_history(), write(2, "k-late", 11.0, 11.05, "A", 1)]
    contents = everywhere("k-a", "k-c", "k-late")
    harness = [Event(T0 + 9.0, "harness", "blackhole primary links: A->B, B->A, A->arbiter")]
    verdict = check(history, LOGS, contents, harness_events=harness)
    report = verdict.report(
        4242, generate(4242).describe(), replay=".venv/bin/python bench/faults.py --seed 4242"
    )
    assert "seed 4242: FAILED" in report
    assert "bench/faults.py --seed 4242" in report
    assert generate(4242).steps[0].describe() in report
    assert "term 2: B at" in report
    assert "harness  blackhole primary links" in report
    assert "B        becomes primary (term 2)" in report
    assert "[lost] acknowledged, absent on B" in report and "[dual_primary]" in report
    assert "client 2 write k-late" in report and "client 1 write k-b" in report


def test_the_role_timeline_is_read_from_the_members_own_log_lines():
    text = "\n".join(
        [
            log_line(T0, "B", "superserver authentication mode auto; 0 application credentials"),
            log_line(T0 + 1, "B", "member B becomes primary: the arbiter lost the primary too"),
            becomes_primary(T0 + 1.02, "B", 7),
            "Traceback (most recent call last):",  # lines of no record are skipped
            log_line(T0 + 1.03, "A", "the mirror's primary is A (term 9)"),  # another label
        ]
    )
    claims, events = read_log("B", text)
    assert claims == [Claim(7, "B", pytest.approx(T0 + 1.02, abs=0.001))]
    assert [e.text for e in events] == [
        "process starts",
        "takes over: the arbiter lost the primary too",
        "becomes primary (term 7)",
    ]


def test_failover_time_runs_from_the_fault_to_the_first_write_at_the_new_term():
    terms = Terms.of([Claim(2, "B", T0 + 10)])
    faults = [Event(T0 + 5, "harness", "early"), Event(T0 + 8.5, "harness", "isolate A")]
    times = failover_times(clean_history(), terms, faults)
    assert times == [pytest.approx(11.01 - 8.5)]


def test_a_write_whose_answer_is_lost_is_unknown_and_one_never_sent_is_refused():
    from engine.client.app import ConnectionLost, NotPrimary, OutcomeUnknown, Unavailable

    assert classify(OutcomeUnknown("answer lost")) == UNKNOWN
    assert classify(Unavailable("the primary stopped: whether the mirror has it")) == UNKNOWN
    assert classify(TimeoutError()) == UNKNOWN
    assert classify(NotPrimary("member B is not the primary")) == REFUSED
    assert classify(ConnectionLost("request failed before it was sent")) == REFUSED


# -- schedules --------------------------------------------------------------------------------


def test_a_seed_gives_the_same_schedule_every_time_and_it_prints_and_replays():
    first, again = generate(20240514), generate(20240514)
    assert first == again and first.describe() == again.describe()
    assert Schedule.from_json(first.to_json()) == first
    assert generate(20240515) != first
    assert "step 1:" in first.describe() and "heal everything" in first.describe()


def test_schedules_mix_every_fault_and_every_row_of_table_3_1():
    kinds, targets, names = set(), set(), set()
    for seed in range(400):
        for step in generate(seed).steps:
            names.add(step.name)
            for fault in step.faults:
                kinds.add(fault.kind)
                targets.add(fault.target)
    assert set(MEMBER_FAULTS) | set(LINK_FAULTS) | {"agent", "arbiter", "arbiter-pause"} <= kinds
    assert {"primary", "backup", "dr", "all", "primary-host", "agent-of-primary"} <= targets
    assert {f"row {n}" for n in range(2, 9)} <= {n[:5] for n in names}
    assert {"single", "two at once", "outage primary and backup"} <= names


# -- on a real mirror: the short fixed set -------------------------------------------------------


class Mirrors:
    """One mirror for the module (starting one costs seconds); a schedule that failed leaves
    it to be replaced, so the next starts whole."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.made = 0
        self.mirror: FaultMirror | None = None
        self.arbiter: Arbiter | None = None
        self.acked: list[Op] = []  # every acknowledged write so far, checked again each time

    def get(self) -> FaultMirror:
        if self.mirror is None:
            self.made += 1
            where = self.directory / f"mirror{self.made}"
            where.mkdir()
            self.arbiter = Arbiter(where)
            self.arbiter.start()
            self.mirror = FaultMirror(where / "mirror", self.arbiter)
            self.mirror.start()
            self.acked = []
        return self.mirror

    def discard(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
            self.arbiter.stop()
        self.mirror = self.arbiter = None

    def after(self, run) -> None:
        if run.ok:
            self.acked += [o for o in run.history if o.kind == WRITE and o.outcome == ACK]
        else:
            self.discard()


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    made = Mirrors(tmp_path_factory.mktemp("faults"))
    yield made
    made.discard()


def play(mirrors: Mirrors, schedule: Schedule, report_dir: Path):
    mirror = mirrors.get()
    try:
        run = run_schedule(
            mirror,
            schedule,
            label=schedule.name or f"s{schedule.seed}",
            report_dir=report_dir,
            earlier=mirrors.acked,
        )
    except BaseException:
        mirrors.discard()  # the next test starts on a fresh mirror
        raise
    mirrors.after(run)
    return run


@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    "sentence", list(CI_SCHEDULES), ids=[s.name for s in CI_SCHEDULES.values()]
)
def test_no_acknowledged_write_is_lost_and_no_second_primary_answers_when(
    sentence, mirrors, tmp_path
):
    run = play(mirrors, CI_SCHEDULES[sentence], tmp_path)
    print(f"\n{sentence}: {run.verdict.summary()}; failover {run.failover_s}")
    assert run.ok, f"{sentence}: see {run.report}\n{run.report_text}"
    assert run.verdict.acked_checked > 0


@pytest.mark.timeout(420)
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_no_acknowledged_write_is_lost_and_no_second_primary_answers_in_random_schedule(
    seed, mirrors, tmp_path
):
    run = play(mirrors, generate(seed), tmp_path)
    print(f"\n{generate(seed).describe()}\n{run.verdict.summary()}; failover {run.failover_s}")
    assert run.ok, f"seed {seed}: see {run.report}\n{run.report_text}"
    assert run.verdict.acked_checked > 0
