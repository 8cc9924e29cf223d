from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "creditgate.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import setup_logging

        from creditgate.core.logging import celery_setup_logging

        # Connected here (django.setup() runs in a worker before Celery sets up its logging), so a
        # worker or beat keeps Django's LOGGING, JSON lines included, instead of Celery's own.
        setup_logging.connect(celery_setup_logging, weak=False)

        from django.core.signals import request_started

        from creditgate.core import runtime

        # In-process mode has no Celery beat: the first request a process serves starts its
        # sweeper, which also recovers what a previous process left behind.
        request_started.connect(runtime.inprocess_start, dispatch_uid="creditgate-inprocess-start")
