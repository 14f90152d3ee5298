"""What a failover member remembers about who was primary: <data_dir>/failover.json.

Roles are decided by the members, not by the configuration file (guide §3.3.2.3, §6.1.1):
the first failover member of a new mirror starts as primary, and from then on every member
that becomes primary raises the mirror's *term* and records itself as its primary.  A member
keeps the last (term, primary) it knew of, written durably before it acts on it:

- the member that becomes primary writes (term + 1, itself) before it commits anything;
- a member that connects to a primary, or hears of one through the arbiter, writes what
  that primary says.

At start-up two failover members compare what they remember (engine/member/failover_watch.py):
the higher term knows the later primary.  A member that remembers itself as primary at the
highest term may start as primary again only when its partner answers and agrees; if the
partner cannot be reached it cannot tell whether the partner became primary meanwhile, so
it waits (guide §6.1.1 "both down", procedure P2 in docs/failover.md).

`no_failover` is the operator's "Set No Failover" (guide §3.4, §6.1.3): kept here so that it
outlives a restart of the backup; a primary clears it when it starts.

`validated` false is the guide's ValidatedMember=0 (§6.3.1.1, docs/takeover.md "Promotion
with no primary"): set by an operator on a stopped member after a DR async was promoted
without it.  Such a member never becomes primary by itself: it takes its role from the first
primary it finds among all the members, and is validated again once it has.

`start_as_primary` is set by a DR async's promotion with no primary running (engine/member/
promotion.py): its next start is as primary, at `term`, once.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.storage.durable import fsync_dir

STATE_FILE = "failover.json"


class StateError(ValueError):
    """failover.json cannot be read as a failover state; the message says why."""


@dataclass(frozen=True)
class FailoverState:
    term: int = 0  # 0: this member has never known a primary (a new member)
    primary: str | None = None
    no_failover: bool = False
    validated: bool = True
    start_as_primary: bool = False

    @property
    def known(self) -> bool:
        return self.term > 0 and self.primary is not None

    def later_than(self, other: FailoverState) -> bool:
        return self.term > other.term

    def to_wire(self) -> dict:
        return {"term": self.term, "primary": self.primary}

    @classmethod
    def from_wire(cls, raw) -> FailoverState:
        """A peer's or a file's state; StateError names what is wrong."""
        if not isinstance(raw, dict):
            raise StateError("a failover state is a map")
        term, primary = raw.get("term", 0), raw.get("primary")
        if not isinstance(term, int) or isinstance(term, bool) or term < 0:
            raise StateError(f"term {term!r} is not a whole number >= 0")
        if primary is not None and (not isinstance(primary, str) or not primary):
            raise StateError(f"primary {primary!r} is not a member name")
        if term > 0 and primary is None:
            raise StateError(f"term {term} names no primary")
        return cls(
            term,
            primary.upper() if primary else None,
            bool(raw.get("no_failover")),
            validated=raw.get("validated", True) is not False,
            start_as_primary=raw.get("start_as_primary") is True,
        )


def load(data_dir: Path) -> FailoverState:
    """The state kept in data_dir; a new member's (term 0) when there is none."""
    path = Path(data_dir) / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return FailoverState()
    try:
        return FailoverState.from_wire(json.loads(text))
    except (ValueError, StateError) as exc:
        # a member that cannot tell who was primary must not guess: the operator decides
        raise StateError(f"{path}: {exc}") from None


def save(data_dir: Path, state: FailoverState) -> None:
    """Write the state durably (fsync of the file and its directory) before returning."""
    directory = Path(data_dir)
    tmp = directory / (STATE_FILE + ".tmp")
    data = asdict(state)
    for key, usual in (("validated", True), ("start_as_primary", False)):
        if data[key] == usual:
            del data[key]  # rare flags: written only while they are set
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / STATE_FILE)
    fsync_dir(directory)
