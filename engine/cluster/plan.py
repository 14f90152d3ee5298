"""The build plan of `python -m engine cluster build -f PLAN` (see examples/mirror.toml).

    [mirror]
    name = "DEMO"
    data_root = "../var/mirror"      # relative to this file: certificates, agent configs,
                                      # data directories, logs and the state file
    tls = true                        # and any other mirror setting (guide §4.7.1):
    qos_timeout_ms = 8000             #   qos_timeout_ms, failover_compression(_type),
                                      #   async_compression(_type), parallel_dejournaling

    [[hosts]]                         # one agent per host, on 127.0.0.1
    name = "hosta"
    agent = 52180                     # the agent's port
    instances = ["MIRRORA"]           # the members (and spares) whose instance runs here

    [[members]]                       # in order: the first failover member becomes primary
    name = "MIRRORA"
    type = "failover"                 # failover | dr | ro_reporting | rw_reporting
    superserver = 52100               # ports on 127.0.0.1
    private = 52101                   # the mirror private address (failover members)

    [[databases]]
    name = "USER"
    how = "create"                    # create | download | restore
    rows = 100                        # records written on the primary
    members = ["MIRRORA", ...]        # optional: who holds it (default every member; only
                                      # reporting asyncs may be left out, guide §4.8)

    [[spares]]                        # optional: an instance started, given its certificate
    name = "SHOPA"                    #   and TLS files, but joined to nothing: ready for a
    superserver = 52140               #   mirror made later (in the portal's wizard, say)
    private = 52141                   # optional: kept free for it as a failover member

A spare's name is also its instance's name, under the stricter of the member-name rules (it
may become any type of member); member and spare names are unique together, every port is
distinct, and every member and spare runs on exactly one host.

Every port is on the loopback address: this launcher builds a whole mirror on one machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine import rules
from engine.member.config import ConfigError, read_toml
from engine.member.mirror_file import check_member_name, check_mirror_name
from engine.storage.databases import Refused, check_name

LOOPBACK = "127.0.0.1"
HOWS = ("create", "download", "restore")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass
class PlanHost:
    name: str
    agent_port: int
    instances: list[str]

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.agent_port}"


class _Addresses:
    """The addresses of an instance the launcher starts, from its ports on the loopback."""

    superserver_port: int
    private_port: int | None

    @property
    def superserver(self) -> str:
        return f"{LOOPBACK}:{self.superserver_port}"

    @property
    def private(self) -> str | None:
        return None if self.private_port is None else f"{LOOPBACK}:{self.private_port}"

    @property
    def ports(self) -> list[int]:
        return [p for p in (self.superserver_port, self.private_port) if p is not None]


@dataclass
class PlanMember(_Addresses):
    name: str
    type: str
    superserver_port: int
    private_port: int | None
    host: str = ""


@dataclass
class PlanSpare(_Addresses):
    """An instance started beside the mirror but joined to nothing (its private port, if
    any, is only kept free in the plan: it is bound when the instance joins as failover)."""

    name: str
    superserver_port: int
    private_port: int | None
    host: str = ""


@dataclass
class PlanDatabase:
    name: str
    how: str
    rows: int
    members: list[str] = field(default_factory=list)


@dataclass
class Plan:
    mirror: str
    settings: dict
    root: Path
    hosts: list[PlanHost]
    members: list[PlanMember]
    databases: list[PlanDatabase]
    source: Path
    spares: list[PlanSpare] = field(default_factory=list)

    @property
    def primary(self) -> PlanMember:
        return next(m for m in self.members if m.type == "failover")

    def member(self, name: str) -> PlanMember:
        return next(m for m in self.members if m.name == name.upper())

    @property
    def instances(self) -> list[PlanMember | PlanSpare]:
        """Every instance the launcher starts: the members, then the spares."""
        return [*self.members, *self.spares]

    def instance(self, name: str) -> PlanMember | PlanSpare:
        return next(i for i in self.instances if i.name == name.upper())

    @property
    def ports(self) -> list[int]:
        """Every port of the plan: the agents', then the instances' (private ones included)."""
        return [h.agent_port for h in self.hosts] + [p for i in self.instances for p in i.ports]

    def host(self, name: str) -> PlanHost:
        return next(h for h in self.hosts if h.name == name)

    def data_dir(self, instance: PlanMember | PlanSpare) -> Path:
        return self.root / instance.host / instance.name

    def host_dir(self, host: PlanHost) -> Path:
        return self.root / host.name

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def state_path(self) -> Path:
        return self.root / "cluster-state.json"

    @property
    def tls(self) -> bool:
        return bool(self.settings.get("tls", False))


def is_plan(path: str | Path) -> bool:
    """A build plan names hosts; a static mirror file (engine/member/config.py) does not."""
    data, _ = read_toml(path, "cluster file")
    return "hosts" in data


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a [{key}] table")
    return value


def _tables(data: dict, key: str) -> list[dict]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{key}: expected one or more [[{key}]] tables")
    return value


def _port(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: expected a port number (1-65535) on {LOOPBACK}")
    return value


def _names(value, where: str, what: str = "member names") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of {what}")
    return [v.upper() for v in value]


def _refused(where: str, exc: Refused) -> ConfigError:
    return ConfigError(f"{where}: {exc.extra.get('reason', exc)}")


def _mirror(raw: dict, base: Path) -> tuple[str, dict, Path]:
    try:
        name = check_mirror_name("plan", raw.get("name"))
    except Refused as exc:
        raise _refused("mirror.name", exc) from None
    root = raw.get("data_root")
    if not isinstance(root, str) or not root:
        raise ConfigError("mirror.data_root: expected a directory path")
    settings = {k: v for k, v in raw.items() if k not in ("name", "data_root")}
    for key, value in settings.items():
        try:
            rules.check_setting(key, value)
        except rules.RuleError as exc:
            raise ConfigError(f"mirror.{exc.message}") from None  # it starts with the key
    path = Path(root)
    return name, settings, (path if path.is_absolute() else base / path).resolve()


def _member(raw: dict, i: int) -> PlanMember:
    where = f"members[{i}]"
    mtype = raw.get("type")
    if mtype not in rules.MEMBER_TYPES:
        raise ConfigError(f"{where}.type: one of {', '.join(rules.MEMBER_TYPES)}")
    try:
        name = check_member_name("plan", raw.get("name"), mtype)
    except Refused as exc:
        raise _refused(f"{where}.name", exc) from None
    if not _HOST_NAME.match(name):  # it is also the instance name (a directory)
        raise ConfigError(f"{where}.name: letters, digits, _ and - only")
    private = raw.get("private")
    if mtype == "failover" and private is None:
        raise ConfigError(f"{where}.private: a failover member needs a mirror private port")
    return PlanMember(
        name,
        mtype,
        _port(raw.get("superserver"), f"{where}.superserver"),
        None if private is None else _port(private, f"{where}.private"),
    )


SPARE_KEYS = ("name", "superserver", "private")


def _spare(raw: dict, i: int) -> PlanSpare:
    where = f"spares[{i}]"
    unknown = sorted(set(raw) - set(SPARE_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: a spare has only {', '.join(SPARE_KEYS)} "
            "(it becomes a member, of any type, when it joins a mirror)"
        )
    try:
        # it may join as any type: the stricter rule (an async's), which also suits a directory
        name = check_member_name("plan", raw.get("name"), "dr")
    except Refused as exc:
        raise _refused(f"{where}.name", exc) from None
    private = raw.get("private")
    return PlanSpare(
        name,
        _port(raw.get("superserver"), f"{where}.superserver"),
        None if private is None else _port(private, f"{where}.private"),
    )


def _spares(data: dict, members: list[PlanMember]) -> list[PlanSpare]:
    raw = data.get("spares", [])
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise ConfigError("spares: expected [[spares]] tables")
    spares = []
    taken = {m.name: "a member" for m in members}
    for i, item in enumerate(raw):
        spare = _spare(item, i)
        if spare.name in taken:
            raise ConfigError(
                f"spares[{i}].name: {spare.name} is already the name of {taken[spare.name]} "
                "(member and spare names are unique together: each is an instance's)"
            )
        taken[spare.name] = "another spare"
        spares.append(spare)
    return spares


def _hosts(data: dict, instances: list[PlanMember | PlanSpare]) -> list[PlanHost]:
    """The hosts, each member and spare placed on the one that names it."""
    by_name = {i.name: i for i in instances}
    hosts = []
    for i, raw in enumerate(_tables(data, "hosts")):
        where = f"hosts[{i}]"
        hname = raw.get("name")
        if not isinstance(hname, str) or not _HOST_NAME.match(hname):
            raise ConfigError(f"{where}.name: 1-32 letters, digits, _ or -")
        names = _names(raw.get("instances"), f"{where}.instances", "member or spare names")
        host = PlanHost(hname, _port(raw.get("agent"), f"{where}.agent"), names)
        for name in host.instances:
            instance = by_name.get(name)
            if instance is None:
                raise ConfigError(f"{where}.instances: no member or spare named {name}")
            if instance.host:
                raise ConfigError(f"{where}.instances: {name} is already on host {instance.host}")
            instance.host = hname
        hosts.append(host)
    if len({h.name for h in hosts}) != len(hosts):
        raise ConfigError("hosts: names must be unique")
    homeless = [i.name for i in instances if not i.host]
    if homeless:
        raise ConfigError(f"hosts: no host runs {', '.join(homeless)}")
    return hosts


def _database(raw: dict, i: int, members: list[PlanMember]) -> PlanDatabase:
    where = f"databases[{i}]"
    try:
        name = check_name("plan", raw.get("name"))
    except Refused as exc:
        raise _refused(f"{where}.name", exc) from None
    how = raw.get("how")
    if how not in HOWS:
        raise ConfigError(f"{where}.how: one of {', '.join(HOWS)}")
    rows = raw.get("rows", 100)
    if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= 1_000_000:
        raise ConfigError(f"{where}.rows: an integer from 1 to 1000000")
    everyone = [m.name for m in members]
    holders = _names(raw["members"], f"{where}.members") if "members" in raw else everyone
    unknown = sorted(set(holders) - set(everyone))
    if unknown:
        raise ConfigError(f"{where}.members: no member named {', '.join(unknown)}")
    # guide §4.8: the same set on the failover members and every DR async
    left_out = [m.name for m in members if m.type in ("failover", "dr") and m.name not in holders]
    if left_out:
        raise ConfigError(
            f"{where}.members: failover and DR members hold every mirrored database "
            f"(missing {', '.join(left_out)})"
        )
    return PlanDatabase(name, how, rows, [n for n in everyone if n in holders])


def parse_plan(data: dict, base: Path, source: Path) -> Plan:
    name, settings, root = _mirror(_table(data, "mirror", "mirror"), base)
    members = [_member(raw, i) for i, raw in enumerate(_tables(data, "members"))]
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ConfigError("members: names must be unique")
    if not any(m.type == "failover" for m in members):
        raise ConfigError("members: the first failover member becomes the primary; there is none")
    try:
        rules.check_member_mix(name, [m.type for m in members])
    except rules.RuleError as exc:
        raise ConfigError(f"members: {exc.message}") from None
    spares = _spares(data, members)
    hosts = _hosts(data, [*members, *spares])
    ports = [h.agent_port for h in hosts] + [p for i in (*members, *spares) for p in i.ports]
    if len(set(ports)) != len(ports):
        twice = sorted({p for p in ports if ports.count(p) > 1})
        raise ConfigError(
            "ports: every agent, superserver and private port must be distinct "
            f"({', '.join(map(str, twice))} given more than once)"
        )
    raw_dbs = data.get("databases", [])
    if not isinstance(raw_dbs, list) or not all(isinstance(d, dict) for d in raw_dbs):
        raise ConfigError("databases: expected [[databases]] tables")
    databases = [_database(raw, i, members) for i, raw in enumerate(raw_dbs)]
    if len({d.name for d in databases}) != len(databases):
        raise ConfigError("databases: names must be unique")
    return Plan(name, settings, root, hosts, members, databases, source, spares)


def load_plan(path: str | Path) -> Plan:
    data, resolved = read_toml(path, "build plan")
    return parse_plan(data, resolved.parent, resolved)
