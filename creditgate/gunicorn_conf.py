"""gunicorn's settings in production: `gunicorn -c python:creditgate.gunicorn_conf creditgate.wsgi`
(the Procfile's web process). Bind address and worker count stay gunicorn's own knobs: `$PORT`
(binds 0.0.0.0:$PORT) or `--bind`, and `$WEB_CONCURRENCY` or `-w`.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")

from django.conf import settings  # needs DJANGO_SETTINGS_MODULE

# Threads, not sync workers: a request that waits for its job (`Prefer: wait=N`, `?wait=N`, see
# generation/waiting.py) sleeps in its thread for up to 30 s holding no database connection and no
# CPU, so one worker process serves up to `threads` requests at once, waiting ones included
# (GUNICORN_THREADS, default 16; with WEB_CONCURRENCY=2 that is 32 requests at a time, e.g. 24
# waiting clients and 8 threads still free for everything else). A sync worker would be taken by
# each waiting request. gthread workers heartbeat from their main loop, so a long wait in a thread
# is not mistaken for a hung worker (gunicorn's `timeout`).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))

# Limits on what gunicorn reads before Django sees a request, set well above what a legitimate
# client sends: the longest request line of the API or the admin (a changelist's filters and
# search) is a few hundred bytes; the largest header is a browser's Cookie (ours: session, CSRF,
# and Django's messages cookie of up to 2 KB; a parent domain's cookies may come along, each up to
# 4 KB); a browser sends some 20 headers, a proxy adds a few. Beyond them gunicorn answers itself,
# with a short HTML page (README, Production): 414 for the line, 431 for a header or too many.
limit_request_line = 8190          # bytes; gunicorn's maximum short of "unlimited" (twice its default)
limit_request_field_size = 16384   # bytes of one header, name and value (twice gunicorn's default)
limit_request_fields = 100         # headers per request (gunicorn's default, stated)

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
