"""The portal's way to the agents: one AgentClient per host, built from the host's record and
the portal's own TLS identity. Every agent call the portal makes goes through here."""

from django.conf import settings

from engine.client.agent import AgentClient, AgentConnectionError, AgentError

__all__ = ["agent_client_for", "AgentError", "AgentConnectionError"]


def agent_client_for(host) -> AgentClient | None:
    """A client for `host`'s agent, or None when the portal has no way to authenticate to it.

    A host with a credential is called over HTTP with that credential; otherwise, when the portal
    has a TLS identity (PORTAL_AGENT_TLS_CERT/KEY/CA), over mutual TLS.
    """
    timeout = settings.PORTAL_AGENT_TIMEOUT_S
    if host.credential:
        url = f"http://{_netloc(host.address)}:{host.agent_port}"
        return AgentClient(url, credential=host.credential, timeout=timeout)
    tls = settings.PORTAL_AGENT_TLS
    if tls:
        url = f"https://{_netloc(host.address)}:{host.agent_port}"
        return AgentClient(url, cert=tls["cert"], key=tls["key"], ca=tls["ca"], timeout=timeout)
    return None


def _netloc(address: str) -> str:
    return f"[{address}]" if ":" in address else address
