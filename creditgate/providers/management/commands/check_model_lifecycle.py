import sys

from django.core.management.base import BaseCommand

from creditgate.providers.services import model_lifecycle_check


class Command(BaseCommand):
    help = ("Ask each provider which of the catalog's models it still offers; flag models gone or announced "
            "for retirement (shown in the admin) and warn about tiers about to lose their last model. "
            "Exit status 1 when a tier (or text) is at risk, 2 when a provider could not be asked, else 0. "
            "Changes nothing about which model serves.")

    def handle(self, *args, **options):
        report = model_lifecycle_check()
        for line in report.lines():
            self.stdout.write(line)
        if report.exit_code:
            sys.exit(report.exit_code)
