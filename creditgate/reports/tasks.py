"""Celery tasks: call a service."""

from celery import shared_task

from creditgate.reports import services


@shared_task(name="creditgate.reports.tasks.roll_up_usage", ignore_result=True)
def roll_up_usage() -> int:
    return services.usage_rollups_refresh()
