from celery import shared_task

from creditgate.credits import services


@shared_task(name="creditgate.credits.tasks.release_stale_holds")
def release_stale_holds() -> int:
    return services.holds_release_stale()
