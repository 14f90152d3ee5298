"""The history of a randomized fault run: what the clients asked, who answered, and how.

Jepsen's model (issue 14, deliverable 1): several clients run at once, each writing keys of its
own (never written twice, so a key names one write) and reading some of its acknowledged keys
back.  Every operation is recorded with

    start, end     wall-clock seconds (time.time(): the members' log lines use the same clock,
                   so the checker can place an answer between their "member X is primary")
    member         the member that answered, as the client's connection names it
    role, term     that member's role and term in the INFO the client read when it connected
                   (docs/takeover.md, "Clients": the client follows the primary, and a primary
                   keeps its term for the life of its process)
    outcome        ACK (answered: the write is acknowledged, the read has a value or None),
                   REFUSED (the request was never applied: not primary, no primary found, never
                   sent), or UNKNOWN (the answer was lost: a timeout, a cut connection, a primary
                   that stopped before its backup acknowledged).  UNKNOWN is never counted as
                   lost nor as done: the checker only asks that it be all there or not at all.

The clients are engine/client/app.py Clients given the failover members' addresses; a write
whose answer was lost raises OutcomeUnknown and is never sent again (engine/PROTOCOL.md, "Error
codes").  Nothing here starts a process: `Workload` takes the addresses and a name map.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field

from engine.client.app import (
    BadRequest,
    Client,
    ConnectionLost,
    EngineError,
    NoPrimaryFound,
    NotPrimary,
    OutcomeUnknown,
    ReadOnly,
    Unauthorized,
)

ACK, REFUSED, UNKNOWN = "ack", "refused", "unknown"
WRITE, READ = "write", "read"
DATABASE = "USER"

# errors after which the request was certainly not applied: refused by a member that does not
# take it, or never sent (a ConnectionLost that is not OutcomeUnknown: the client raises
# OutcomeUnknown for any write it had sent, engine/client/app.py AsyncClient.call)
NOT_APPLIED = (NotPrimary, NoPrimaryFound, ReadOnly, BadRequest, Unauthorized)


@dataclass
class Op:
    client: int
    kind: str  # WRITE or READ
    key: str
    start: float
    end: float = 0.0
    outcome: str = UNKNOWN
    member: str | None = None
    role: str | None = None
    term: int | None = None
    value: object = None  # a read's answer
    error: str | None = None

    def describe(self) -> str:
        who = f"{self.member} ({self.role}, term {self.term})" if self.member else "nobody"
        what = f"{self.kind} {self.key}"
        if self.kind == READ and self.outcome == ACK:
            what += f" -> {self.value!r}"
        err = f": {self.error}" if self.error else ""
        return (
            f"client {self.client} {what} [{stamp(self.start)} .. {stamp(self.end)}] "
            f"{self.outcome} from {who}{err}"
        )

    def to_json(self) -> dict:
        return asdict(self)


def stamp(t: float) -> str:
    """Wall-clock time as the members' logs print it, to the millisecond."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def classify(exc: BaseException) -> str:
    """REFUSED when the write was certainly not applied, else UNKNOWN."""
    if isinstance(exc, OutcomeUnknown):
        return UNKNOWN
    if isinstance(exc, NOT_APPLIED):
        return REFUSED
    if isinstance(exc, ConnectionLost):
        return REFUSED  # never sent: a sent write whose answer is lost is OutcomeUnknown
    return UNKNOWN  # Unavailable ("whether the mirror has it is unknown"), timeouts, anything else


@dataclass
class History:
    """Every operation of a run, in the order they started (thread-safe appends)."""

    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, op: Op) -> Op:
        with self._lock:
            self.ops.append(op)
        return op

    def writes(self, outcome: str | None = None) -> list[Op]:
        return [
            o for o in self.ops if o.kind == WRITE and (outcome is None or o.outcome == outcome)
        ]

    def reads(self) -> list[Op]:
        return [o for o in self.ops if o.kind == READ]

    def counts(self) -> dict[str, int]:
        out = {ACK: 0, REFUSED: 0, UNKNOWN: 0}
        for o in self.writes():
            out[o.outcome] += 1
        return out


class Workload:
    """`clients` threads, each with its own Client on `addresses`, writing keys
    `{prefix}-c{i}-{n}` (value: the key) to global `gname` and reading back one of its
    acknowledged keys after about one write in `read_every`.  With `pinned`, one more client
    per address knows that address alone (an application configured with one host, or a
    virtual IP that has not moved yet): it stays with that member as long as it answers as
    primary, even in trouble (engine/client/app.py connect), so a replaced primary that took a
    write would be caught taking it.

    `members` maps a superserver address to its member's name.  `pause` (seconds) spaces each
    client's operations, so a run writes hundreds of keys, not hundreds of thousands.
    """

    def __init__(
        self,
        addresses: list[str],
        members: dict[str, str],
        gname: str,
        prefix: str,
        *,
        clients: int = 3,
        pinned: bool = True,
        timeout: float = 3.0,
        retries: int = 8,
        pause: float = 0.02,
        read_every: int = 4,
        seed: int = 0,
    ):
        self.addresses = list(addresses)
        # the address list of each client
        self.lists = [self.addresses] * clients + ([[a] for a in addresses] if pinned else [])
        self.members = members
        self.gname = gname
        self.prefix = prefix
        self.timeout = timeout
        self.retries = retries
        self.pause = pause
        self.read_every = read_every
        self.seed = seed
        self.history = History()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Workload:
        for i in range(len(self.lists)):
            t = threading.Thread(target=self._run, args=(i,), name=f"fault-client-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 60.0) -> History:
        """Stop the clients after the operation each has in flight (bounded by its timeout)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return self.history

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one client -----------------------------------------------------------------------------
    def _connect(self, i: int) -> Client | None:
        try:
            return Client(self.lists[i], timeout=self.timeout, retries=self.retries)
        except (EngineError, OSError, TimeoutError):
            return None

    def _run(self, i: int) -> None:
        rng = random.Random(f"{self.seed}-{i}")
        acked: list[str] = []
        client: Client | None = None
        n = 0
        try:
            while not self._stop.is_set():
                if client is None:
                    client = self._connect(i)
                    if client is None:  # no member answers now: say so, then try again
                        self._stop.wait(0.2)
                        continue
                if acked and rng.randrange(self.read_every) == 0:
                    self._read(client, i, rng.choice(acked))
                else:
                    key = f"{self.prefix}-c{i}-{n}"
                    n += 1
                    if self._write(client, i, key) == ACK:
                        acked.append(key)
                if self.pause:
                    self._stop.wait(self.pause)
        finally:
            if client is not None:
                client.close()

    def _answered_by(self, client: Client, op: Op) -> None:
        info = client.member_info or {}
        op.member = self.members.get(client.address or "", info.get("member"))
        op.role = info.get("role")
        state = info.get("failover_state")
        op.term = state.get("term") if isinstance(state, dict) else None

    def _write(self, client: Client, i: int, key: str) -> str:
        op = self.history.add(Op(i, WRITE, key, time.time()))
        try:
            client.set(DATABASE, self.gname, (key,), key)
            op.end = time.time()
            op.outcome = ACK
        except Exception as exc:  # every failure is an outcome to record
            op.end = time.time()
            op.outcome = classify(exc)
            op.error = f"{type(exc).__name__}: {exc}"[:300]
        # who answered: the connection the answer came on (a lost one names where it was sent)
        self._answered_by(client, op)
        return op.outcome

    def _read(self, client: Client, i: int, key: str) -> None:
        op = self.history.add(Op(i, READ, key, time.time()))
        try:
            op.value = client.get(DATABASE, self.gname, (key,))
            op.end = time.time()
            op.outcome = ACK
        except Exception as exc:  # every failure is an outcome to record
            op.end = time.time()
            op.outcome = UNKNOWN if not isinstance(exc, NOT_APPLIED) else REFUSED
            op.error = f"{type(exc).__name__}: {exc}"[:300]
        self._answered_by(client, op)
