"""gunicorn's settings in production: `gunicorn -c python:creditgate.gunicorn_conf creditgate.wsgi`
(the Procfile's web process). Bind address and worker count stay gunicorn's own knobs: `$PORT`
(binds 0.0.0.0:$PORT) or `--bind`, and `$WEB_CONCURRENCY` or `-w`.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")

from django.conf import settings  # needs DJANGO_SETTINGS_MODULE

# gunicorn's own lines (start, worker boot, timeouts) in the service's format, JSON in production.
# Requests are logged once, by django-structlog, with their request id: no separate access log.
logconfig_dict = {
    **settings.LOGGING,
    "loggers": {**settings.LOGGING["loggers"],
                "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


def child_exit(server, worker):
    """prometheus_client's multiprocess mode: a dead worker's live gauges stop counting (its
    counters and histograms stay in the totals, as they should)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
