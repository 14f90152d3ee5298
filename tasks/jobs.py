"""What each kind of job does. A handler takes the job row, reports progress through
`tasks.services.report`, and returns a JSON-able result or raises a JobError."""

from django.conf import settings

from members.agents import AgentConnectionError, AgentError, agent_client_for
from members.models import Host
from members.probes import AgentUnreachable, measure_agent_rtt
from members.services import record_host_check
from tasks.errors import PermanentJobError
from tasks.services import report


def check_host(job):
    """Is the host's agent reachable, how far away is it, and does it accept the portal?"""
    host = Host.objects.filter(pk=job.target_id).first()
    if host is None:
        raise PermanentJobError("The host no longer exists.")
    report(job, f"Connecting to the agent at {host.address}:{host.agent_port}", progress=10)
    try:
        rtt_ms = measure_agent_rtt(
            host.address, host.agent_port, timeout_s=settings.PORTAL_AGENT_TIMEOUT_S
        )
    except AgentUnreachable as exc:
        record_host_check(host, reachable=False, rtt_ms=None, error=str(exc))
        report(job, f"Unreachable: {exc}", progress=100)
        raise PermanentJobError(f"Host {host.name} is unreachable: {exc}") from None
    report(job, f"Reachable, round trip {rtt_ms:.2f} ms", progress=50)
    result = {"reachable": True, "rtt_ms": round(rtt_ms, 3), "agent": None}

    client = agent_client_for(host)
    if client is None:
        record_host_check(host, reachable=True, rtt_ms=rtt_ms, error="")
        report(job, "No credential or portal TLS identity for this agent: reachability only.")
        return result
    try:
        with client:
            health = client.health()
    except (AgentError, AgentConnectionError) as exc:
        reason = f"the agent did not accept the portal: {exc}"
        record_host_check(host, reachable=True, rtt_ms=rtt_ms, error=reason)
        report(job, reason, progress=100)
        raise PermanentJobError(f"Host {host.name}: {reason}") from None
    record_host_check(host, reachable=True, rtt_ms=rtt_ms, error="")
    report(job, f"Agent {health['version']} answered (auth {health['auth']})", progress=100)
    result["agent"] = {
        key: health.get(key)
        for key in ("version", "api_version", "auth", "instances", "certificate")
    }
    return result


HANDLERS = {"check_host": check_host}
