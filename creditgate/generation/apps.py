from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "creditgate.generation"
    label = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from creditgate.core import runtime
        from creditgate.generation import (
            services,
            tasks,  # registers the tasks the runners look up
        )

        # The in-process runner awaits the run itself on its loop; Celery runs the task.
        runtime.job_runner_set(tasks.RUN_JOB, lambda job_id: services.job_arun(job_id=job_id))
        runtime.sweep_register(tasks.SWEEP_JOBS)

        from creditgate.core import reconciliation
        from creditgate.generation import selectors

        reconciliation.check_register("jobs", lambda: selectors.jobs_audit(full=True))

        from creditgate.generation.apis import job_public_data
        from creditgate.webhooks import services as webhook_services

        # A job's webhook payload is its public representation: webhooks deliver it, generation says what it is.
        webhook_services.job_representation_set(job_public_data)
