"""The task runtime, shared by every app: where a task runs (a Celery worker when a broker is
configured, else a thread of this process), by its registered name, and the periodic registry.

This module knows no task and no app: each app registers its own in its AppConfig.ready() (the
task that runs a job: `job_runner_set`; periodic work: `sweep_register`), so the dependencies
point one way (apps -> core), with no task name here that would loop back. A hand-off may fail
(the broker is down): `enqueue` and `send` then say so (False) and the work stays owed in the
database (a job's outbox, `Job.dispatched_at` empty; an email's row) for a sweep to hand over later.

The in-process backend is for one machine with no Redis (the demo, a laptop): a small thread
pool runs the tasks, and a daemon thread runs the periodic work (recovery of lapsed leases, the
outbox, due webhooks, usage rollups, owed emails) every CREDITGATE_JOB_SWEEP_SECONDS, each task at
most as often as it asks: beat's schedule and this thread run the same tasks, so the embedded
default needs no beat. It starts with the first request the process serves (connected in
CoreConfig.ready), so a restarted process recovers what its predecessor left.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

# The threads a job run's sync steps (ORM, storage) go to when set, for a runner that keeps many
# jobs on one event loop. Unset, a run's steps go back to the thread that called it (see
# generation.services._in_thread).
sync_threads: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "creditgate_sync_threads", default=None)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_sweeper: threading.Thread | None = None
# What the in-process sweeper runs (Celery beat's schedule has the same tasks): task name -> at most
# how often, in seconds (None: every round). Apps add theirs with sweep_register from their ready().
_sweeps: dict[str, Callable[[], float] | None] = {}
_sweeps_last_run: dict[str, float] = {}  # task name -> time.monotonic() of its last start here
# The task that runs a job, by name (generation registers it).
_job_runner: str | None = None


def job_runner_set(task_name: str) -> None:
    """The task `enqueue` hands jobs to (generation registers it from its ready())."""
    global _job_runner
    _job_runner = task_name


def enqueue(job_id) -> bool:
    """Hand a job to its runner; False if that failed (the sweep hands it over later)."""
    if _job_runner is None:
        raise RuntimeError("No job runner is registered (the generation app registers it in its ready()).")
    if settings.CREDITGATE_JOBS_BACKEND == "celery":
        try:
            current_app.send_task(_job_runner, args=[str(job_id)])
        except Exception:  # kombu raises many kinds; any of them means "not handed over"
            logger.warning("job %s could not be handed to the broker; the sweep will retry", job_id, exc_info=True)
            return False
        return True
    # In a copy of the caller's context: the job's log lines carry the request id of the request
    # that handed it over, and nothing a job binds leaks into the next job on the same thread.
    _executor().submit(contextvars.copy_context().run, _run_in_thread, _job_runner, str(job_id))
    return True


def send(task_name: str, *args, countdown: float | None = None, inline_retries: bool = False) -> bool:
    """Hand any task to the runner by name, optionally `countdown` seconds from now; False if the
    broker refused it. In-process, a countdown is a timer thread: lost with the process, so a task
    sent this way must also be found by a sweep (as a due webhook delivery is). `inline_retries`:
    in-process, let Celery run the task's own retries here (at once: no countdown in a process),
    as billing's emails want; otherwise a failure is logged and left to the sweeps."""
    if settings.CREDITGATE_JOBS_BACKEND == "celery":
        try:
            current_app.send_task(task_name, args=list(args), countdown=countdown)
        except Exception:  # kombu raises many kinds; any of them means "not handed over"
            logger.warning("task %s%s could not be handed to the broker", task_name, args, exc_info=True)
            return False
        return True
    run = _run_retrying_in_thread if inline_retries else _run_in_thread
    if countdown:
        timer = threading.Timer(countdown, lambda: _executor().submit(run, task_name, *args))
        timer.daemon = True
        timer.start()
    else:
        _executor().submit(run, task_name, *args)
    return True


def sweep_register(task_name: str, *, every: Callable[[], float] | None = None) -> None:
    """Run this task from the in-process sweeper too: every round, or with `every` (read each
    round, so a changed setting applies) at most once per that many seconds; the first round of a
    process runs it at once."""
    _sweeps.setdefault(task_name, every)


def sweep_round(*, now: float | None = None) -> list[str]:
    """One round of the in-process sweeper: run each registered task that is due, one after the
    other on this thread; returns their names. A task that fails counts as run (it waits for its
    next turn rather than hammering what made it fail)."""
    now = time.monotonic() if now is None else now
    ran = []
    for task_name, every in list(_sweeps.items()):
        if every is not None:
            last = _sweeps_last_run.get(task_name)
            if last is not None and now - last < every():
                continue
            _sweeps_last_run[task_name] = now
        contextvars.copy_context().run(_run_in_thread, task_name)
        ran.append(task_name)
    return ran


def inprocess_start(**signal_kwargs) -> None:
    """Start the in-process runner and its sweeper (no-op with Celery). Connected to Django's
    request_started, so a process starts it with the first request it serves, and a sweeper that
    ended (its interval was set to 0) starts again once the interval is back."""
    if settings.CREDITGATE_JOBS_BACKEND != "celery" and (
            _pool is None or _sweeper is None or not _sweeper.is_alive()):
        _executor()


def _executor() -> ThreadPoolExecutor:
    global _pool, _sweeper
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="creditgate-job")
        if settings.CREDITGATE_JOB_SWEEP_SECONDS and (_sweeper is None or not _sweeper.is_alive()):
            _sweeper = threading.Thread(target=_sweep_forever, name="creditgate-sweeper", daemon=True)
            _sweeper.start()
        return _pool


def _run_in_thread(task_name: str, *args) -> None:
    close_old_connections()
    try:
        current_app.tasks[task_name].apply(args=args, throw=True)
    except Exception:  # a background thread has nobody else to tell
        logger.exception("in-process task %s%s crashed", task_name, args)
    finally:
        connections.close_all()


def _run_retrying_in_thread(task_name: str, *args) -> None:
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


def _sweep_forever() -> None:
    while interval := settings.CREDITGATE_JOB_SWEEP_SECONDS:
        sweep_round()
        time.sleep(interval)


def wait_idle(timeout: float = 30.0) -> None:
    """Block until the in-process pool has run everything submitted so far (tests, demo shutdown)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)
