"""Celery tasks: load by id, call a service. A task that dies releases its hold."""

from celery import Task, shared_task

from creditgate.generation import services


class _ReleaseOnFailure(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = kwargs.get("job_id") or (args[0] if args else None)
        if job_id:
            services.job_fail(job_id=job_id, code="internal_error", message="Something went wrong on our side.")


@shared_task(name="creditgate.generation.tasks.run_job", base=_ReleaseOnFailure, acks_late=True)
def run_job(job_id: str) -> None:
    services.job_run(job_id=job_id)


@shared_task(name="creditgate.generation.tasks.reap_stale_jobs")
def reap_stale_jobs() -> int:
    return services.jobs_reap_stale().jobs_finished
