import sys

from django.core.management.base import BaseCommand

from creditgate.core import reconciliation


class Command(BaseCommand):
    help = ("The reconciliation audit. The ledger against itself: stored counters (and shortfalls) = ledger sums, "
            "holds consistent, nothing negative. The jobs against the ledger: every final job charged exactly what "
            "it delivered at the rates it was held at, no final job with an active hold, no active hold "
            "without an unfinished job, no lapsed lease or owed hand-off left behind by the sweep. "
            "Exit 1 with a report on any break.")

    def handle(self, *args, **options):
        problems = reconciliation.reconciliation_audit()
        if not problems:
            self.stdout.write("Ledger OK: every account's counters match its ledger and holds, and every job "
                              "was charged exactly for what it delivered.")
            return
        self.stdout.write(f"Ledger check FAILED: {len(problems)} problem(s).")
        for problem in problems:
            self.stdout.write(f"  - {problem}")
        sys.exit(1)
