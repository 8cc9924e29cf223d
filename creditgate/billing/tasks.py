"""Celery tasks: load by id, call a service. The in-process runner (core.runtime) runs the same tasks."""

import contextlib

from celery import shared_task

from creditgate.billing import services
from creditgate.core.errors import EmailNotSent


@shared_task(name=services.SEND_LOW_BALANCE_EMAIL, ignore_result=True, autoretry_for=(EmailNotSent,),
             retry_backoff=5, retry_backoff_max=600, max_retries=6)
def send_low_balance_email(email_id: int) -> None:
    services.low_balance_email_send(email_id=email_id)


@shared_task(name=services.RETRY_LOW_BALANCE_EMAIL, ignore_result=True)
def retry_low_balance_email(email_id: int) -> None:
    # A failure is recorded on the row (attempts, last_error); the periodic retry comes back to it.
    with contextlib.suppress(EmailNotSent):
        services.low_balance_email_send(email_id=email_id)


@shared_task(name=services.RETRY_LOW_BALANCE_EMAILS, ignore_result=True)
def retry_low_balance_emails() -> int:
    return services.low_balance_emails_retry()
