import logging

from django.apps import AppConfig

logger = logging.getLogger("creditgate.providers")


class ProvidersConfig(AppConfig):
    name = "creditgate.providers"
    label = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Loudly, once per process as it starts (web, worker, beat, a command): generation emulated in
        # production is an operator's deliberate choice, never a quiet default. No query here (the
        # database is not for app loading); /ready/ and the admin's Providers page name the providers.
        from creditgate.core import views as core_views
        from creditgate.providers.registry import sandbox_production_warning, sandboxed_in_production

        core_views.sandboxed_set(sandboxed_in_production)  # /ready/ names them

        warning = sandbox_production_warning()
        if warning:
            logger.warning(warning)
