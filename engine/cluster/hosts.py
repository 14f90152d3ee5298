"""What the cluster launcher does on the hosts themselves, as an administrator would there:
certificates, agent configurations, starting and finding processes, copying database files.
Everything else goes through the agents (engine/cluster/build.py).

Layout under the plan's data_root:
    certs/ca.pem, ca-key.pem            the throwaway CA (made at run time, never committed)
    certs/<instance>.pem, -key.pem      each member's and spare's certificate (CN = its name)
    certs/agent-<host>.pem, -key.pem    each agent's
    certs/cluster-launcher.pem, -key.pem  the launcher's client identity
    certs/portal.pem, -key.pem          the portal's client identity (PORTAL_AGENT_TLS_*);
                                        these two are the DNs the agents admit
    <host>/agent.toml, agent.log        each host's agent
    <host>/<instance>/                  each instance's (member's or spare's) data directory
                                        and instance.log
    cluster-state.json                  the processes started (what `cluster down` stops)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from engine.client.agent import AgentClient, AgentConnectionError, AgentError
from engine.cluster.launcher import is_running, port_open, spawn
from engine.cluster.plan import LOOPBACK, Plan, PlanMember, PlanSpare
from engine.cluster.watch import BuildError
from engine.wire.tls import make_ca, make_cert

LAUNCHER_CN = "cluster-launcher"
PORTAL_CN = "portal"
ORG = "Mirror Portal"
# The clients every agent admits: the launcher, which builds the mirror, and the portal, which
# manages it afterwards (members/agents.py presents the portal certificate).
CLIENT_DNS = [f"CN={cn},O={ORG}" for cn in (LAUNCHER_CN, PORTAL_CN)]
CERT_DAYS = 30
START_TIMEOUT = 30.0


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def make_pki(plan: Plan) -> dict:
    """The CA and every certificate; returns the two client identities, each as the paths of
    its certificate, key and CA: "client" (the launcher's own) and "portal"."""
    certs = plan.certs
    ca = make_ca(certs, name=f"{plan.mirror} throwaway CA")
    for i in plan.instances:
        make_cert(ca, certs, i.name, org=ORG, days=CERT_DAYS)
    # the members serve and connect; the others do one of the two only, so none of them can
    # ask to be a member of the mirror (docs/hardening.md, Membership)
    for h in plan.hosts:
        make_cert(ca, certs, f"agent-{h.name}", org=ORG, days=CERT_DAYS, usage="server")
    me = make_cert(ca, certs, LAUNCHER_CN, org=ORG, days=CERT_DAYS, usage="client")
    portal = make_cert(ca, certs, PORTAL_CN, org=ORG, days=CERT_DAYS, usage="client")
    return {
        who: {"cert": str(paths.cert), "key": str(paths.key), "ca": str(ca.cert_path)}
        for who, paths in (("client", me), ("portal", portal))
    }


def member_tls(plan: Plan, instance: PlanMember | PlanSpare) -> tuple[Path, Path, Path]:
    c = plan.certs
    return c / f"{instance.name}.pem", c / f"{instance.name}-key.pem", c / "ca.pem"


def write_agent_config(plan: Plan, host) -> Path:
    c = plan.certs
    lines = [
        f"# agent of host {host.name}, written by `python -m engine cluster build`",
        "[agent]",
        f'listen = "{LOOPBACK}:{host.agent_port}"',
        "",
        "[agent.tls]",
        f"cert = {_toml(c / f'agent-{host.name}.pem')}",
        f"key = {_toml(c / f'agent-{host.name}-key.pem')}",
        f"ca = {_toml(c / 'ca.pem')}",
        f"allowed_dns = {_toml(CLIENT_DNS)}",
    ]
    for name in host.instances:
        i = plan.instance(name)
        lines += [
            "",
            "[[instances]]",
            f"name = {_toml(i.name)}",
            f"superserver = {_toml(i.superserver)}",
            f"data_dir = {_toml(plan.data_dir(i))}",
        ]
        if isinstance(i, PlanMember):
            # a spare names no mirror: it has none yet, and the one it joins is not this plan's
            lines.append(f"mirror = {_toml(plan.mirror)}")
        lines.append(f"cert = {_toml(c / f'{i.name}.pem')}")
    path = plan.host_dir(host) / "agent.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def check_fresh(plan: Plan) -> None:
    if plan.state_path.exists():
        old = json.loads(plan.state_path.read_text())
        if any(is_running(e) for e in old.get("processes", [])):
            raise BuildError(
                f"mirror {plan.mirror} is running (state file {plan.state_path}); "
                "run 'cluster down' first"
            )
    used = [d for d in map(plan.data_dir, plan.instances) if (d / "node.json").exists()]
    if used:
        raise BuildError(
            f"{used[0]} holds an instance from an earlier build; remove {plan.root} to build afresh"
        )
    # a spare's private port too: the build does not bind it, but its mirror will
    busy = [str(p) for p in plan.ports if port_open(LOOPBACK, p)]
    if busy:
        raise BuildError(f"ports already in use on {LOOPBACK}: {', '.join(busy)}")


def read_state(plan: Plan) -> dict | None:
    try:
        return json.loads(plan.state_path.read_text())
    except FileNotFoundError:
        return None


def mark_built(plan: Plan) -> None:
    """Record in the state file that the whole plan was built (a failed build leaves
    processes running but an unfinished mirror; build_running() tells them apart)."""
    state = read_state(plan)
    state["built"] = True
    plan.state_path.write_text(json.dumps(state, indent=2))


def build_running(plan: Plan) -> bool:
    """Is a finished build of this plan up: the plan's instances (no more, no fewer) and its
    agents those it started, every one still running, and every agent answering the launcher
    over mutual TLS?"""
    state = read_state(plan)
    if not state or not state.get("built"):
        return False
    if not all(is_running(e) for e in state["processes"]):
        return False
    started = {e["name"] for e in state["processes"] if e["kind"] == "instance"}
    if started != {i.name for i in plan.instances}:
        return False  # the plan changed since (a spare added, say)
    ident = state["client"]
    for h in plan.hosts:
        if state["agents"].get(h.name) != h.url:
            return False  # the plan changed since
        try:
            with AgentClient(
                h.url, cert=ident["cert"], key=ident["key"], ca=ident["ca"], timeout=5.0
            ) as agent:
                agent.health()
        except (AgentError, AgentConnectionError):
            return False
    return True


def clear_build(plan: Plan) -> list[Path]:
    """Remove what an earlier build left under the data root (certificates, each host's
    directory with its data, the state file), so that the plan can be built afresh. Only
    those paths: the data root may hold other things. Refused while a process runs."""
    state = read_state(plan) or {}
    if any(is_running(e) for e in state.get("processes", [])):
        raise BuildError(f"mirror {plan.mirror} is running; run 'cluster down' first")
    removed = []
    for path in (plan.certs, *map(plan.host_dir, plan.hosts), plan.state_path):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def start_processes(plan: Plan, identities: dict) -> list[dict]:
    """Every instance (the members' and the spares', none a member yet) and every agent; the
    state file lists them, with the agents' addresses and the client identities they admit
    (make_pki)."""
    entries = []
    for i in plan.instances:
        data_dir = plan.data_dir(i)
        args = ["instance", "--data-dir", str(data_dir), "--name", i.name]
        proc = spawn([*args, "--superserver", i.superserver], data_dir / "instance.log")
        entries.append(
            {
                "kind": "instance",
                "name": i.name,
                "pid": proc.pid,
                "match": str(data_dir),
                "log": str(data_dir / "instance.log"),
            }
        )
    for h in plan.hosts:
        config = write_agent_config(plan, h)
        log = plan.host_dir(h) / "agent.log"
        proc = spawn(["agent", "--config", str(config)], log)
        entries.append(
            {
                "kind": "agent",
                "name": h.name,
                "pid": proc.pid,
                "match": str(config),
                "log": str(log),
            }
        )
    state = {
        "mirror": plan.mirror,
        "plan": str(plan.source),
        "agents": {h.name: h.url for h in plan.hosts},
        "client": identities["client"],
        "portal": identities["portal"],
        "processes": entries,
    }
    plan.state_path.write_text(json.dumps(state, indent=2))
    return entries


def wait_started(plan: Plan, entries: list[dict], agents: dict[str, AgentClient]) -> None:
    """Every instance answering on its superserver and every agent on mutual TLS."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = {(e["kind"], e["name"]): e for e in entries}
    while waiting:
        for key, e in list(waiting.items()):
            if not is_running(e):
                raise BuildError(f"{e['kind']} {e['name']} exited; see {e['log']}")
            if e["kind"] == "instance":
                ready = port_open(LOOPBACK, plan.instance(e["name"]).superserver_port)
            else:
                try:
                    ready = bool(agents[e["name"]].health())
                except AgentConnectionError:
                    ready = False
            if ready:
                del waiting[key]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(f"{kind} {name}" for kind, name in waiting)
            raise BuildError(f"not answering after {START_TIMEOUT:g} s: {names}")
        if waiting:
            time.sleep(0.05)  # processes starting: nothing to subscribe to yet


def copy_database_files(src: Path, dst: Path) -> None:
    """Copy a dismounted database's directory (its data file is sparse: holes stay holes;
    LMDB's lock file is the running process's and is not copied)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "lock.mdb" and f.is_file():
            _sparse_copy(f, dst / f.name)


def _sparse_copy(src: Path, dst: Path) -> None:
    size = src.stat().st_size
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError:  # no data after offset
                break
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            left = end - start
            while left:
                chunk = fin.read(min(left, 1 << 20))
                fout.write(chunk)
                left -= len(chunk)
            offset = end
        fout.truncate(size)
        fout.flush()
        os.fsync(fout.fileno())
