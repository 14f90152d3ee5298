"""What a job's handler is given: the operator's params, a way to write progress, and waits
that are bounded, show what they wait for, and stop when the job is cancelled."""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks import services
from tasks.errors import JobCancelled, PermanentJobError, TransientJobError
from tasks.models import Job

# How many polls in a row may fail to reach a member before the wait gives up as transient
# (the task then retries the whole job with backoff).
MAX_UNREACHABLE_POLLS = 40


class JobRun:
    def __init__(self, job: Job):
        self.job = job
        self.params: dict = job.params or {}

    def step(self, message: str, progress: int | None = None) -> None:
        services.report(self.job, message, progress=progress)

    def check_cancel(self) -> None:
        if services.cancel_requested(self.job):
            raise JobCancelled("Cancelled by an operator.")

    def wait(
        self,
        poll: Callable[[], tuple[bool, str]],
        *,
        what: str,
        timeout: float,
        interval: float = 0.25,
        progress: tuple[int, int] | None = None,
    ) -> None:
        """Poll until `poll()` answers (True, state); each new state is a log line, so the job
        shows the member's status as it goes. Gives up after `timeout` seconds with the last
        state seen; stops at once when the job is cancelled. `progress` (from, to) moves the
        bar along the wait: by the fraction done when `poll` gives one as a third value (a
        download's bytes), else by the time spent."""
        started = time.monotonic()
        last_state, failures = None, 0
        while True:
            self.check_cancel()
            fraction = None
            try:
                done, state, *rest = poll()
                fraction = rest[0] if rest else None
                failures = 0
            except TransientJobError as exc:
                failures += 1
                if failures >= MAX_UNREACHABLE_POLLS:
                    raise TransientJobError(f"while waiting for {what}: {exc}") from None
                done, state = False, str(exc)
            elapsed = time.monotonic() - started
            if state != last_state:
                bar = None
                if progress:
                    low, high = progress
                    share = fraction if fraction is not None else min(1.0, elapsed / timeout)
                    bar = low + int((high - low) * share)
                self.step(f"{what}: {state}", progress=bar)
                last_state = state
            if done:
                return
            if elapsed >= timeout:
                raise PermanentJobError(
                    f"Gave up waiting for {what} after {timeout:g} s (last seen: {last_state})."
                )
            time.sleep(interval)
