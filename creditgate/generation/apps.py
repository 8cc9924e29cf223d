from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "creditgate.generation"
    label = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_started

        from creditgate.generation import dispatch, tasks  # noqa: F401 - registers the tasks the runners look up

        # In-process mode has no Celery beat: the first request a process serves starts its
        # sweeper, which also recovers what a previous process left behind.
        request_started.connect(dispatch.inprocess_start, dispatch_uid="creditgate-inprocess-start")
