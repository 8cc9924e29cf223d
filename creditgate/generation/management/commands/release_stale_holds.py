from django.core.management.base import BaseCommand

from creditgate.generation import services


class Command(BaseCommand):
    help = ("The reaper: expire holds past their expiry (their credits go back) and finish the jobs they "
            "belonged to. Celery beat runs it every minute; in-process mode runs it from a thread.")

    def handle(self, *args, **options):
        reaped = services.jobs_reap_stale()
        self.stdout.write(f"Expired {reaped.holds_expired} stale hold(s); finished {reaped.jobs_finished} job(s).")
