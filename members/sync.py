"""Reading the members into the portal: what runs on a host (discovery), a whole mirror from any
one of its members (import), and again later (refresh).

The members are the truth (docs/architecture.md): what they answer is written to the portal's
rows by `members.services.record_observed_mirror`, each change audited with the member as its
actor. Reading and writing are apart so that a slow agent never holds a transaction open.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from engine import rules as catalog
from members import reconcile
from members.agents import AgentConnectionError, AgentError, open_agent, refusals
from members.models import Host, Instance
from tasks.errors import PermanentJobError, TransientJobError


@dataclass
class MemberView:
    """One member as the mirror's configuration lists it, and as it answers for itself."""

    name: str
    type: str
    superserver: str
    private: str
    dn: str
    authorized: bool
    instance: Instance | None = None
    status: str | None = None  # None: not reached (problem says why)
    databases: dict[str, str] | None = None  # its copies: name -> status (guide §5.1.1.3)
    journal_transfer: str = ""  # as the member reports it (guide §5.1.1.2)
    dejournaling: str = ""
    problem: str = ""


@dataclass
class MirrorView:
    name: str
    settings: dict
    primary: str | None
    source: str  # the member whose configuration this is
    members: list[MemberView] = field(default_factory=list)
    dn_updates: dict[str, str] = field(default_factory=dict)
    # member -> the certificate of its pending DN update: fingerprint, issuer, not_after
    dn_update_certs: dict[str, dict] = field(default_factory=dict)

    def member(self, name: str) -> MemberView | None:
        return next((m for m in self.members if m.name == name), None)


class Agents:
    """One open client per host for the length of a read (kept-alive connections)."""

    def __init__(self):
        self.clients = {}

    def __call__(self, host: Host):
        if host.pk not in self.clients:
            self.clients[host.pk] = open_agent(host)
        return self.clients[host.pk]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


# --- Discovery --------------------------------------------------------------------------------
def discover_host(host: Host) -> tuple[dict, list[dict], float]:
    """The agent's health, its instances (recorded as the host's Instance rows), and the round
    trip of a request on an open connection in milliseconds (the median of a few)."""
    with refusals(f"The agent of {host.name}"), contextlib.closing(open_agent(host)) as agent:
        health = agent.health()  # connects (and shakes hands): not part of the round trip
        timings = []
        for _ in range(RTT_SAMPLES):
            started = time.perf_counter()
            agent.health()
            timings.append((time.perf_counter() - started) * 1000)
        rows = agent.instances()
    reconcile.record_instances(host, rows)
    return health, rows, statistics.median(timings)


RTT_SAMPLES = 3


def rediscover_all() -> list[str]:
    """Every host's instances again; the hosts that could not be read, with the reason."""
    problems = []
    for host in Host.objects.all():
        try:
            discover_host(host)
        except (PermanentJobError, TransientJobError) as exc:
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - one unreachable host must not stop the rest
            problems.append(f"Host {host.name}: {exc}")
    return problems


def locate(mirror: str, member: str) -> Instance | None:
    """The instance that is `member` of `mirror`, as the hosts last reported them."""
    known = Instance.objects.select_related("host")
    return (
        known.filter(mirror_name=mirror, member_name=member).first()
        or known.filter(name=member, member_name="").first()
        or known.filter(name=member).first()
    )


# --- Reading a mirror -------------------------------------------------------------------------
def read_mirror(host: Host, instance: str, mirror: str | None = None) -> MirrorView:
    """The mirror `instance` on `host` belongs to (or `mirror`, for a reporting async in
    several), with each member's own status and copies."""
    agents = Agents()
    try:
        with refusals(f"{instance} on {host.name}"):
            info = agents(host).mirror_info(instance, mirror=mirror)
        view = _view(info)
        if view.primary and view.primary != view.source:
            # the primary holds the pending members and DN updates: prefer its configuration
            where = _find(view.name, view.primary)
            if where is not None:
                with contextlib.suppress(AgentError, AgentConnectionError, PermanentJobError):
                    view = _view(agents(where.host).mirror_info(where.name, mirror=view.name))
        _read_members(agents, view)
        view.primary = primary_by_status(view)
        return view
    finally:
        agents.close()


def primary_by_status(view: MirrorView) -> str | None:
    """The primary as the members say it now: roles change with every takeover, so the one
    member that reports itself Primary (or In Trouble) wins over the configuration's name. When
    none does and the named one answered otherwise (Down, Backup...), there is no primary; a
    Crashed one is still the primary, whose journal froze."""
    claims = [m.name for m in view.members if m.status in catalog.PRIMARY_STATUSES]
    if len(claims) == 1:
        return claims[0]
    named = view.member(view.primary) if view.primary else None
    if not claims and named is not None and named.status not in (None, "", catalog.CRASHED):
        return None
    return view.primary


def _find(mirror: str, member: str) -> Instance | None:
    found = locate(mirror, member)
    if found is None:
        rediscover_all()
        found = locate(mirror, member)
    return found


def _view(info: dict) -> MirrorView:
    settings = {key: info[key] for key in catalog.SETTINGS if key in info}
    view = MirrorView(
        name=info["name"],
        settings=settings,
        primary=info.get("primary"),
        source=info.get("member") or info.get("instance", ""),
        dn_updates=dict(info.get("dn_updates") or {}),
        dn_update_certs=dict(info.get("dn_update_certs") or {}),
    )
    for row in info.get("members", []):
        view.members.append(
            MemberView(
                name=row["name"],
                type=row["type"],
                superserver=row.get("superserver") or "",
                private=row.get("private") or "",
                dn=row.get("dn") or "",
                authorized=bool(row.get("authorized", True)),
            )
        )
    return view


def _read_members(agents: Agents, view: MirrorView) -> None:
    """Each member's own answer; the hosts are asked in parallel (a mirror of 16 members on
    several hosts costs about one host's calls), each host's members one after another on its
    kept-alive connection."""
    by_host: dict[int, list[MemberView]] = {}
    for member in view.members:  # the lookups use the database: on this thread
        member.instance = _find(view.name, member.name)
        if member.instance is None:
            member.problem = "on no registered host (register its host, then refresh)"
            continue
        try:
            agents(member.instance.host)
        except PermanentJobError as exc:
            member.problem = str(exc)
            continue
        by_host.setdefault(member.instance.host_id, []).append(member)

    def read_host(members: list[MemberView]) -> None:
        for member in members:
            _read_member(agents, view.name, member)

    if len(by_host) <= 1:
        for members in by_host.values():
            read_host(members)
        return
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_HOSTS, len(by_host))) as pool:
        list(pool.map(read_host, by_host.values()))


MAX_PARALLEL_HOSTS = 8


def _read_member(agents: Agents, mirror: str, member: MemberView) -> None:
    try:
        answer = agents(member.instance.host).databases(member.instance.name, mirror=mirror)
    except AgentError as exc:
        member.status = catalog.DOWN if exc.status == 503 else None
        member.problem = exc.message
        return
    except (AgentConnectionError, PermanentJobError) as exc:
        member.problem = str(exc)
        return
    member.status = answer.get("status") or ""
    member.journal_transfer = answer.get("journal_transfer") or ""
    member.dejournaling = answer.get("dejournaling") or ""
    member.databases = {row["name"]: row["status"] for row in answer.get("databases", [])}
