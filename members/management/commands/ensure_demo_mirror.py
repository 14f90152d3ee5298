from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from engine.cluster.plan import load_plan
from engine.member.config import ConfigError
from members.demo_mirror import PlanMismatch, register_plan

DEFAULT_PLAN = settings.BASE_DIR / "examples" / "mirror.toml"


class Command(BaseCommand):
    help = (
        "Register the mirror a build plan describes (`python -m engine cluster build -f PLAN`) "
        "in the portal: mirror, hosts, members, databases. Idempotent; make run calls this."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--plan", default=str(DEFAULT_PLAN), help=f"build plan (default {DEFAULT_PLAN})"
        )

    def handle(self, *args, plan, **options):
        try:
            built = load_plan(plan)
            done = register_plan(built)
        except (ConfigError, PlanMismatch) as exc:
            raise CommandError(f"demo mirror not registered: {exc}") from None
        for line in done.lines:
            self.stdout.write(f"  {line}")
        counts = (
            f"{len(built.hosts)} hosts, {len(built.members)} members, "
            f"{len(built.databases)} databases"
        )
        if done.changed:
            summary = f"{done.created} created, {done.updated} updated"
            self.stdout.write(
                self.style.SUCCESS(f"Demo mirror {built.mirror} registered ({counts}): {summary}")
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo mirror {built.mirror} already registered ({counts}); nothing changed"
                )
            )
