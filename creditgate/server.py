"""The web server: uvicorn, under gunicorn in production (`worker_class` in gunicorn_conf.py) and
on its own in `manage.py demo`, with one configuration for both (UVICORN_CONFIG).

Why uvicorn: the API's long waits (`Prefer: wait=N`, `?wait=N`, generation/waiting.py) must cost
no thread, so the service is served as ASGI (creditgate/asgi.py); uvicorn is the maintained ASGI
server already in the lock, and its gunicorn worker (uvicorn-worker) keeps what gunicorn gave the
service: a master that restarts dead workers, `$WEB_CONCURRENCY` processes, `$PORT`, graceful
reloads, and the heartbeat timeout (uvicorn notifies gunicorn from its event loop, so a request
waiting 30 s is not taken for a hung worker).

What uvicorn bounds (instead of gunicorn's limit_request_line/_field_size/_fields, which its own
HTTP parser applied and uvicorn's does not read):
- HTTP parsing by h11, not httptools: httptools bounds the request line (64 KiB) but takes
  headers of any size (measured: a 2 MB header was read whole), while h11 refuses a request head
  (request line and every header together) longer than H11_MAX_HEAD_BYTES that is still being
  read. Beyond it uvicorn answers itself: 400 with a plain-text body, never reaching Django. h11
  is pure Python: some tens of microseconds more per request, against milliseconds of Django.
- Requests in a process: at most CREDITGATE_WEB_LIMIT_CONCURRENCY (uvicorn's `limit_concurrency`)
  open connections or running requests at once; past it uvicorn answers 503 "Service Unavailable"
  (plain text, `Connection: close`) at once, so a process never takes more than it can hold. Beyond
  that, connections the process has not accepted yet wait in the listen backlog (gunicorn's
  `backlog`, 2048).
"""

from __future__ import annotations

import os

from uvicorn_worker import UvicornWorker

# A request head this long is far above what a client of the API, the page or the admin sends
# (the longest line of the API or an admin changelist is a few hundred bytes; a browser's Cookie a
# few KB, ~20 headers), and far below what would matter to memory; a proxy in front usually has
# lower limits of its own (nginx: 8 KB per line or header).
H11_MAX_HEAD_BYTES = 64 * 1024

# Connections and requests at once per process. A waiting request costs ~70 KB of memory and no
# thread or database connection (README, Production), so the bound is on memory and on the file
# descriptors of the connections, not on threads: 1000 keeps a process well inside the usual
# 1024-descriptor limit with its database, Redis and log descriptors.
LIMIT_CONCURRENCY = int(os.environ.get("CREDITGATE_WEB_LIMIT_CONCURRENCY", "1000"))

UVICORN_CONFIG: dict = {
    "http": "h11",
    "h11_max_incomplete_event_size": H11_MAX_HEAD_BYTES,
    "limit_concurrency": LIMIT_CONCURRENCY,
    "lifespan": "on",  # answered by creditgate/asgi.py (Django answers none)
    "ws": "none",  # no websockets
}


class Worker(UvicornWorker):
    """uvicorn-worker's gunicorn worker with this service's uvicorn configuration."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, **UVICORN_CONFIG}
