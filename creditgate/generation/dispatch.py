"""Where a job runs: on a Celery worker when a broker is configured, else in this process.

The in-process backend is for one machine with no Redis (the demo, a laptop): a small thread
pool, and a daemon thread that runs the reaper every minute, since there is no Celery beat.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_reaper: threading.Thread | None = None


def enqueue(job_id) -> None:
    if settings.CREDITGATE_JOBS_BACKEND == "celery":
        from creditgate.generation.tasks import run_job

        run_job.delay(str(job_id))
        return
    _executor().submit(_run_in_thread, job_id)


def _executor() -> ThreadPoolExecutor:
    global _pool, _reaper
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="creditgate-job")
        if settings.CREDITGATE_INPROCESS_REAP_SECONDS and (_reaper is None or not _reaper.is_alive()):
            _reaper = threading.Thread(target=_reap_forever, name="creditgate-reaper", daemon=True)
            _reaper.start()
        return _pool


def _run_in_thread(job_id) -> None:
    from creditgate.generation import services

    close_old_connections()
    try:
        services.job_run(job_id=job_id)
    except Exception:  # noqa: BLE001 - a background thread has nobody else to tell
        logger.exception("in-process job %s crashed", job_id)
    finally:
        connections.close_all()


def _reap_forever() -> None:
    from creditgate.generation import services

    while interval := settings.CREDITGATE_INPROCESS_REAP_SECONDS:
        time.sleep(interval)
        try:
            services.jobs_reap_stale()
        except Exception:  # noqa: BLE001 - try again next round
            logger.exception("the in-process reaper failed")
        finally:
            connections.close_all()


def wait_idle(timeout: float = 30.0) -> None:
    """Block until the in-process pool has run everything submitted so far (tests, demo shutdown)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)
