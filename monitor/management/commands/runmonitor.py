"""manage.py runmonitor: the collector as a process of its own (docs/monitor.md). Start several
for availability: one holds the lease and collects, the others wait to take over."""

import signal

from django.core.management.base import BaseCommand

from monitor.collector import Collector


class Command(BaseCommand):
    help = "Follow every agent's status stream; store and publish what changes."

    def add_arguments(self, parser):
        parser.add_argument("--name", help="how this collector names itself in the lease")

    def handle(self, *args, **options):
        collector = Collector(holder=options["name"])
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: collector.stop())
        collector.run()
