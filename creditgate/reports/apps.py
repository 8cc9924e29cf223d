from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "creditgate.reports"
    label = "reports"
    verbose_name = "Reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from creditgate.core import runtime
        from creditgate.reports import tasks

        # Without a broker there is no beat: the in-process sweeper rolls up closed days too, at
        # beat's pace (each run bounded by usage_rollups_refresh's max_days).
        runtime.sweep_register(tasks.ROLL_UP_USAGE, every=lambda: settings.CREDITGATE_USAGE_ROLLUP_SECONDS)
