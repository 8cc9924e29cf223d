"""`manage.py roll_up_usage [--all] [--clear]`: roll up closed days for the usage report (Celery
beat runs it hourly); --all until none is left (a first backfill), --clear to start over."""

from django.core.management.base import BaseCommand

from creditgate.reports import services


class Command(BaseCommand):
    help = "Roll up the closed days (and weeks) of the usage and margin report."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Repeat until every closed day is rolled up.")
        parser.add_argument("--clear", action="store_true", help="Delete every rollup first.")

    def handle(self, *args, all: bool, clear: bool, **options):
        if clear:
            self.stdout.write(f"Cleared {services.usage_rollups_clear()} rolled-up periods.")
        total = 0
        while True:
            done = services.usage_rollups_refresh()
            total += done
            if not (all and done):
                break
        self.stdout.write(f"Rolled up {total} day(s).")
