"""The portal's way to the agents: one AgentClient per host, built from the host's record and
the portal's own TLS identity, and the one place that turns an agent's answer into a job's
outcome. Every agent call the portal makes goes through here."""

from __future__ import annotations

import contextlib

from django.conf import settings

from engine.client.agent import AgentClient, AgentConnectionError, AgentError
from tasks.errors import PermanentJobError, TransientJobError

__all__ = [
    "agent_client_for",
    "open_agent",
    "refusals",
    "AgentError",
    "AgentConnectionError",
]


def agent_client_for(host, *, timeout: float | None = None) -> AgentClient | None:
    """A client for `host`'s agent, or None when the portal has no way to authenticate to it.

    A host with a credential is called over HTTP with that credential; otherwise, when the portal
    has a TLS identity (PORTAL_AGENT_TLS_CERT/KEY/CA), over mutual TLS.
    """
    timeout = timeout or settings.PORTAL_AGENT_TIMEOUT_S
    if host.credential:
        url = f"http://{_netloc(host.address)}:{host.agent_port}"
        return AgentClient(url, credential=host.credential, timeout=timeout)
    tls = settings.PORTAL_AGENT_TLS
    if tls:
        url = f"https://{_netloc(host.address)}:{host.agent_port}"
        return AgentClient(url, cert=tls["cert"], key=tls["key"], ca=tls["ca"], timeout=timeout)
    return None


def open_agent(host, *, timeout: float | None = None) -> AgentClient:
    """Like agent_client_for, but a host the portal cannot authenticate to fails the job."""
    client = agent_client_for(host, timeout=timeout)
    if client is None:
        raise PermanentJobError(
            f"Host {host.name}: the portal has no credential for its agent and no TLS identity "
            "of its own (PORTAL_AGENT_TLS_CERT/KEY/CA)."
        )
    return client


@contextlib.contextmanager
def refusals(what: str):
    """Agent errors as job errors: no answer, or an instance restarting (503), is transient and
    retried; any other refusal fails the job at once with the agent's own reason."""
    try:
        yield
    except AgentConnectionError as exc:
        raise TransientJobError(f"{what}: {exc}") from None
    except AgentError as exc:
        if exc.status >= 500:
            raise TransientJobError(f"{what}: {exc.message}") from None
        rule = f" [{exc.rule}]" if exc.rule else ""
        raise PermanentJobError(
            f"{what}: refused ({exc.status} {exc.code}): {exc.message}{rule}"
        ) from None


def _netloc(address: str) -> str:
    return f"[{address}]" if ":" in address else address
