"""Build a whole mirror through the host agents, the way the portal will.

    python -m engine cluster build -f examples/mirror.toml
    python -m engine cluster down -f examples/mirror.toml

From a build plan (engine/cluster/plan.py) the launcher
  1. makes a throwaway CA and certificates: one per member and spare, one per agent, one for
     itself (CN=cluster-launcher) and one for the portal (CN=portal), the two clients the
     agents admit;
  2. writes each host's agent configuration (mutual TLS) and starts every instance as a
     non-member (`python -m engine instance --data-dir ...`) and every agent, each in its
     own session, logging beside its data, and records them in a state file for `down`
     (files and layout: engine/cluster/hosts.py);
  3. then does everything else through the agents (engine/client/agent.py): sets up TLS on
     every instance, creates the mirror on the first failover member, joins the others,
     authorizes them on the primary, waits for Backup / Active and Connected, adds the
     databases (created; added with its data and downloaded; added, restored from a copy of
     the primary's files, activated and caught up), and prints a status summary.
Spares (engine/cluster/plan.py) go through steps 1 and 2 and get their TLS files in step 3,
whatever the plan's `tls` (the mirror they join later is not this one), but join nothing: they
stay running, in no mirror, ready for a mirror made in the portal.
Only two things touch files directly, as an administrator would on the host: the existing
data of the databases added to the mirror, and the copy of a dismounted database's files
(the restore).  Waiting is done on the agents' status streams, not by sleeping.
"""

from __future__ import annotations

import json
import sys
import time

from engine.client.agent import AgentClient, AgentConnectionError, AgentError
from engine.client.app import Client, EngineError
from engine.cluster.hosts import (
    check_fresh,
    copy_database_files,
    make_pki,
    mark_built,
    member_tls,
    start_processes,
    wait_started,
)
from engine.cluster.launcher import stop_pids
from engine.cluster.plan import Plan, PlanDatabase, PlanMember, PlanSpare, load_plan
from engine.cluster.watch import BuildError, Watch
from engine.member.config import TYPE_LABELS
from engine.storage.store import Store
from engine.wire.admin_token import read_token
from engine.wire.tls import superserver_client_context

WAIT_TIMEOUT = 60.0
WRITE_BATCH = 500


class Builder:
    def __init__(
        self,
        plan: Plan,
        agents: dict[str, AgentClient],
        watch: Watch,
        started: float | None = None,
        out=print,
    ):
        self.plan = plan
        self.agents = agents
        self.watch = watch
        self.out = out
        self.started = time.monotonic() if started is None else started

    def step(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self.started:6.1f}s] {text}")

    def agent(self, instance: PlanMember | PlanSpare) -> AgentClient:
        return self.agents[instance.host]

    @property
    def others(self) -> list[PlanMember]:
        return [m for m in self.plan.members if m is not self.plan.primary]

    # -- members --------------------------------------------------------------------
    def set_up_tls(self) -> None:
        """The members' TLS files if the mirror requires TLS; the spares' always."""
        members = self.plan.members if self.plan.tls else []
        for i in [*members, *self.plan.spares]:
            out = self.agent(i).set_tls(i.name, *map(str, member_tls(self.plan, i)))
            spare = "" if isinstance(i, PlanMember) else " (a spare, joined to no mirror)"
            self.step(f"TLS set up on {i.name}{spare}: {out.get('dn')}")

    def create_mirror(self) -> None:
        p = self.plan.primary
        self.agent(p).create_mirror(p.name, self.plan.mirror, p.private, p.name, self.plan.settings)
        self.agent(p).wait_member(p.name, WAIT_TIMEOUT)
        self.watch.wait(
            lambda r: r.get(p.name, {}).get("status") == "Primary",
            WAIT_TIMEOUT,
            f"{p.name} to be Primary",
        )
        self.step(f"mirror {self.plan.mirror} created on {p.name}, now its primary")

    def join_others(self) -> None:
        p = self.plan.primary
        # each joining instance gets the mirror secret through its agent: a mirror without TLS
        # needs it, and a TLS mirror keeps working with it should TLS be turned off
        secret = self.agent(p).mirror_secret(p.name)
        for m in self.others:
            out = self.agent(m).join_mirror(
                m.name,
                self.plan.mirror,
                p.superserver,
                m.type,
                member=m.name,
                private=m.private,
                secret=secret,
            )
            self.agent(m).wait_member(m.name, WAIT_TIMEOUT)
            pending = " (pending authorization)" if out.get("pending") else ""
            self.step(f"{m.name} joined as {TYPE_LABELS[m.type]}{pending}")

    def authorize_others(self) -> None:
        p = self.plan.primary
        names = {m.name for m in self.others}
        if not names:
            return  # a mirror of one member: nobody to authorize

        def known(records):
            rows = records.get(p.name, {}).get("members") or []
            return names <= {r["member"] for r in rows} and rows

        rows = self.watch.wait(known, WAIT_TIMEOUT, f"{', '.join(sorted(names))} known to {p.name}")
        for row in rows:
            if row["member"] in names and not row.get("authorized"):
                self.agent(p).authorize_member(p.name, row["member"])
                self.step(f"{row['member']} authorized on {p.name}")

    def wait_connected(self) -> None:
        for m in self.others:
            want = "Backup" if m.type == "failover" else "Connected"

            def ready(records, m=m, want=want):
                rec = records.get(m.name, {})
                active = m.type != "failover" or rec.get("journal_transfer") == "Active"
                return rec.get("status") == want and active

            self.watch.wait(ready, WAIT_TIMEOUT, f"{m.name} to be {want}")
            extra = ", journal transfer Active" if m.type == "failover" else ""
            self.step(f"{m.name} is {want}{extra}")

    # -- databases ------------------------------------------------------------------
    def write(self, db: str, rows: range, label: str) -> None:
        """Records written on the primary through its superserver, as an application would."""
        ops = [("set", db, "Build", (label, i), f"{label} {i}") for i in rows]
        # the primary's admin token: a TLS instance requires authentication (app_auth.py); its
        # superserver speaks TLS, reached with the primary's own certificate (as the token)
        data_dir = self.plan.data_dir(self.plan.primary)
        token, ssl = read_token(data_dir), superserver_client_context(data_dir)
        with Client([self.plan.primary.superserver], timeout=30, admin_token=token, ssl=ssl) as c:
            for i in range(0, len(ops), WRITE_BATCH):
                c.pipeline(ops[i : i + WRITE_BATCH])

    def existing_data(self, db: PlanDatabase) -> None:
        """A local database on the primary with data of its own, then added to the mirror."""
        p = self.plan.primary
        self.agent(p).create_database(p.name, db.name, mirrored=False)
        store = Store.open(str(self.plan.data_dir(p) / "db" / db.name))
        try:
            for i in range(db.rows):
                store.set("Existing", (i,), f"existing {i}")
        finally:
            store.close()
        out = self.agent(p).add_database(p.name, db.name)
        self.step(
            f"{db.name}: local database with {db.rows} records added on {p.name}: {out['status']}"
        )

    def holders(self, db: PlanDatabase) -> list[PlanMember]:
        return [self.plan.member(n) for n in db.members if n != self.plan.primary.name]

    def on_member(self, m: PlanMember, call, *args):
        """A database operation on a member that may not have heard of the database from
        the primary yet: refused for that reason, it is asked again (capped)."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        delay = 0.05
        while True:
            try:
                return call(m.name, *args)
            except AgentError as exc:
                if "primary has no mirrored database" not in exc.message:
                    raise
                if time.monotonic() > deadline:
                    raise BuildError(f"{m.name} never learnt of {args[0]}: {exc.message}") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def create_database(self, db: PlanDatabase) -> None:
        p = self.plan.primary
        self.agent(p).create_database(p.name, db.name)
        self.step(f"{db.name}: created on {p.name}")
        for m in self.holders(db):
            out = self.on_member(m, self.agent(m).create_database, db.name)
            self.step(f"{db.name}: created on {m.name}: {_outcome(out)}")
        self.write(db.name, range(db.rows), "created")
        self.step(f"{db.name}: {db.rows} records written on {p.name}")

    def download_database(self, db: PlanDatabase) -> None:
        self.existing_data(db)
        self.write(db.name, range(db.rows), "added")
        for m in self.holders(db):
            out = self.on_member(m, self.agent(m).create_database, db.name)
            self.step(f"{db.name}: created on {m.name}: {_outcome(out)}")

    def restore_database(self, db: PlanDatabase) -> None:
        p = self.plan.primary
        self.existing_data(db)
        self.write(db.name, range(db.rows), "added")  # the primary's copy is past its addition
        self.agent(p).dismount(p.name, db.name)
        source = self.plan.data_dir(p) / "db" / db.name
        for m in self.holders(db):
            copy_database_files(source, self.plan.data_dir(m) / "db" / db.name)
        self.agent(p).mount(p.name, db.name)
        names = ", ".join(m.name for m in self.holders(db))
        self.step(f"{db.name}: dismounted on {p.name}, its files copied to {names}, mounted")
        self.write(db.name, range(db.rows), "after-copy")  # only the journal has these
        for m in self.holders(db):
            agent = self.agent(m)
            added = self.on_member(m, agent.add_database, db.name)["status"]
            activated = agent.activate(m.name, db.name)["status"]
            agent.catchup(m.name, db.name, wait=True)
            self.step(
                f"{db.name}: restored on {m.name}: {added} -> activated ({activated}) -> caught up"
            )

    def wait_databases(self) -> None:
        for db in self.plan.databases:
            for name in db.members:
                want = "Normal" if name == self.plan.primary.name else "Dejournaling"

                def ready(records, name=name, db=db.name, want=want):
                    rows = records.get(name, {}).get("databases") or []
                    return any(r["name"] == db and r["status"] == want for r in rows)

                self.watch.wait(ready, WAIT_TIMEOUT, f"{db.name} on {name} to be {want}")
        self.step("every database is Normal on the primary and Dejournaling elsewhere")

    def run(self) -> None:
        self.set_up_tls()
        self.create_mirror()
        self.join_others()
        if self.plan.tls:
            self.authorize_others()
        self.wait_connected()
        build = {
            "create": self.create_database,
            "download": self.download_database,
            "restore": self.restore_database,
        }
        for db in self.plan.databases:
            build[db.how](db)
        if self.plan.databases:
            self.wait_databases()


def _outcome(answer: dict) -> str:
    """An operation's answer in a few words: the database's status, or a catch-up started."""
    if "status" in answer:
        return answer["status"]
    return "catch-up started" if answer.get("started") else "already there"


def summary(plan: Plan, records: dict) -> list[str]:
    lines = [
        f"  {'member':<12} {'host':<10} {'type':<21} {'status':<14} "
        f"{'journal transfer':<18} dejournaling"
    ]
    for m in plan.members:
        r = records.get(m.name, {})
        lines.append(
            f"  {m.name:<12} {m.host:<10} {TYPE_LABELS[m.type]:<21} {r.get('status') or '?':<14} "
            f"{r.get('journal_transfer') or '?':<18} {r.get('dejournaling') or '?'}"
        )
    if plan.databases:
        lines.append("  " + f"{'database':<12}" + "".join(f" {m.name:<14}" for m in plan.members))
        for db in plan.databases:
            cells = []
            for m in plan.members:
                rows = {
                    r["name"]: r["status"] for r in records.get(m.name, {}).get("databases") or []
                }
                cells.append(f" {rows.get(db.name, '-'):<14}")
            lines.append(f"  {db.name:<12}" + "".join(cells))
    if plan.spares:
        lines.append(
            f"  {'spare':<12} {'host':<10} {'superserver':<21} {'private (kept free)':<21} "
            "state, mirror, certificate"
        )
        for s in plan.spares:
            r = records.get(s.name, {})
            mirror = f"in mirror {r['mirror']}" if r.get("mirror") else "in no mirror"
            cert = (r.get("certificate") or {}).get("subject_dn") or "no certificate"
            lines.append(
                f"  {s.name:<12} {s.host:<10} {s.superserver:<21} {s.private or '-':<21} "
                f"{r.get('state') or '?'}, {mirror}, {cert}"
            )
    return lines


def cluster_build(path: str) -> int:
    plan = load_plan(path)
    started = time.monotonic()
    entries: list[dict] = []
    try:
        check_fresh(plan)
        plan.root.mkdir(parents=True, exist_ok=True)
        identities = make_pki(plan)
        identity = identities["client"]
        agents = {
            h.name: AgentClient(
                h.url, cert=identity["cert"], key=identity["key"], ca=identity["ca"], timeout=30.0
            )
            for h in plan.hosts
        }
        entries = start_processes(plan, identities)
        wait_started(plan, entries, agents)
        names = ", ".join(s.name for s in plan.spares)
        spares = f"; spares among them: {names}" if names else ""
        print(
            f"[{time.monotonic() - started:6.1f}s] {len(plan.instances)} instances (not members "
            f"yet{spares}) and {len(plan.hosts)} agents answering; state file {plan.state_path}"
        )
        with Watch(agents) as watch:
            Builder(plan, agents, watch, started).run()
            records = watch.records()
        mark_built(plan)
    except (
        BuildError,
        AgentError,
        AgentConnectionError,
        EngineError,
        TimeoutError,
        OSError,
    ) as exc:
        print(f"build of mirror {plan.mirror} failed: {exc}", file=sys.stderr)
        if entries:
            print(
                f"the processes started are still running (logs under {plan.root}); "
                f"'cluster down -f {path}' stops them",
                file=sys.stderr,
            )
        return 1
    print(f"mirror {plan.mirror} built in {time.monotonic() - started:.1f} s")
    for line in summary(plan, records):
        print(line.rstrip())
    print("  agents: " + ", ".join(f"{h.name} {h.url}" for h in plan.hosts))
    print(f"  their clients: this launcher, certificate {identity['cert']}")
    portal = identities["portal"]
    print(
        f"                the portal: PORTAL_AGENT_TLS_CERT={portal['cert']} "
        f"PORTAL_AGENT_TLS_KEY={portal['key']} PORTAL_AGENT_TLS_CA={portal['ca']}"
    )
    return 0


def build_down(path: str) -> int:
    plan = load_plan(path)
    if not plan.state_path.exists():
        print(
            f"mirror {plan.mirror}: no state file {plan.state_path}; nothing to stop",
            file=sys.stderr,
        )
        return 1
    entries = json.loads(plan.state_path.read_text())["processes"]
    # the agents first, so none reports its instances going down
    stop_pids([e for e in entries if e["kind"] == "agent"])
    stop_pids([e for e in entries if e["kind"] == "instance"])
    plan.state_path.unlink()
    print(f"mirror {plan.mirror} is down ({len(entries)} processes stopped)")
    return 0
