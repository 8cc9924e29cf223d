from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "creditgate.credits"
    label = "credits"
    verbose_name = "Credits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from creditgate.core import reconciliation
        from creditgate.credits import selectors, signals  # noqa: F401 - connects the receivers

        reconciliation.check_register("ledger", selectors.ledger_check)
