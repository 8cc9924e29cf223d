from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "creditgate.billing"
    label = "billing"
    verbose_name = "Buying credits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from creditgate.billing import receivers, tasks  # noqa: F401 - connects the receivers, registers the tasks
