from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "creditgate.audit"
    label = "audit"
    verbose_name = "Configuration history"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from creditgate.audit import signals  # noqa: F401
