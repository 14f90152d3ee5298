"""Dejournaling: applying received journal records to the member's databases.

Besides apply: `paused` (databases whose records are held back), `held_records()`, `drain()`,
`wait_idle()`, and the counters `applied`, `filtered`, `unknown`.

`Dejournaler.apply(records)` groups a batch by database (keeping journal order inside each
group) and applies each group to its Store in one transaction (Store.apply: idempotent, records
the applied position).  With parallel=True the groups of different databases run at the same
time on up to `workers` threads (max 16, guide §4.16).  Every update of one global of one database
is applied by the single job handling that database, in journal order, so a global's updates
are never reordered; different databases may be at slightly different points.  Globals of one
database are not split across jobs: they share the database's single LMDB writer, so splitting
them would only add lock hand-offs under the GIL.

Operator controls: pause_database/resume_database (records for a paused database are held and
applied, in order, on resume), stop/start (everything is held while stopped; receiving goes on
elsewhere), and a record filter, a callable(record) -> bool (False skips the record) or its
"module:function" name (guide §5.9.3: reporting asyncs).  Skipped records still advance the
database's applied position, so they are not offered again.

"""

from __future__ import annotations

import importlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)
MAX_WORKERS = 16


def load_filter(spec: str):
    """Load a dejournal filter from "module:function" (ValueError with the reason if not)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"dejournal filter must be 'module:function', got {spec!r}")
    mod_name, fn_name = spec.split(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load dejournal filter {spec!r}: {exc}") from None
    if not callable(fn):
        raise ValueError(f"dejournal filter {spec!r} is not callable")
    return fn


class Dejournaler:
    def __init__(self, stores: dict, parallel: bool = False, workers: int = 4, record_filter=None):
        if not 1 <= int(workers) <= MAX_WORKERS:
            raise ValueError(f"workers must be 1-{MAX_WORKERS}, got {workers}")
        self.stores = stores
        self.parallel = bool(parallel)
        self.workers = int(workers)
        if isinstance(record_filter, str):
            record_filter = load_filter(record_filter)
        self.record_filter = record_filter
        self.paused: set[str] = set()
        self.stopped = False
        self.last_applied: dict[str, tuple] = {}  # db -> (JournalPosition, timestamp)
        self.applied = 0
        self.filtered = 0
        self.unknown = 0  # records for databases this member does not have
        self._held: dict[str, list] = {}
        self._state = threading.Lock()
        self._db_locks = {db: threading.Lock() for db in stores}
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dejournal")
        self._drainers: list[threading.Thread] = []

    # -- applying ------

    def apply(self, records) -> int:
        """Apply a batch of records (journal order); return how many changed a database."""
        groups: dict[str, list] = {}
        for r in records:
            g = groups.get(r.database)
            if g is None:
                g = groups[r.database] = []
            g.append(r)
        work = []
        with self._state:
            for db, recs in groups.items():
                if db not in self.stores:
                    self.unknown += len(recs)
                elif self.stopped or db in self.paused:
                    self._held.setdefault(db, []).extend(recs)
                else:
                    work.append((db, recs))
        if len(work) > 1 and self.parallel:
            return sum(f.result() for f in [self._pool.submit(self._apply_db, *w) for w in work])
        return sum(self._apply_db(db, recs) for db, recs in work)

    def _apply_db(self, db: str, recs: list) -> int:
        with self._db_locks[db]:
            with self._state:
                held = list(self._held.get(db, ()))
            if held:  # held back while paused/stopped: they go first
                recs = held + recs
            if not recs:
                return 0
            last = recs[-1]
            keep = recs
            if self.record_filter is not None:
                keep = [r for r in recs if self.record_filter(r)]
            n = self.stores[db].apply(keep, upto=last.position)
            # Only now drop what was held: if the filter or the store failed, it is kept.
            with self._state:
                if held:
                    rest = self._held[db][len(held) :]
                    if rest:
                        self._held[db] = rest
                    else:
                        del self._held[db]
                self.applied += n
                self.filtered += len(recs) - len(keep)
            self.last_applied[db] = (last.position, last.timestamp)
            return n

    def held_records(self, db: str | None = None) -> int:
        with self._state:
            if db is not None:
                return len(self._held.get(db, ()))
            return sum(len(v) for v in self._held.values())

    def drain(self, db: str | None = None) -> int:
        """Apply records held for db (or every runnable database) now, in this thread."""
        with self._state:
            dbs = [db] if db is not None else list(self._held)
            dbs = [d for d in dbs if not self.stopped and d not in self.paused]
        return sum(self._apply_db(d, []) for d in dbs)

    def _drain_in_background(self, db: str | None = None) -> None:
        t = threading.Thread(target=self._drain_logged, args=(db,), name="dejournal-drain")
        t.daemon = True
        self._drainers = [d for d in self._drainers if d.is_alive()] + [t]
        t.start()

    def _drain_logged(self, db):
        try:
            self.drain(db)
        except Exception:
            log.exception("applying held journal records failed")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for background drains started by resume/start; True when none is left."""
        for t in list(self._drainers):
            t.join(timeout)
        return not any(t.is_alive() for t in self._drainers)

    # -- operator controls ------

    def add_database(self, db: str, store) -> None:
        """Start applying records of a database that joined the mirror while we run."""
        with self._state:
            self._db_locks.setdefault(db, threading.Lock())
            self.stores[db] = store

    def remove_database(self, db: str) -> None:
        """Stop applying `db`. Records held for it are dropped: they stay in the journal, and a
        catch-up replays them if the database comes back."""
        lock = self._db_locks.get(db)
        if lock is None:
            return
        with lock, self._state:
            self.stores.pop(db, None)
            self._held.pop(db, None)
            self.paused.discard(db)

    def pause_database(self, db: str) -> None:
        if db not in self.stores:
            raise KeyError(f"database {db!r} is not dejournaled here")
        with self._state:
            self.paused.add(db)

    def resume_database(self, db: str, wait: bool = False) -> None:
        with self._state:
            self.paused.discard(db)
        if wait:
            self.drain(db)
        elif self.held_records(db):
            self._drain_in_background(db)

    def stop(self) -> None:
        with self._state:
            self.stopped = True

    def start(self, wait: bool = False) -> None:
        with self._state:
            self.stopped = False
        if wait:
            self.drain()
        elif self.held_records():
            self._drain_in_background()

    def close(self) -> None:
        self.wait_idle()
        self._pool.shutdown(wait=True)
