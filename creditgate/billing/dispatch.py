"""Where billing's tasks run: on a Celery worker when a broker is configured, else on a thread of
this process. The same pattern as generation.dispatch (tasks handed over by name, so this module
needs neither the tasks nor the services); billing has its own so it depends on no other app's runner.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

SEND_LOW_BALANCE_EMAIL = "creditgate.billing.tasks.send_low_balance_email"
# One more try of an email the first task's retries could not send (no retries of its own).
RETRY_LOW_BALANCE_EMAIL = "creditgate.billing.tasks.retry_low_balance_email"
# Periodic (Celery beat, or the in-process sweeper): hands the emails still owed to RETRY_LOW_BALANCE_EMAIL.
RETRY_LOW_BALANCE_EMAILS = "creditgate.billing.tasks.retry_low_balance_emails"

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def send(task_name: str, *args) -> bool:
    """Hand a task to its runner; False if that failed (logged; the row it works on says it is owed)."""
    if settings.CREDITGATE_JOBS_BACKEND == "celery":
        try:
            current_app.send_task(task_name, args=list(args))
        except Exception:  # kombu raises many kinds; any of them means "not handed over"
            logger.warning("task %s%s could not be handed to the broker", task_name, args, exc_info=True)
            return False
        return True
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="creditgate-billing")
        _pool.submit(_run_in_thread, task_name, *args)
    return True


def _run_in_thread(task_name: str, *args) -> None:
    close_old_connections()
    try:
        # throw=False: Celery then runs a task's retries here too (at once: no countdown in process).
        result = current_app.tasks[task_name].apply(args=args, throw=False)
        if result.failed():
            logger.error("in-process task %s%s failed: %r", task_name, args, result.result)
    except Exception:  # a background thread has nobody else to tell
        logger.exception("in-process task %s%s failed", task_name, args)
    finally:
        connections.close_all()


def wait_idle() -> None:
    """Block until the in-process pool has run everything submitted so far (tests, shutdown)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)
