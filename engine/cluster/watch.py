"""The status of every instance of a mirror being built, from the agents' status streams.

    with Watch({"hosta": agent_client, ...}) as watch:
        watch.wait(lambda records: records["B"]["status"] == "Backup", 60, "B to be Backup")

One StatusStream (engine/client/stream.py) per agent is followed on a thread; every event
updates `records` (instance name -> the agent's flat record: status, journal_transfer,
dejournaling, databases, members on the primary, ...) and wakes the waiters, so waiting
costs no polling of our own.
"""

from __future__ import annotations

import threading
import time

from engine.client.agent import AgentClient


class BuildError(Exception):
    """The build cannot go on; the message says why (and which log to read)."""


class Watch:
    def __init__(self, agents: dict[str, AgentClient]):
        self._cond = threading.Condition()
        self._records: dict[str, dict] = {}
        self._failure: BaseException | None = None
        self._streams = [agent.status_stream(retry_s=0.2) for agent in agents.values()]
        self._threads = [
            threading.Thread(target=self._follow, args=(s,), daemon=True) for s in self._streams
        ]
        for t in self._threads:
            t.start()

    def _follow(self, stream) -> None:
        try:
            for _event in stream.events():
                with self._cond:
                    for name, rec in stream.instances.items():
                        self._records[name] = dict(rec)
                    self._cond.notify_all()
        except Exception as exc:  # a refusal (401/403): handed to the waiter
            with self._cond:
                self._failure = exc
                self._cond.notify_all()

    def records(self) -> dict[str, dict]:
        with self._cond:
            return {k: dict(v) for k, v in self._records.items()}

    def wait(self, predicate, timeout: float, what: str):
        """predicate(records)'s first truthy value, checked after every event."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._failure is not None:
                    raise BuildError(f"status stream failed: {self._failure}")
                value = predicate(self._records)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BuildError(f"timed out after {timeout:g} s waiting for {what}")
                self._cond.wait(left)

    def close(self) -> None:
        for s in self._streams:
            s.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
