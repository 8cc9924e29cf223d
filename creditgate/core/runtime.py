"""The task runtime, shared by every app: where a task runs (a Celery worker when a broker is
configured, else a thread of this process), by its registered name, and the periodic registry.

This module knows no task and no app: each app registers its own in its AppConfig.ready() (the
task that runs a job: `job_runner_set`; periodic work: `sweep_register`), so the dependencies
point one way (apps -> core), with no task name here that would loop back. A hand-off may fail
(the broker is down): `enqueue` and `send` then say so (False) and the work stays owed in the
database (a job's outbox, `Job.dispatched_at` empty; an email's row) for a sweep to hand over later.

The in-process backend is for one machine with no Redis (the demo, a laptop). Jobs run as tasks
on one asyncio event loop in a background thread (`_LoopRunner`): a job waiting on a provider
costs a coroutine, not a thread; at most CREDITGATE_INPROCESS_JOBS_IN_FLIGHT run at once, at most
CREDITGATE_INPROCESS_JOBS_QUEUED more wait for a slot, and past that `enqueue` says no (the job
stays owed in its outbox for the sweep): nothing piles up in memory without a bound. Their
database steps go to a pool of CREDITGATE_INPROCESS_SYNC_THREADS threads (`sync_threads`). Other
tasks (emails, webhook deliveries) run on a small thread pool, and a daemon thread runs the
periodic work (recovery of lapsed leases, the
outbox, due webhooks, usage rollups, owed emails) every CREDITGATE_JOB_SWEEP_SECONDS, each task at
most as often as it asks: beat's schedule and this thread run the same tasks, so the embedded
default needs no beat. It starts with the first request the process serves (connected in
CoreConfig.ready), so a restarted process recovers what its predecessor left.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

# The threads a job run's sync steps (ORM, storage) go to when set: the in-process runner sets its
# bounded pool here for the jobs it runs on its loop. Unset, a run's steps go back to the thread
# that called it (see generation.services._in_thread).
sync_threads: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "creditgate_sync_threads", default=None)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_sweeper: threading.Thread | None = None
# What the in-process sweeper runs (Celery beat's schedule has the same tasks): task name -> at most
# how often, in seconds (None: every round). Apps add theirs with sweep_register from their ready().
_sweeps: dict[str, Callable[[], float] | None] = {}
_sweeps_last_run: dict[str, float] = {}  # task name -> time.monotonic() of its last start here
# The task that runs a job, by name, and the coroutine function that runs one in-process
# (generation registers both).
_job_runner: str | None = None
_job_arunner: Callable[[str], Awaitable[object]] | None = None
_runner: _LoopRunner | None = None


def job_runner_set(task_name: str, arun: Callable[[str], Awaitable[object]] | None = None) -> None:
    """The task `enqueue` hands jobs to, and the coroutine function the in-process runner awaits
    for one (generation registers them from its ready())."""
    global _job_runner, _job_arunner
    _job_runner, _job_arunner = task_name, arun


class _LoopRunner:
    """Jobs as tasks of one event loop in a daemon thread, at most `in_flight` at once (a
    semaphore), at most `queued` more accepted and waiting for a slot; their sync steps go to a
    pool of `sync_threads` threads. Submissions come from any thread."""

    def __init__(self, *, in_flight: int, queued: int, sync_threads: int):
        self.limit, self.capacity = max(1, in_flight), max(1, in_flight) + max(0, queued)
        self.pid = os.getpid()
        self.sync_pool = ThreadPoolExecutor(max_workers=max(1, sync_threads), thread_name_prefix="creditgate-job-sync")
        self._sync_threads = max(1, sync_threads)
        self._lock = threading.Condition()
        self._accepted = 0  # submitted and not finished
        self.loop = asyncio.new_event_loop()
        self._slots: asyncio.Semaphore | None = None
        self._thread = threading.Thread(target=self._run_loop, name="creditgate-jobs-loop", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self.pid == os.getpid() and self._thread.is_alive()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._slots = asyncio.Semaphore(self.limit)
        self.loop.run_forever()

    def submit(self, job_id: str, *, block: bool = False) -> bool:
        """Accept a job: False when the runner is full. `block`: wait for a free slot instead
        (a Celery worker's task hand-off: the next message stays in the broker meanwhile), and
        never accept one to wait in memory."""
        with self._lock:
            if block:
                self._lock.wait_for(lambda: self._accepted < self.limit)
            elif self._accepted >= self.capacity:
                return False
            self._accepted += 1
        # In a copy of the caller's context: the job's log lines carry the request id of the
        # request that handed it over; what a job binds stays in its own task's context.
        context = contextvars.copy_context()
        context.run(sync_threads.set, self.sync_pool)
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._job(job_id), context=context))
        return True

    async def _job(self, job_id: str) -> None:
        try:
            assert self._slots is not None and _job_arunner is not None
            async with self._slots:
                await _job_arunner(job_id)
        except Exception:  # a background loop has nobody else to tell
            logger.exception("in-process job %s crashed", job_id)
        finally:
            with self._lock:
                self._accepted -= 1
                self._lock.notify_all()

    def in_flight(self) -> int:
        with self._lock:
            return self._accepted

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._accepted == 0, timeout=timeout)

    def connections_close(self) -> None:
        """Close the database connections of every sync thread (one task per thread, held at a
        barrier so that each lands on a different one): tests drop their database after this."""
        barrier = threading.Barrier(self._sync_threads)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)
            connections.close_all()

        for future in [self.sync_pool.submit(close) for _ in range(self._sync_threads)]:
            future.result()


def _loop_runner() -> _LoopRunner:
    global _runner
    with _pool_lock:
        if _runner is None or not _runner.alive():
            _runner = _LoopRunner(in_flight=settings.CREDITGATE_INPROCESS_JOBS_IN_FLIGHT,
                                  queued=settings.CREDITGATE_INPROCESS_JOBS_QUEUED,
                                  sync_threads=settings.CREDITGATE_INPROCESS_SYNC_THREADS)
        runner = _runner
    if settings.CREDITGATE_JOBS_BACKEND != "celery":
        _executor()  # the sweeper, which recovers what a process before this one left (beat's, with Celery)
    return runner


def sync_pool() -> ThreadPoolExecutor:
    """The bounded pool this process's loop runs its jobs' sync steps in. A streamed run, which runs
    on its request's own loop, sends its steps here too (sync_threads), so the database connections
    a process holds stay bounded by the pool's size, whatever the number of streams."""
    return _loop_runner().sync_pool


def run_here(job_id, *, block: bool = False) -> bool:
    """Run a job on this process's loop, whatever the backend: an inline run (a web process runs
    the job of a caller who waits for it: no queue hop) or a Celery worker's hand-off (`block`).
    False when the loop is full: the caller hands the job to the queue instead. A job run here is
    recovered like any other if this process dies: its lease lapses, or, not claimed yet, its
    hand-off is stale for the outbox (CREDITGATE_JOB_REDISPATCH_SECONDS)."""
    if _job_arunner is None:
        return False
    return _loop_runner().submit(str(job_id), block=block)


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
    if _job_arunner is None:  # no coroutine registered: the task, on the thread pool
        _executor().submit(contextvars.copy_context().run, _run_in_thread, _job_runner, str(job_id))
        return True
    if not _loop_runner().submit(str(job_id)):
        logger.warning("job %s: the in-process runner is full; the sweep hands the job over later", job_id)
        return False
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
    """Block until the in-process runner and pool have run everything submitted so far (tests,
    demo shutdown), then let go of the runner's database connections."""
    global _pool
    runner = _runner
    if runner is not None and runner.alive():
        runner.wait_idle()
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)  # what the jobs handed over (webhooks, emails) included
    if runner is not None and runner.alive():
        runner.wait_idle()  # jobs the pool's tasks handed over (a sweep's outbox)
        runner.connections_close()
