"""The Celery app. Used only when REDIS_URL is set; without it jobs run in-process."""

import os

from celery import Celery
from celery.signals import task_prerun
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")

app = Celery("creditgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A worker binds the log context (request id, ...) that the enqueuing request put in a task's headers.
app.steps["worker"].add(DjangoStructLogInitStep)


@task_prerun.connect
def _database_connections_as_at_a_request(**kwargs) -> None:
    """A worker treats each task as Django treats each request: a connection that broke (an
    error it could not recover from) or outlived CONN_MAX_AGE is closed, the others are reused.
    With PostgreSQL's pool (settings: CONN_MAX_AGE is 0) each is closed, which gives it back to
    the process's pool: the next task takes it again without reconnecting.
    Celery's own Django fix-up would close every connection before and after every task, so each
    job would reconnect (and re-prepare the ledger's statements); CELERY_DB_REUSE_MAX turns that
    off (settings). Forked pool processes still close what they inherited (Celery's fix-up)."""
    from django.db import close_old_connections

    close_old_connections()
