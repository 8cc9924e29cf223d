"""Where a job runs: on a Celery worker when a broker is configured, else in this process.

This module knows no task: generation.tasks registers the task that runs a job (`job_runner_set`)
and its sweep (`sweep_register`) when it is imported (AppConfig.ready, or Celery's autodiscovery
in a worker), so the dependencies point one way (tasks -> services -> dispatch), with no task name
here that would loop back to the tasks. A hand-off may fail (the broker is down): `enqueue` then
says so and the job stays in the outbox (`Job.dispatched_at` empty) for the sweep to hand over
later; the job is durable either way.

The in-process backend is for one machine with no Redis (the demo, a laptop): a small thread
pool runs the tasks, and a daemon thread runs the sweep (recovery of lapsed leases, the outbox)
every CREDITGATE_JOB_SWEEP_SECONDS, as Celery beat does with a broker. Other apps' periodic tasks
ride on the same thread (`sweep_register`), each at most as often as it asks: beat's schedule and
this thread run the same tasks, so the embedded default needs no beat. It starts with the first
request the process serves, so a restarted process recovers what its predecessor left.
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

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_sweeper: threading.Thread | None = None
# What the in-process sweeper runs (Celery beat's schedule has the same tasks): task name -> at most
# how often, in seconds (None: every round). Apps add theirs with sweep_register (generation: the
# jobs' sweep; webhooks: due deliveries; reports: the usage rollups; billing: low-balance emails to
# send again).
_sweeps: dict[str, Callable[[], float] | None] = {}
_sweeps_last_run: dict[str, float] = {}  # task name -> time.monotonic() of its last start here
# The task that runs a job, by name (generation.tasks sets it).
_job_runner: str | None = None


def job_runner_set(task_name: str) -> None:
    """The task `enqueue` hands jobs to (called by generation.tasks when it is imported)."""
    global _job_runner
    _job_runner = task_name


def enqueue(job_id) -> bool:
    """Hand a job to its runner; False if that failed (the sweep hands it over later)."""
    if _job_runner is None:
        raise RuntimeError("No job runner is registered: creditgate.generation.tasks was not imported.")
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


def task_send(task_name: str, *args, countdown: float | None = None) -> bool:
    """Hand any task to the runner by name, optionally `countdown` seconds from now; False if the
    broker refused it. In-process, a countdown is a timer thread: lost with the process, so a task
    sent this way must also be found by a sweep (as a due webhook delivery is)."""
    if settings.CREDITGATE_JOBS_BACKEND == "celery":
        try:
            current_app.send_task(task_name, args=list(args), countdown=countdown)
        except Exception:  # kombu raises many kinds; any of them means "not handed over"
            logger.warning("task %s%s could not be handed to the broker", task_name, args, exc_info=True)
            return False
        return True
    if countdown:
        timer = threading.Timer(countdown, lambda: _executor().submit(_run_in_thread, task_name, *args))
        timer.daemon = True
        timer.start()
    else:
        _executor().submit(_run_in_thread, task_name, *args)
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
