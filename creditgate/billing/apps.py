from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "creditgate.billing"
    label = "billing"
    verbose_name = "Buying credits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.conf import settings

        from creditgate.billing import receivers, services, tasks  # noqa: F401 - connects the receivers, registers the tasks
        from creditgate.core import runtime

        # Without a broker there is no beat: the in-process sweeper hands owed emails over again too.
        runtime.sweep_register(services.RETRY_LOW_BALANCE_EMAILS,
                               every=lambda: settings.CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS)

        from creditgate.billing import selectors
        from creditgate.core import reconciliation

        reconciliation.check_register("payments", selectors.payments_audit)
