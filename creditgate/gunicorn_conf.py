"""gunicorn's settings in production: `gunicorn -c python:creditgate.gunicorn_conf creditgate.asgi`
(the Procfile's web process): gunicorn manages uvicorn worker processes that serve the ASGI app.
Bind address and worker count stay gunicorn's own knobs: `$PORT` (binds 0.0.0.0:$PORT) or
`--bind`, and `$WEB_CONCURRENCY` or `-w`.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")

from django.conf import settings  # needs DJANGO_SETTINGS_MODULE

# uvicorn workers (creditgate/server.py says why, and what uvicorn bounds): each process runs one
# event loop; a request waiting for its job (`Prefer: wait=N`, `?wait=N`, generation/waiting.py)
# is a suspended coroutine there, holding no thread, no database connection and no CPU, so a
# process holds up to CREDITGATE_WEB_LIMIT_CONCURRENCY requests at once (default 1000) and answers
# 503 past it. Ordinary (sync) views run in threads that Django's ASGI handler starts per request.
# gunicorn's limit_request_line/_field_size/_fields are not set: they configure gunicorn's own HTTP
# parser, which uvicorn workers do not use; uvicorn's h11 bounds the request head instead.
worker_class = "creditgate.server.Worker"

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
