"""Register `make run`'s demo mirror the way a user adopts a mirror built elsewhere: register
its hosts' agents, check and discover each, then import the mirror from one of its members
(members.actions.import_mirror). Idempotent: a second run refreshes what is registered.
The build's spare instances (examples/mirror.toml), in no mirror, are listed by the host checks
like any other instance; this names them, as what a new mirror can be made of."""

import contextlib
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from members import actions, services
from members.models import Host, Instance, Mirror
from tasks.models import Job
from tasks.services import run_here

DEFAULT_STATE = settings.BASE_DIR / "var" / "mirror" / "cluster-state.json"


class Command(BaseCommand):
    help = (
        "Register the demo mirror `python -m engine cluster build` started: its hosts, then the "
        "mirror imported through their agents. make run calls this."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--state",
            default=str(DEFAULT_STATE),
            help=f"the build's state file (default {DEFAULT_STATE})",
        )

    def handle(self, *args, state, **options):
        try:
            built = json.loads(Path(state).read_text())
            agents, mirror = built["agents"], built["mirror"]
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"no demo mirror build to register ({state}): {exc}") from None
        if not settings.PORTAL_AGENT_TLS:
            raise CommandError("the portal has no TLS identity (PORTAL_AGENT_TLS_CERT/KEY/CA)")
        hosts = [self.ensure_host(name, url) for name, url in agents.items()]
        for host in hosts:
            self.run(actions.check_host(None, host, send=False))
        source = next(
            (i for h in hosts for i in h.instances.filter(mirror_name=mirror.upper())), None
        )
        if source is None:
            raise CommandError(f"no agent reports an instance of mirror {mirror}")
        self.run(actions.import_mirror(None, source.host, source.name, send=False))
        self.stdout.write(self.style.SUCCESS(f"Demo mirror {mirror} imported from {source}"))
        self.forget_vanished(hosts)
        spares = Instance.objects.filter(host__in=hosts, mirror_name="").select_related("host")
        if spares:
            names = ", ".join(map(str, spares))
            self.stdout.write(f"Instances in no mirror yet, for a new one: {names}")

    def forget_vanished(self, hosts: list[Host]) -> None:
        """A mirror made earlier on the demo's instances (with the wizard, say) is gone once the
        demo is built afresh: no instance of its members reports it any more. The members are
        the truth, so the portal forgets it rather than keep rows no member backs."""
        reported = set(
            Instance.objects.filter(host__in=hosts).values_list("host_id", "name", "mirror_name")
        )
        for mirror in Mirror.objects.filter(members__host__in=hosts).distinct():
            members = list(mirror.members.all())
            if any(m.host_id not in {h.pk for h in hosts} for m in members):
                continue  # a member elsewhere may still hold it
            if any((m.host_id, m.name, mirror.name) in reported for m in members):
                continue
            services.forget_mirror(None, mirror, reason="no demo instance reports it any more")
            self.stdout.write(f"Forgot mirror {mirror.name}: no demo instance reports it any more")

    def ensure_host(self, name: str, url: str) -> Host:
        parts = urlsplit(url)
        wanted = {"address": parts.hostname, "agent_port": parts.port}
        try:
            host = Host.objects.filter(name=name).first()
            if host is None:
                return services.register_host(None, name=name, **wanted)
            changes = {k: v for k, v in wanted.items() if getattr(host, k) != v}
            return services.update_host(None, host, **changes) if changes else host
        except ValidationError as exc:
            raise CommandError(f"host {name}: {' '.join(exc.messages)}") from None

    def run(self, job: Job) -> None:
        with _task_outcomes_unlogged():
            job = run_here(job)
        for line in job.log:
            self.stdout.write(f"  {line['message']}")
        if job.state != Job.SUCCEEDED:
            raise CommandError(f"{job.kind} failed: {job.error}")


@contextlib.contextmanager
def _task_outcomes_unlogged():
    """Celery logs each task's outcome at INFO ("Task tasks.tasks.run_job[...] succeeded in
    0.03s: None"); here the job's own log lines, printed next, say more. A failed task is
    logged at ERROR and still shows."""
    trace = logging.getLogger("celery.app.trace")
    level = trace.level
    trace.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        trace.setLevel(level)
