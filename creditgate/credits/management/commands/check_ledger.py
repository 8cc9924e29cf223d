import sys

from django.core.management.base import BaseCommand

from creditgate.credits import selectors


class Command(BaseCommand):
    help = "Verify every account: stored counters = ledger sums, holds consistent, nothing negative."

    def handle(self, *args, **options):
        problems = selectors.ledger_check()
        if not problems:
            self.stdout.write("Ledger OK: every account's counters match its ledger and holds.")
            return
        self.stdout.write(f"Ledger check FAILED: {len(problems)} problem(s).")
        for problem in problems:
            self.stdout.write(f"  - {problem}")
        sys.exit(1)
