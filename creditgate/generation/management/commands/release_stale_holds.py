from django.core.management.base import BaseCommand

from creditgate.generation import services


class Command(BaseCommand):
    help = ("The sweep (recovery): take over running jobs whose lease lapsed (queue them again, or settle what "
            "they delivered), settle jobs that waited in the queue too long, hand owed jobs to the queue, expire "
            "holds that no job owns. Celery beat runs it every CREDITGATE_JOB_SWEEP_SECONDS; in-process mode runs "
            "it from a thread.")

    def handle(self, *args, **options):
        swept = services.jobs_sweep()
        self.stdout.write(
            f"Queued again {swept.requeued} job(s) whose worker was lost; settled {swept.settled} such job(s) "
            f"and {swept.expired} that waited too long; handed {swept.dispatched} to the queue; expired "
            f"{swept.holds_expired} stale hold(s); audit: {swept.audit_problems} problem(s).")
