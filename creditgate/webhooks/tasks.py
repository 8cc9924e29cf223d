"""Celery tasks: load by id, call a service. The in-process runner runs the same tasks by name."""

from celery import shared_task

from creditgate.webhooks import delivery, services


@shared_task(name=services.DELIVER, acks_late=True, ignore_result=True)
def deliver(delivery_id: str) -> str | None:
    return delivery.delivery_attempt(delivery_id=delivery_id)


@shared_task(name=services.SWEEP_DELIVERIES, ignore_result=True)
def sweep_deliveries() -> int:
    return services.deliveries_sweep()
