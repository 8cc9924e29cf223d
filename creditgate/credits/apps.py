from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "creditgate.credits"
    label = "credits"
    verbose_name = "Credits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from creditgate.credits import signals  # noqa: F401 - connects the receivers
