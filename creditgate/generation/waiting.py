"""Waiting for a job to be final: `Prefer: wait=N` on the generation POSTs, `?wait=N` on GET /jobs/{id}/.

A waiting request holds no database transaction, and no connection beyond the first
KEEP_CONNECTION_SECONDS: it reads the job, waits on a `threading.Event` that the job's settlement
sets, and if the job is not final by then closes its connection (Django opens a new one for the
read after the wait) and sleeps until it is woken or its time is up. A request waits at most
MAX_WAIT_SECONDS, whatever it asked for.

How the settlement wakes the waiter (`job_final_announce`, called after the settling commit):
- in-process runner (the embedded default): the job ran in this very process, so it sets the
  waiters' events directly;
- Celery with Redis: the worker publishes the job id on one Redis pub/sub channel; each web
  process keeps ONE subscriber thread (one Redis connection, whatever the number of waiters) that
  sets the events of the ids it hears. Pub/sub, not short database polls: a finished job wakes
  its waiter at once, and waiting costs no query and no connection at all.
A message can be lost (the subscriber reconnecting after a Redis restart), so a waiter also
re-reads the job every SAFETY_POLL_SECONDS; and with a broker that is not Redis it falls back to
reading the job every FALLBACK_POLL_SECONDS (closing the connection in between).

The waiter registers its event BEFORE it reads the job, so a job that becomes final between the
read and the wait has already set the event: no wake-up is missed.

Capacity: a waiting request occupies one gunicorn thread (the web process runs gthread workers,
see gunicorn_conf.py) and nothing else: no CPU, and no database connection after its first
KEEP_CONNECTION_SECONDS. A worker holds as many
requests at once, waiting or not, as it has threads (GUNICORN_THREADS, default 16).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from creditgate.core.errors import InvalidRequest
from creditgate.generation.models import FINAL_STATUSES, Job

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30
# A job that is not final at once usually is within a few hundred milliseconds (a text job on a
# provider that answers at once). For that first stretch the request keeps its idle connection:
# closing and reopening a PostgreSQL connection costs ~7 ms and a server process (measured: with
# the close at once, Prefer: wait was ~30 ms slower than polling at c=1 on PostgreSQL + Celery).
# Bounded: at most this long, at most one connection per waiting thread; never in a transaction.
KEEP_CONNECTION_SECONDS = 0.25
SAFETY_POLL_SECONDS = 5.0
FALLBACK_POLL_SECONDS = 0.25
CHANNEL = "creditgate:jobs:final"

_lock = threading.Lock()
_waiters: dict[str, set[threading.Event]] = {}


# --- What the client asked for -------------------------------------------------------------------


def prefer_wait(header: str | None) -> int | None:
    """The seconds asked for by a `Prefer` header (RFC 7240, e.g. `respond-async, wait=10`),
    capped at MAX_WAIT_SECONDS; None if it asks for no wait. An unreadable preference is
    ignored, as RFC 7240 says."""
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = int(value.strip().strip('"'))
            except ValueError:
                return None
            return min(seconds, MAX_WAIT_SECONDS) if seconds > 0 else None
    return None


def wait_param(value: str | None) -> int:
    """The `?wait=N` query parameter: whole seconds >= 0 in ASCII digits, capped at
    MAX_WAIT_SECONDS; absent: 0. Anything else, an empty `?wait=` included, is a 400 (not int()'s
    leniency: " 5", "+5", an Arabic-Indic five)."""
    if value is None:
        return 0
    if not (value.isascii() and value.isdigit()):
        raise InvalidRequest("wait must be a whole number of seconds, 0 or more.",
                             details={"wait": ["A whole number of seconds, 0 or more."]})
    return min(int(value), MAX_WAIT_SECONDS)


# --- Waiting ----------------------------------------------------------------------------------


def job_wait_final(job_id, *, seconds: float, read: Callable[[], Job]) -> Job:
    """`read()`'s job once it is final, or as it is after `seconds`; `read` loads the job (and
    says 404 for a job the caller may not see)."""
    key = str(job_id)
    event = threading.Event()
    with _lock:
        _waiters.setdefault(key, set()).add(event)
    try:
        redis_wakes = _subscriber_ready()
        job = read()
        deadline = time.monotonic() + seconds
        poll = SAFETY_POLL_SECONDS if redis_wakes or _runs_here() else FALLBACK_POLL_SECONDS
        if job.status not in FINAL_STATUSES and event.wait(min(seconds, KEEP_CONNECTION_SECONDS)):
            event.clear()  # finished within the grace: read it on the connection we kept
            job = read()
        while job.status not in FINAL_STATUSES and (left := deadline - time.monotonic()) > 0:
            _release_connection()
            event.wait(min(left, poll))
            event.clear()
            job = read()
        return job
    finally:
        with _lock:
            waiters = _waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del _waiters[key]


def job_final_announce(job_id) -> None:
    """The job is final (its settlement committed): wake whoever waits for it, here and, with
    Celery, in the web processes."""
    _wake(str(job_id))
    if _uses_redis():
        try:
            _redis().publish(CHANNEL, str(job_id))
        except Exception:
            logger.warning("job %s: could not announce its end on Redis", job_id, exc_info=True)


def _wake(key: str) -> None:
    with _lock:
        for event in _waiters.get(key, ()):
            event.set()


def _release_connection() -> None:
    # Outside a transaction only (a test's own transaction, ATOMIC_REQUESTS): a connection that
    # holds one cannot be given back, and closing it would roll the transaction back.
    if not connection.in_atomic_block:
        connection.close()


def _runs_here() -> bool:
    return settings.CREDITGATE_JOBS_BACKEND != "celery"


def _uses_redis() -> bool:
    return settings.CREDITGATE_JOBS_BACKEND == "celery" and settings.REDIS_URL.startswith(("redis://", "rediss://"))


# --- The Redis subscriber: one per process ------------------------------------------------------

_redis_client = None
_subscriber: threading.Thread | None = None
_subscribed = threading.Event()


def _redis():
    global _redis_client
    if _redis_client is None:
        import redis  # the broker's client, installed with celery[redis]

        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    return _redis_client


def _subscriber_ready() -> bool:
    """Start this process's subscriber if needed; True once it listens (at most 1 s to start)."""
    global _subscriber
    if not _uses_redis():
        return False
    with _lock:
        if _subscriber is None or not _subscriber.is_alive():
            _subscribed.clear()
            _subscriber = threading.Thread(target=_listen_forever, name="creditgate-job-waits", daemon=True)
            _subscriber.start()
    return _subscribed.wait(1.0)


def _listen_forever() -> None:
    import redis

    while True:
        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, health_check_interval=30)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(CHANNEL)
            pubsub.get_message(timeout=3)  # the subscribe confirmation
            _subscribed.set()
            for message in pubsub.listen():
                if message.get("type") == "message":
                    _wake(message["data"].decode())
        except Exception:
            _subscribed.clear()
            logger.warning("job waits: the Redis subscription broke; reconnecting", exc_info=True)
            time.sleep(1.0)
