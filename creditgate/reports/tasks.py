"""Celery tasks: call a service."""

from celery import shared_task

from creditgate.reports import services

ROLL_UP_USAGE = "creditgate.reports.tasks.roll_up_usage"


@shared_task(name=ROLL_UP_USAGE, ignore_result=True)
def roll_up_usage() -> int:
    return services.usage_rollups_refresh()
