"""The Celery app. Used only when REDIS_URL is set; without it jobs run in-process."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")

app = Celery("creditgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
