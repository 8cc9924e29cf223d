from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "creditgate.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from creditgate.core import runtime
        from creditgate.webhooks import services, tasks  # noqa: F401 - registers the tasks the runners look up by name

        runtime.sweep_register(services.SWEEP_DELIVERIES)
