"""Reaching a host's agent over the network."""

import errno
import socket
import statistics
import time


class AgentUnreachable(Exception):
    pass


def _reason(exc: OSError, address: str, port: int, timeout_s: float) -> str:
    where = f"{address}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {address}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} within {timeout_s:g} s"
    if exc.errno == errno.ECONNREFUSED:
        return f"connection refused by {where} (is the agent running?)"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"no route to {where}"
    return f"cannot connect to {where}: {exc.strerror or exc}"


def measure_agent_rtt(address: str, port: int, *, timeout_s: float, samples: int = 3) -> float:
    """Median TCP connect time to the agent in milliseconds, or AgentUnreachable with a reason.

    A TCP handshake is one network round trip, so it measures the path without depending on
    what the agent answers.
    """
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        try:
            with socket.create_connection((address, port), timeout=timeout_s):
                timings.append((time.perf_counter() - started) * 1000)
        except OSError as exc:
            raise AgentUnreachable(_reason(exc, address, port, timeout_s)) from None
    return statistics.median(timings)
