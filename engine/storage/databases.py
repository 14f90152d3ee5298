"""Mirrored databases of one member: the catalog kept in the data directory, the database
statuses of guide §5.1.1.3, and the control records that tell the other members about them.

Catalog (<data_dir>/databases.json, rewritten atomically and durably on every change): for each
mirrored database its name, `incarnation` (an id made when the primary created or added it, so
that a database recreated under the same name is told apart: the older copies become Obsolete),
`since` (the journal position from which the journal holds every change of it; a copy must be
at least that far to be activated), and this member's flags: activated, caught_up (being
dejournaled), mounted, obsolete, failover_db.  The first start seeds the catalog from the
configuration's databases (activated and caught up from the start of the journal).

Control records: creating, adding and removing a mirrored database on the primary journals one
SET record in the pseudo-database CONTROL_DB (a name no real database can have), global
"MirrorDB", subscripts (action, name), value the JSON of the catalog entry.  Every member reads
it from its journal stream; stores never see it.  What a member does with it is in
engine/member/dbops.py.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine import rules
from engine.storage.durable import fsync_dir
from engine.wire.protocol import ErrorCode, RequestError

if TYPE_CHECKING:
    from engine.member.membership import Membership

CONTROL_DB = "%MIRROR"
# in journal bytes, a sign that a chunk may hold a control record: a byte search is far cheaper
# than decoding every record
CONTROL_MARK = CONTROL_DB.encode()
CONTROL_GLOBAL = "MirrorDB"
CATALOG_FILE = "databases.json"


class Refused(RequestError):
    """An operation whose preconditions do not hold; `reason` says which one, and `rule`
    the reason code when a rule of engine/rules.py was broken."""

    def __init__(self, op: str, db: str | None, reason: str, rule: str | None = None):
        where = f" {db}" if db else ""
        extra = {"rule": rule} if rule else {}
        super().__init__(ErrorCode.REFUSED, f"{op}{where}: {reason}", op=op, reason=reason, **extra)

    @classmethod
    def broken(cls, op: str, exc: rules.RuleError) -> Refused:
        return cls(op, None, exc.message, rule=exc.reason)


def check_name(op: str, name) -> str:
    try:
        return rules.check_database_name(name)
    except rules.RuleError as exc:
        raise Refused.broken(op, exc) from None


@dataclass
class DbEntry:
    name: str
    incarnation: str
    since: list | None = None  # [file_seq, offset]; None: from the start of the journal
    activated: bool = True
    caught_up: bool = True
    mounted: bool = True
    obsolete: bool = False
    failover_db: bool = True
    created: bool = True  # created empty in the mirror (vs. an existing database added)
    needs_download: bool = False
    paused: bool = False  # its dejournaling paused by the operator
    rebuilt: bool = False  # set aside by a rebuild: becomes the primary's database of its name

    def wire(self) -> dict:
        return {
            "name": self.name,
            "incarnation": self.incarnation,
            "since": self.since,
            "created": self.created,
        }


def new_incarnation() -> str:
    return uuid.uuid4().hex[:16]


class Catalog:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / CATALOG_FILE
        self.entries: dict[str, DbEntry] = {}
        self._lock = threading.Lock()

    def load(self, seed: list[str], failover_db: bool) -> None:
        if self.path.exists():
            raw = json.loads(self.path.read_text())
            self.entries = {e["name"]: DbEntry(**e) for e in raw["databases"]}
            return
        for db in seed:
            # config databases share one incarnation on every member: the name itself
            self.entries[db] = DbEntry(db, f"config-{db}", failover_db=failover_db)
        self.save()

    def save(self) -> None:
        with self._lock:
            tmp = self.path.with_suffix(".tmp")
            data = {"databases": [asdict(e) for e in self.entries.values()]}
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            # the rename itself is durable too: a copy counts as present only once the
            # catalog says so on disk (engine/storage/durable.py)
            fsync_dir(self.path.parent)

    def get(self, name: str) -> DbEntry | None:
        return self.entries.get(name.upper())

    def wire(self) -> list[dict]:
        # a copy the primary is still downloading is announced once it is whole
        return [e.wire() for e in self.entries.values() if not e.needs_download]


def control_op(action: str, entry: DbEntry) -> tuple:
    """The writer op (SET, db, gname, subs, value) journaling `action` on `entry`."""
    return ("SET", CONTROL_DB, CONTROL_GLOBAL, (action, entry.name), json.dumps(entry.wire()))


def read_control(record) -> tuple[str, dict]:
    subs = record.subs
    return str(subs[0]), json.loads(record.value)


# -- statuses (guide §5.1.1.3) ----------------------------------------------------------


def db_status(membership: Membership, entry: DbEntry) -> str:
    if not entry.mounted:
        return "Database Dismounted"
    if entry.obsolete:
        return "Obsolete"
    if entry.name in membership.downloading:
        return "Downloading"
    if entry.needs_download:
        return "Needs Download"
    if membership.role == "primary":
        return "Normal"
    if entry.name in membership.catching_up:
        return "Catchup Running"
    if not entry.activated:
        return "Needs Activation"
    if not entry.caught_up:
        return "Needs Catchup"
    primary_dbs = membership.primary_db_info
    if primary_dbs is not None and entry.name not in primary_dbs:
        return "Orphaned"
    dj = membership.dejournal
    if dj is not None and (dj.stopped or dj.error or entry.name in dj.paused_databases()):
        return "Dejournaling Stopped"
    return "Dejournaling"


def missing_databases(membership: Membership) -> list[str] | None:
    """Mirrored databases of the primary this member lacks (backup and DR only, guide §5.1.1.3)."""
    if membership.role == "primary" or membership.member.is_reporting:
        return None
    if membership.primary_db_info is None:
        return []
    return sorted(n for n in membership.primary_db_info if n not in membership.catalog.entries)


# -- the dejournaler's set of databases ---------------------------------------------------


def attach(dj, db: str, store) -> None:
    dj.add_database(db, store)


def detach(dj, db: str) -> None:
    dj.remove_database(db)  # held records stay in the journal; a catch-up replays them
