"""Jobs that read the members: check and discover a host, import a mirror, refresh one, and
settle a drift either way."""

from __future__ import annotations

from django.conf import settings

from members import reconcile, sync
from members.agents import agent_client_for, refusals
from members.models import Drift, Host, Instance, Mirror
from members.operations.base import Where, host_of, mirror_of, primary, read, refresh
from members.probes import AgentUnreachable, measure_agent_rtt
from members.services import record_host_check
from tasks.errors import PermanentJobError, TransientJobError


def check_host(run):
    """Is the agent reachable, how far away, does it accept the portal, and what runs there."""
    host = Host.objects.filter(pk=run.job.target_id).first()
    if host is None:
        raise PermanentJobError("The host no longer exists.")
    run.step(f"Connecting to the agent at {host.address}:{host.agent_port}", progress=10)
    if agent_client_for(host) is None:
        return _reachability_only(run, host)
    try:
        health, instances, rtt_ms = sync.discover_host(host)
    except TransientJobError as exc:  # no answer: a check reports it rather than retrying
        reason = str(exc).split(": ", 1)[-1]
        record_host_check(host, reachable=False, rtt_ms=None, error=reason)
        raise PermanentJobError(f"Host {host.name} is unreachable: {reason}") from None
    except PermanentJobError as exc:
        reason = f"the agent did not accept the portal: {str(exc).split(': ', 1)[-1]}"
        record_host_check(host, reachable=True, rtt_ms=None, error=reason)
        raise PermanentJobError(f"Host {host.name}: {reason}") from None
    run.step(f"Reachable, round trip {rtt_ms:.2f} ms", progress=40)
    result = {"reachable": True, "rtt_ms": round(rtt_ms, 3), "agent": None, "instances": []}
    presented = (health.get("certificate") or {}).get("subject_dn", "")
    if host.tls_dn and presented and presented != host.tls_dn:
        reason = f"the agent presents {presented}, not the expected {host.tls_dn}"
        record_host_check(host, reachable=True, rtt_ms=rtt_ms, error=reason)
        raise PermanentJobError(f"Host {host.name}: {reason}")
    record_host_check(host, reachable=True, rtt_ms=rtt_ms, error="", tls_dn=presented)
    run.step(f"Agent {health['version']} answered (auth {health['auth']})", progress=70)
    for row in instances:
        membership = (
            f"{row['type']} member {row['member']} of {row['mirror']} ({row['role']})"
            if row.get("member")
            else "not a member of any mirror"
        )
        dn = (row.get("certificate") or {}).get("subject_dn")
        run.step(
            f"Instance {row['name']} at {row['superserver']}: {row['state']}, {membership}"
            + (f", certificate {dn}" if dn else "")
        )
    result["agent"] = {
        key: health.get(key)
        for key in ("version", "api_version", "auth", "instances", "certificate")
    }
    result["instances"] = instances
    return result


def _reachability_only(run, host: Host) -> dict:
    """Without a way to authenticate to the agent, only whether it accepts connections and how
    far away it is (a TCP handshake is one round trip)."""
    try:
        rtt_ms = measure_agent_rtt(
            host.address, host.agent_port, timeout_s=settings.PORTAL_AGENT_TIMEOUT_S
        )
    except AgentUnreachable as exc:
        record_host_check(host, reachable=False, rtt_ms=None, error=str(exc))
        run.step(f"Unreachable: {exc}", progress=100)
        raise PermanentJobError(f"Host {host.name} is unreachable: {exc}") from None
    record_host_check(host, reachable=True, rtt_ms=rtt_ms, error="")
    run.step(f"Reachable, round trip {rtt_ms:.2f} ms", progress=50)
    run.step("No credential or portal TLS identity for this agent: reachability only.")
    return {"reachable": True, "rtt_ms": round(rtt_ms, 3), "agent": None, "instances": []}


def import_mirror(run):
    """Register the mirror an instance belongs to, from what its members say."""
    host = host_of(run)
    instance = run.params["instance"]
    run.step("Discovering every registered host's instances", progress=5)
    for problem in sync.rediscover_all():
        run.step(f"could not discover: {problem}")
    run.step(f"Reading the mirror of {instance} on {host.name}", progress=30)
    view = sync.read_mirror(host, instance, run.params.get("mirror"))
    run.step(
        f"Mirror {view.name}: primary {view.primary or 'none'}, "
        f"{len(view.members)} members, read from {view.source}",
        progress=60,
    )
    result = refresh(run, None, adopt=True, view=view)
    run.job.mirror = Mirror.objects.get(name=view.name)
    run.job.save(update_fields=["mirror"])
    return result


def refresh_mirror(run):
    mirror = mirror_of(run)
    run.step(f"Reading {mirror.name} from its members", progress=20)
    return refresh(run, mirror)


def review_mirror(run):
    """Every member asked now how it stands, for the review after creation (guide §4.7.4): its
    status, journal transfer, dejournaling and copies, as it reports them."""
    mirror = mirror_of(run)
    run.step(f"Asking each member of {mirror.name} how it stands", progress=20)
    view = read(mirror)
    result = refresh(run, mirror, view=view)
    result["review"] = [
        {
            "name": m.name,
            "type": m.type,
            "authorized": m.authorized,
            "dn": m.dn,
            "status": m.status,
            "journal_transfer": m.journal_transfer,
            "dejournaling": m.dejournaling,
            "databases": m.databases,
            "problem": m.problem,
        }
        for m in view.members
    ]
    result["requires_tls"] = bool(view.settings.get("tls"))
    return result


def adopt_settings(run):
    """The primary's settings become the portal's: the drift is accepted."""
    mirror = mirror_of(run)
    return refresh(run, mirror, adopt=True)


def reapply_settings(run):
    """The portal's settings are written to the primary again: the drift is undone."""
    mirror = mirror_of(run)
    drifts = {d.setting: getattr(mirror, d.setting) for d in Drift.objects.filter(mirror=mirror)}
    if not drifts:
        run.step("No drift: the primary has the portal's settings.")
        return refresh(run, mirror)
    engine_names = {field: key for key, field in reconcile.SETTING_FIELDS.items()}
    changes = {engine_names[field]: value for field, value in drifts.items()}
    with primary(mirror) as place, refusals(f"Settings on {place.instance}"):
        run.step(f"Applying {', '.join(sorted(changes))} on the primary {place.instance}")
        place.agent.edit_mirror(place.instance, mirror=mirror.name, **changes)
    return refresh(run, mirror, view=read(mirror))


def set_instance_tls(run):
    """Give an instance its TLS files (paths on its host), for every mirror it is in."""
    found = Instance.objects.select_related("host").filter(pk=run.job.target_id).first()
    if found is None:
        raise PermanentJobError("The instance is no longer known: check its host again.")
    files = [run.params[k] for k in ("cert", "key", "ca")]
    with Where(found) as place, refusals(f"TLS files of {found.name}"):
        answer = place.agent.set_tls(found.name, *files)
    run.step(f"{found.name} now presents {answer.get('dn')}", progress=70)
    sync.discover_host(found.host)
    return {"instance": found.name, "dn": answer.get("dn")}
