"""Celery tasks of the providers app: thin interfaces over its services."""

import logging

from celery import shared_task

from creditgate.providers.services import model_lifecycle_check

logger = logging.getLogger("creditgate.providers")


@shared_task(name="creditgate.providers.tasks.check_model_lifecycle")
def check_model_lifecycle() -> int:
    """Celery beat runs it daily. Its findings are on the models (admin); a tier at risk is logged."""
    report = model_lifecycle_check()
    for risk in report.risks:
        logger.warning("model lifecycle: %s", risk.message)
    for provider, why in report.unreachable.items():
        logger.warning("model lifecycle: %s could not be checked: %s", provider, why)
    return report.exit_code
