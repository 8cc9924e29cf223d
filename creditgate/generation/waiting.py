"""Waiting for a job to be final: `Prefer: wait=N` on the generation POSTs, `?wait=N` on GET /jobs/{id}/.

A wait costs no thread and no database connection: the views (apis.py, `async_waits`) do their
ordinary work (authentication, validation, creating or reading the job) as sync code in a thread,
then give back that thread and its connection and await the job's end on the event loop, as a
coroutine (~70 KB of the process's memory, README, Production); the answer is read and rendered in
a thread again, or, for a text job the request created and this process settled, rendered on the
loop from the job as the settlement announced it (`job_final_announce`'s `final`: no read back). A
request waits at most MAX_WAIT_SECONDS, whatever it asked for, and gets the job as it is at its
deadline if it is not final by then.

How the settlement wakes the waiter (`job_final_announce`, called after the settling commit, from
whatever thread or process settled it):
- in-process runner (the embedded default): the job ran in this very process, so it resolves the
  waiters' futures directly (thread-safely, on their event loops);
- Celery with Redis: the worker publishes the job id on one Redis pub/sub channel; each web
  process keeps ONE subscription (a redis.asyncio task on its event loop: one Redis connection,
  whatever the number of waiters) that wakes the waiters of the ids it hears. Pub/sub, not short
  database polls: a finished job wakes its waiter at once, and waiting costs no query.
A message can be lost (the subscription reconnecting after a Redis restart), so a waiter also
re-reads the job after SAFETY_POLL_SECONDS, then at doubling intervals; and with a broker that is
not Redis it falls back to reading the job every FALLBACK_POLL_SECONDS (each read in a thread, its
connection given back).

The waiter is registered BEFORE the job is read, so a job that becomes final between the read and
the wait has already woken it: no wake-up is missed.

Fair shares: an account and an API key each hold at most CREDITGATE_ACCOUNT_WAITS and
CREDITGATE_API_KEY_WAITS waits at once in a process (`wait_slot_take`). Counted per process, not
across processes: what a wait costs (memory, a connection slot under the server's
`limit_concurrency`) is a process's, a count in the process is exact and dies with it (a count in
Redis would leak with a killed process and cost a round trip per wait), and one caller still
cannot take more than that share of any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connections

from creditgate.core.db_gate import db_gate
from creditgate.core.errors import InvalidRequest, RateLimited
from creditgate.generation.models import FINAL_STATUSES, Job

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30
SAFETY_POLL_SECONDS = 5.0
FALLBACK_POLL_SECONDS = 0.25
CHANNEL = "creditgate:jobs:final"
# A refused wait may be asked again soon: waits end as jobs do, typically within seconds.
TOO_MANY_WAITS_RETRY_AFTER = 1

T = TypeVar("T")


class TooManyWaits(RateLimited):
    code = "too_many_waits"

    def __init__(self, *, scope: str, limit: int):
        super().__init__(retry_after=TOO_MANY_WAITS_RETRY_AFTER)
        self.message = (f"Too many requests are waiting at once for this {scope.replace('_', ' ')} (at most {limit}); "
                        f"try again in {TOO_MANY_WAITS_RETRY_AFTER} second, or ask without waiting.")
        self.details = {**self.details, "scope": scope, "limit": limit}


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


# --- Concurrent waits: a share per account and per API key, in this process -------------------------

_lock = threading.Lock()  # guards _slots and _waiters (below)
_slots: dict[tuple[str, Any], int] = {}


class WaitSlot:
    """One wait counted against its account and API key until `release()` (idempotent)."""

    def __init__(self, keys: list[tuple[str, Any]]):
        self._keys: list[tuple[str, Any]] | None = keys

    def release(self) -> None:
        with _lock:
            for key in self._keys or ():
                _slots[key] -= 1
                if not _slots[key]:
                    del _slots[key]
            self._keys = None


def wait_slot_take(*, account_id, api_key_id=None) -> WaitSlot:
    """A slot for one more wait of this account (and API key), or TooManyWaits (429) when either
    already holds its limit of waits in this process."""
    limits = [(("account", account_id), settings.CREDITGATE_ACCOUNT_WAITS)]
    if api_key_id is not None:
        limits.append((("api_key", api_key_id), settings.CREDITGATE_API_KEY_WAITS))
    with _lock:
        for key, limit in limits:
            if _slots.get(key, 0) >= limit:
                raise TooManyWaits(scope=key[0], limit=limit)
        for key, _limit in limits:
            _slots[key] = _slots.get(key, 0) + 1
    return WaitSlot([key for key, _limit in limits])


def waits_open() -> int:
    """The waits this process holds (all accounts): for tests and diagnostics."""
    with _lock:
        return sum(n for (scope, _), n in _slots.items() if scope == "account")


# --- Waiting ----------------------------------------------------------------------------------

_waiters: dict[str, set[Waiter]] = {}


class Waiter:
    """One request's wait for one job, registered from its creation (in any thread, before the job
    is read) until `close()`; woken from any thread by `job_final_announce`."""

    def __init__(self, job_id):
        self.key = str(job_id)
        self._woken = False
        self.final: Job | None = None  # the job as its settlement in this process left it, if it said
        self._future: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        with _lock:
            _waiters.setdefault(self.key, set()).add(self)

    def close(self) -> None:
        with _lock:
            waiters = _waiters.get(self.key)
            if waiters is not None:
                waiters.discard(self)
                if not waiters:
                    del _waiters[self.key]

    def _wake(self, final: Job | None) -> None:  # under _lock
        self._woken = True
        self.final = final or self.final
        if self._future is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody awaits it any more
                self._loop.call_soon_threadsafe(_resolve, self._future)

    async def woken(self, timeout: float) -> bool:
        """True once woken (at once if it was since the last call), False after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        with _lock:
            if self._woken:
                self._woken = False
                return True
            self._future, self._loop = loop.create_future(), loop
        try:
            await asyncio.wait_for(self._future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with _lock:
                self._future = self._loop = None
                self._woken = False


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(True)


async def job_wait_final(waiter: Waiter, job: Job, *, seconds: float, read: Callable[[], Job],
                         settled: Callable[[Job], None] | None = None) -> Job:
    """`job` (read after `waiter` was registered) once it is final, or as it is after `seconds`:
    awaits the waiter, re-reading the job with `read` (sync ORM code, run in a thread that is then
    given back with its connection) when woken or every poll interval. `settled`: given, the job as
    its settlement in this process announced it is taken instead of a read: `settled(final)` is
    called with it, on the loop, and it is returned."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    woken_by_news = _runs_here() or await listener_ready()
    poll = SAFETY_POLL_SECONDS if woken_by_news else FALLBACK_POLL_SECONDS
    while job.status not in FINAL_STATUSES and (left := deadline - loop.time()) > 0:
        await waiter.woken(min(left, poll))
        if settled is not None and waiter.final is not None:
            settled(waiter.final)
            return waiter.final
        job = await in_thread(read)
        if woken_by_news:
            # The safety re-reads back off (5, 10, 20 s): they only catch a lost wake-up, and when
            # jobs queue for tens of seconds, every waiter re-reading every 5 s took CPU from the
            # jobs themselves (bench/bench_inflight.py at 1,000 clients).
            poll *= 2
    return job


def job_create_waited(create: Callable[[uuid.UUID], tuple[Job, bool]], *,
                      wait: bool) -> tuple[Job, bool, Waiter | None]:
    """`create(job_id)` -> (job, created), with the new job's id chosen here so that, when the
    caller will `wait`, its waiter is registered before the job exists: none of the job's ends can
    be missed, and the new job need not be read before the wait. Returns (job, created, the waiter
    of a created job). A replay's job (created False) gets no waiter here: it was read, and is
    waited on as any job already accepted. Closed again if `create` raises."""
    job_id = uuid.uuid4()
    waiter = Waiter(job_id) if wait else None
    try:
        job, created = create(job_id)
    except BaseException:
        if waiter is not None:
            waiter.close()
        raise
    if waiter is not None and not created:
        waiter.close()
        waiter = None
    return job, created, waiter


async def job_await_final(job_id, *, seconds: float, read: Callable[[], Job],
                          known: tuple[Job, Waiter] | None = None) -> Job:
    """From async code: the job (`read`, in a thread) once it is final, or as it is after `seconds`.
    `known`: a job just created, with the waiter registered before it existed (job_create_waited):
    nothing to read before the wait. The waiter is closed however the wait ends."""
    if known is not None:
        job, waiter = known
    else:
        waiter = Waiter(job_id)  # registered before the job is read: no end is missed in between
    try:
        if known is None:
            job = await in_thread(read)
        return await job_wait_final(waiter, job, seconds=seconds, read=read)
    finally:
        waiter.close()


async def in_thread(fn: Callable[[], T]) -> T:
    """`fn()` (sync code, the ORM) in the request's thread; then that thread and its database
    connections are given back, as a wait follows."""
    def run() -> T:
        try:
            return fn()
        finally:
            release_connections()
    try:
        async with db_gate():
            return await sync_to_async(run, thread_sensitive=True)()
    finally:
        release_request_thread()


def release_connections() -> None:
    """Close this thread's database connections (with the pool: give them back), outside a
    transaction only (a test's own transaction, ATOMIC_REQUESTS): a connection that holds one cannot
    be given back, and closing it would roll the transaction back."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def release_request_thread() -> None:
    """Under ASGI, Django runs a request's sync code (its sync middleware hooks, a sync view) in a
    thread of the request's own (asgiref's ThreadSensitiveContext), kept until the request ends.
    Before a wait, let it go: asgiref starts another if the request runs sync code again (its
    connections were released first, so nothing was tied to the old one). Outside a request under
    ASGI (the test client, a script) there is none, and this does nothing."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None:
        return
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)  # idle: its thread ends at once


def job_final_announce(job_id, *, final: Job | None = None) -> None:
    """The job is final (its settlement committed): wake whoever waits for it, here and, with
    Celery, in the web processes. `final`: the job as the settlement left its row (every column),
    for this process's waiters (`job_wait_final`'s `settled`); never shared: each gets a copy."""
    _wake(str(job_id), final)
    if _uses_redis():
        try:
            _redis().publish(CHANNEL, str(job_id))
        except Exception:
            logger.warning("job %s: could not announce its end on Redis", job_id, exc_info=True)


def _wake(key: str, final: Job | None = None) -> None:
    with _lock:
        for waiter in _waiters.get(key, ()):
            waiter._wake(copy.copy(final) if final is not None else None)


def _runs_here() -> bool:
    return settings.CREDITGATE_JOBS_BACKEND != "celery"


def _uses_redis() -> bool:
    return settings.CREDITGATE_JOBS_BACKEND == "celery" and settings.REDIS_URL.startswith(("redis://", "rediss://"))


# --- Announcing on Redis (sync: called by whoever settles) -------------------------------------------

_redis_client = None


def _redis():
    global _redis_client
    if _redis_client is None:
        import redis  # the broker's client, installed with celery[redis]

        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    return _redis_client


# --- Listening on Redis: one subscription per process, on its event loop ----------------------------

_listener: asyncio.Task | None = None
_subscribed = threading.Event()


async def listener_ready() -> bool:
    """Start this process's subscription if needed (on the running loop); True once it listens (at
    most 1 s to start). Without Redis pub/sub (in-process runner, another broker): False."""
    global _listener
    if not _uses_redis():
        return False
    loop = asyncio.get_running_loop()
    with _lock:
        # A listener on a loop that no longer runs (a test client's loop per request) is gone.
        if _listener is None or _listener.done() or not _listener.get_loop().is_running():
            _subscribed.clear()
            _listener = loop.create_task(_listen_forever(), name="creditgate-job-waits")
    for _ in range(50):
        if _subscribed.is_set():
            return True
        await asyncio.sleep(0.02)
    return _subscribed.is_set()


async def _listen_forever() -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    while True:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, health_check_interval=30)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            await pubsub.get_message(timeout=3)  # the subscribe confirmation
            _subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    _wake(message["data"].decode())
        except asyncio.CancelledError:
            _subscribed.clear()
            raise
        except Exception:
            _subscribed.clear()
            logger.warning("job waits: the Redis subscription broke; reconnecting", exc_info=True)
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(OSError, RedisError):  # already broken
                await pubsub.aclose()
                await client.aclose()
