"""Celery tasks: load by id, call a service. The in-process runner runs the same tasks (but a
job: it awaits services.job_arun on its loop).

run_job hands the job to the worker process's own loop (core.runtime.run_here), where it waits on
its provider as a coroutine beside hundreds of others, and returns: a worker process holds up to
CREDITGATE_INPROCESS_JOBS_IN_FLIGHT jobs, not one. When the loop is full the task blocks until a
slot frees, so the next messages stay in the broker, never in the worker's memory. The message is
acknowledged once the job is on the loop; from then on the job's lease is what recovers it if the
worker dies (the sweep takes over a lapsed lease, and a job not claimed yet is handed over again
by the outbox). A second run of a job resumes it rather than repeating work. So a task never
releases a hold on failure: the job's own settlement and recovery own its money.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from creditgate.core import reconciliation, runtime
from creditgate.generation import services

RUN_JOB = "creditgate.generation.tasks.run_job"
SWEEP_JOBS = "creditgate.generation.tasks.sweep_jobs"


@shared_task(name=RUN_JOB, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, max_retries=5)
def run_job(self, job_id: str) -> None:
    # On a worker: onto its loop. Run here, in this thread, only when called eagerly (a test) or
    # with no coroutine registered. A live lease held elsewhere needs no retry: if that run's
    # process died, the sweep takes the job over once the lease lapses.
    if self.request.is_eager or not runtime.run_here(job_id, block=True):
        services.job_run(job_id=job_id)


@shared_task(name=SWEEP_JOBS, ignore_result=True)
def sweep_jobs() -> dict:
    return services.jobs_sweep().as_dict()


@shared_task(name="creditgate.generation.tasks.audit_ledger", ignore_result=True)
def audit_ledger() -> int:
    """The full reconciliation audit (what `manage.py check_ledger` prints); returns and logs the
    number of problems."""
    return len(reconciliation.reconciliation_audit(log=True))
