"""Running a job, and the sweep: claim → call → store → settle (the money of each step is
generation.charging, which reads top to bottom: quote, hold, run, settle, the final charge).

Creating a job (generation.intake, charging.job_hold) prices the request and places a hold for
the most it can cost, in the same short transaction that creates the job row (a job committed with its hold is
always run: if handing it to the queue fails, the sweep hands it over later). Nothing is held
across a provider call. Running a job claims it with a lease, calls the providers outside any
transaction and stores each answer in our own media storage as it arrives; settling records the
last outputs, captures the price of exactly what was delivered (never more than the hold),
releases the rest and sets the final status in ONE transaction, so a job is never final with an
active hold and never has outputs without their capture. A worker that dies leaves a lease that
lapses; the sweep then queues the job again (it resumes) or settles what it delivered.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import datetime as dt
import io
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, ModelType, QualityTier
from creditgate.core import metrics, runtime
from creditgate.core.logging import log_context_bind
from creditgate.credits import services as credits_services
from creditgate.generation import charging, leases
from creditgate.generation import selectors as generation_selectors
from creditgate.generation.calls import CALL_OUTCOME_FIELDS, call_ended_unanswered, call_size, call_tries_recorded
from creditgate.generation.models import (
    FINAL_STATUSES,
    CallStatus,
    Job,
    JobImage,
    JobKind,
    JobStatus,
    ProviderCall,
)
from creditgate.generation.signals import job_step
from creditgate.providers.base import (
    ImageOutcome,
    ProviderContentRefused,
    ProviderError,
    ProviderRejectedRequest,
    ProviderTry,
    TextResult,
    call_sync,
    failover_code,
)
from creditgate.providers.breaker import breaker_allow, breaker_record
from creditgate.providers.registry import adapter_for

logger = logging.getLogger(__name__)

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


# --- Running a job: claim, call, store what arrives, settle ----------------------------------
#
# A run claims the job (a lease), asks the providers for what is still missing, stores each
# call's outputs as soon as it answers, and settles: the last outputs, the capture of exactly
# what was delivered, the release of the rest and the final status, in ONE transaction. Every
# write of a run is conditional on its lease token, so a run that lost its lease (recovery took
# the job over) cannot write anything. Crash anywhere and the next run resumes: delivered outputs
# are kept, a call to a provider that can look tasks up is fetched instead of sent again, and
# only what is still missing is asked for.

_TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
_DB_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)


class LeaseLost(Exception):
    """This run's claim on the job is gone (recovered elsewhere, or finished): it must stop."""


def _step(job: Job, step: str) -> None:
    """A named point on the charge path (observability; the crash-point tests stop a worker here)."""
    job_step.send(sender=Job, job=job, step=step)


def _db_retry(write, *, what: str):
    """Run `write(retrying)`, retrying on a lost or refused database connection (a restarted
    server, a failover, a killed backend) on a fresh connection, about 8 s in all.

    Every write of the charge path can be repeated: each is conditional on the job's state and
    lease, and `retrying` tells it to check whether a first try that raised had committed.
    """
    for n, delay in enumerate((*_DB_RETRY_DELAYS, None)):
        try:
            return write(n > 0)
        except _TRANSIENT_DB_ERRORS:
            if delay is None or connection.in_atomic_block:
                raise
            logger.warning("%s: the database connection failed; retrying in %.1fs", what, delay, exc_info=True)
            connection.close()
            time.sleep(delay)
    raise AssertionError("unreachable")


R = TypeVar("R")


async def _in_thread(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run sync code of a run (ORM, file storage) off the event loop: Django forbids the ORM in
    the loop's thread, and a blocking call there would stall every job on the loop.

    Which thread: by default (runtime.sync_threads unset) back in the thread that called job_run,
    asgiref's thread_sensitive mode: a Celery task or a test blocked in async_to_sync runs the
    steps on its own connection, exactly as a synchronous run did. Under a runner that keeps many
    jobs on one loop (it sets runtime.sync_threads), a bounded pool of threads, so the database
    connections those steps hold are bounded by its size whatever the number of jobs in flight
    (thread_sensitive=True would funnel every job through asgiref's one process-wide thread).
    Each step is self-contained (it commits or rolls back before it returns), so a job's steps
    need not share a thread, and one job's steps never overlap (the run awaits each in turn)."""
    pool = runtime.sync_threads.get()
    if pool is None:
        return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
    return await sync_to_async(_step_returning_connection, thread_sensitive=False, executor=pool)(fn, *args, **kwargs)


def _step_returning_connection(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """A runner thread's step, after which its database connection goes back to the pool (with
    psycopg's pool, closing a connection returns it): the runner's threads hold no connection
    between steps, so a web process's inline runs never starve its requests of the pool."""
    try:
        return fn(*args, **kwargs)
    finally:
        if connection.settings_dict.get("OPTIONS", {}).get("pool"):
            connection.close()


# The job a run was handed by the request that accepted it (an inline run), in the run task's
# context (the runner copies the submitter's): its first start may take its models from the
# routing memo its quote was priced by (`_models_in_order`).
_inline_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("creditgate_inline_job", default=None)


def job_run_inline(job_id) -> bool:
    """Run the job of a caller who waits on this process's loop (runtime.run_here); False when the
    loop is full (the caller queues it instead)."""
    token = _inline_job.set(str(job_id))
    try:
        return runtime.run_here(job_id)
    finally:
        _inline_job.reset(token)


def job_run(*, job_id) -> float | None:
    """The synchronous entry (the Celery task, a test): `job_arun` on a loop of its own, whose
    provider clients are closed with it."""
    return call_sync(job_arun, job_id=job_id)


async def job_arun(*, job_id) -> float | None:
    """Run a job that is due: queued and past its backoff, or running under a lease that lapsed
    (its worker died). Safe to call any number of times, at once or after a crash: only the call
    whose claim succeeds runs it, and it resumes what an earlier run began.

    The one implementation of a run: the provider calls are awaited (a waiting call holds no
    thread), the database steps (claim, record sent calls, store, settle, model and breaker reads)
    are ordinary ORM code run in a thread (`_in_thread`).

    Returns None, or, when another run holds a live lease on the job, the seconds until that
    lease lapses: a task delivered again after its worker died comes back then and takes over.
    """
    job = await _in_thread(_db_retry, lambda retrying: _job_claim(job_id), what=f"job {job_id}: claim")
    if job is None:
        return await _in_thread(_lease_remaining, job_id)
    lease = leases.keep(job.pk, job.lease_token)
    run = _Run(job, lease)
    if job.attempts == 1:
        metrics.job_queue_wait_seconds.labels(job.kind).observe((timezone.now() - job.created_at).total_seconds())
    log_context_bind(job_id=job.pk, account_id=job.account_id, hold_id=job.hold_id)
    try:
        if job_step.has_listeners(Job):  # a thread hop only when someone listens (the crash-point tests)
            await _in_thread(_step, job, "claimed")
        if job.attempts > settings.CREDITGATE_JOB_MAX_ATTEMPTS:
            # Its earlier runs kept dying: settle it with what they delivered.
            run.errors.append(("job_interrupted", (f"The job was interrupted {job.attempts - 1} times and could "
                                                  f"not be finished.")))
            await _in_thread(_db_retry, run.load_progress, what=f"job {job_id}: load progress")
        else:
            await run.call_providers()
        await _in_thread(run.settle_steps)
    except LeaseLost:
        logger.warning("job %s: another worker took the job over; this run stopped", job_id)
    except _TRANSIENT_DB_ERRORS:
        logger.warning("job %s: the database stayed unreachable; the job is recovered when its lease lapses",
                       job_id, exc_info=True)
    except Exception:  # a bug: charge what was delivered, nothing more, and say so
        logger.exception("job %s failed unexpectedly", job_id)
        try:
            run.pending.clear()
            run.errors.insert(0, ("internal_error", "Something went wrong on our side."))
            await _in_thread(_db_retry, run.settle, what=f"job {job_id}: settle after an error")
        except Exception:  # then recovery settles it when the lease lapses
            logger.exception("job %s could not be settled; recovery will", job_id)
    finally:
        leases.release(lease)
        structlog.contextvars.unbind_contextvars("job_id", "account_id", "hold_id")
    return None


def _lease_remaining(job_id) -> float | None:
    expires = (Job.objects.filter(pk=job_id, status=JobStatus.RUNNING)
               .values_list("lease_expires_at", flat=True).first())
    return max((expires - timezone.now()).total_seconds(), 0.0) if expires else None


# One constant statement (the table's name written out); RETURNING * gives Model.raw every column.
_JOB_CLAIM_SQL = ("UPDATE generation_job SET status = %s, attempts = attempts + 1, lease_token = %s, "
                  "lease_expires_at = %s, started_at = COALESCE(started_at, %s) "
                  "WHERE id = %s AND ((status = %s AND run_after <= %s) OR (status = %s AND lease_expires_at < %s)) "
                  "RETURNING *")


def _job_claim(job_id) -> Job | None:
    """Take a due job: one conditional UPDATE that also returns the row. Due: queued and past its
    backoff, or running under a lease that lapsed (taking it over voids the old run's token).
    None if a live run has it, it is final, or its retry is not due yet."""
    now = timezone.now()
    lease_until = now + dt.timedelta(seconds=settings.CREDITGATE_JOB_LEASE_SECONDS)
    fields = {f.name: f for f in Job._meta.concrete_fields}
    prep = lambda name, value: fields[name].get_db_prep_value(value, connection)  # noqa: E731
    params = [JobStatus.RUNNING, prep("lease_token", uuid.uuid4()), prep("lease_expires_at", lease_until),
              prep("started_at", now), prep("id", job_id), JobStatus.QUEUED, prep("run_after", now),
              JobStatus.RUNNING, prep("lease_expires_at", now)]
    claimed = list(Job.objects.raw(_JOB_CLAIM_SQL, params))
    return claimed[0] if claimed else None


@dataclass
class _CallResult:
    call: ProviderCall      # the call's first try
    presaved: bool = False  # the first try's row exists already (recorded as sent before it went out)
    retries: list[ProviderCall] = field(default_factory=list)  # its later tries: new rows
    images: list[JobImage] = field(default_factory=list)
    text: TextResult | None = None
    error: tuple[str, str] | None = None  # (code, message safe for users)
    failover_units: int = 0   # undelivered for a provider-side reason: the tier's next model may serve them
    model_index: int = 0      # where the call's model stands in the order of service
    health: bool | None = None  # what the call says of its model's health, for the circuit breaker


class _Run:
    """One run of a job: what was there when it started, what it got, what it still owes.

    Calls go to the job's models in the order of service of its tier (or of the text models): a
    call that fails for a provider-side reason (ProviderError.failover) hands its undelivered
    work to the next model whose circuit breaker lets calls through; every image is still charged
    once, at the rate the job was held at. A refusal of the content is not failed over.
    """

    def __init__(self, job: Job, lease: leases.Lease):
        self.job, self.lease = job, lease
        self.pending: list[_CallResult] = []   # answered, not stored yet
        self.errors: list[tuple[str, str]] = []
        self.unanswered: list[ProviderCall] = []
        self.images_stored = 0
        self.models: dict[str, tuple[AIModelConfig, ...]] = {}
        self.gone: set[str] = set()  # models of self.models that can no longer serve (read again at a failover)

    def load_progress(self, retrying: bool = False) -> None:
        """What earlier runs of this job left: stored images, calls sent and never answered."""
        self.images_stored = JobImage.objects.filter(job=self.job).count()
        self.unanswered = list(ProviderCall.objects.filter(job=self.job, status=CallStatus.SENT))

    # Calling.

    def _start(self) -> None:
        if self.job.attempts > 1:  # a first run has nothing to resume: spare the queries
            _db_retry(self.load_progress, what=f"job {self.job.pk}: load progress")
        self.models = _models_in_order(self.job)

    def _start_and_text_call(self) -> list:
        """The start, then the text's call when the job has one to make (in one thread step)."""
        self._start()
        return self._calls(ModelType.TEXT, 1) if self.job.text_model_name and self.job.total_tokens is None else []

    async def call_providers(self) -> None:
        job = self.job
        todo = await _in_thread(self._start_and_text_call)
        images_wanted = job.image_count - self.images_stored
        if job.image_model_name and images_wanted > 0:
            images_wanted -= await self._resume(images_wanted)
            if images_wanted > 0:
                todo += await _in_thread(self._calls, ModelType.IMAGE, images_wanted)
        await self._run(todo)

    async def _run(self, todo: list) -> None:
        """Make the calls, several (an article, a batch in several calls, failovers) at once as
        tasks of this loop, at most CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS at a time, storing each
        answer while others are still out. If the run stops (its lease lost, a crash), the calls
        still out are cancelled: a resumable call was recorded as sent, and the next run fetches
        its answer by its task id."""
        limit = asyncio.Semaphore(max(1, settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS))

        async def bounded(ask) -> _CallResult:
            async with limit:
                return await ask()

        in_flight: set[asyncio.Task[_CallResult]] = set()
        try:
            while todo or in_flight:
                in_flight |= {asyncio.ensure_future(bounded(ask)) for ask in todo}
                todo = []
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                results = [task.result() for task in done]
                for n, result in enumerate(results, start=1):
                    # Answers that came back together are stored one by one too: only the last
                    # answer of the job waits for the settlement, which stores it in its transaction.
                    todo += await _in_thread(self._after_answer, result,
                                             more=bool(todo or in_flight or n < len(results)))
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _after_answer(self, result: _CallResult, *, more: bool) -> list:
        """One answer in (a thread: breaker, failover and store touch the database): the calls a
        failover adds, which are then still to make."""
        if result.health is not None:
            breaker_record(result.call.provider_id, result.call.model_name, result.health)
        todo = []
        if result.failover_units:
            todo = self._calls(result.call.kind, result.failover_units, after=result.model_index, error=result.error)
        self._answered(result, more=more or bool(todo))
        return todo

    def settle_steps(self) -> None:
        _step(self.job, "settling")
        _db_retry(self.settle, what=f"job {self.job.pk}: settle")
        _step(self.job, "settled")

    def _answered(self, result: _CallResult, *, more: bool) -> None:
        _step(self.job, "answered")
        if self.lease.lost.is_set():
            raise LeaseLost()
        if result.error:
            self.errors.append(result.error)
        self.pending.append(result)
        if more:
            _db_retry(self.store, what=f"job {self.job.pk}: store outputs")
            _step(self.job, "stored")

    def _calls(self, kind: str, units: int, *, after: int = -1, error: tuple[str, str] | None = None) -> list:
        """The calls that ask the first model after position `after` that can serve now (its
        provider configured, its breakers closed) for `units` units; none, with the reason
        recorded, when no model of the tier can. A failover (`after` >= 0) first reads the
        tier's models again: one switched off while the failed call was out is not called."""
        if after >= 0:
            _db_retry(lambda retrying: self._models_refresh(kind), what=f"job {self.job.pk}: read the models")
        if not self.models[kind]:
            self.errors.append(_unavailable(self.job, kind))
            return []
        for index, model in enumerate(self.models[kind]):
            if index <= after or model.model_name in self.gone:
                continue
            try:
                adapter = adapter_for(provider_id=model.provider_id, provider=model.provider)
            except ProviderError as exc:
                error = (exc.code, exc.message)
                continue
            if not breaker_allow(model.provider_id, model.model_name):
                error = error or ("provider_unavailable", ProviderError.default_message)
                continue
            if index > 0:
                logger.info("job %s: %d %s unit(s) go to %s (position %d of the order of service)", self.job.pk,
                            units, kind, model.model_name, index + 1)
            if kind == ModelType.TEXT:
                return [self._text_call(model, adapter, index)]
            return self._image_calls(model, adapter, index, units)
        if error and kind == ModelType.IMAGE and after >= 0:
            return []  # the failed call already reported its error
        self.errors.append(error or ("tier_unavailable", "No model can serve this right now."))
        return []

    def _models_refresh(self, kind: str) -> None:
        """The models of `kind` as the catalog has them now. Positions in the order of service stay
        what they were (calls still out refer to them): a model no longer servable is skipped from
        now on, one that became servable comes last."""
        fresh = {m.model_name: m for m in _models_of(self.job, kind)}
        known = self.models[kind]
        self.gone |= {m.model_name for m in known if m.model_name not in fresh}
        self.gone -= set(fresh)
        self.models[kind] = (tuple(fresh.get(m.model_name, m) for m in known)
                             + tuple(m for name, m in fresh.items() if name not in {k.model_name for k in known}))

    def _new_call(self, model: AIModelConfig, kind: str, units: int) -> ProviderCall:
        return ProviderCall(job_id=self.job.pk, attempt=self.job.attempts, kind=kind, provider_id=model.provider_id,
                            model_name=model.model_name, units_requested=units, status=CallStatus.SENT)

    def _text_call(self, model: AIModelConfig, adapter, index: int):
        job, call = self.job, self._new_call(model, ModelType.TEXT, 1)
        temperature = float(job.temperature) if job.temperature is not None and model.accepts("temperature") else None

        async def ask() -> _CallResult:
            started = time.monotonic()
            tries: list[ProviderTry] = []
            try:
                text = await adapter.generate_text(model=model, prompt=job.prompt, max_tokens=job.max_tokens,
                                                   temperature=temperature, record=tries.append,
                                                   messages=job.messages)
            except ProviderError as exc:
                rows = call_tries_recorded(call, tries, model=model, started=started, error=exc)
                return _CallResult(call=call, retries=rows[1:], error=(exc.code, exc.message), model_index=index,
                                   failover_units=1 if exc.failover else 0, health=_health(exc))
            rows = call_tries_recorded(call, tries, model=model, started=started, answered=ProviderTry(
                ok=True, latency_ms=None, request_id=text.provider_request_id or "", units=1,
                prompt_tokens=text.prompt_tokens, completion_tokens=text.completion_tokens,
                finish_reason=text.finish_reason or ""))
            return _CallResult(call=call, retries=rows[1:], text=text, model_index=index, health=True)

        return ask

    def _image_calls(self, model: AIModelConfig, adapter, index: int, units: int) -> list:
        job = self.job
        prompt = styled_prompt(job.prompt, job.image_style)
        calls = [self._new_call(model, ModelType.IMAGE, n) for n in adapter.image_call_sizes(model=model, count=units)]
        size = job.image_size or call_size(adapter, model)
        for call in calls:
            call.size = size
        presaved = adapter.resumable
        if presaved:
            # Recorded before they go out: a run that dies waiting leaves the task ids behind, and
            # the next run fetches those answers instead of paying for the images twice.
            for call in calls:
                call.task_id = str(call.pk)
            _db_retry(lambda retrying: self._record_sent(calls, retrying), what=f"job {job.pk}: record calls")

        def asker(call: ProviderCall):
            async def ask() -> _CallResult:
                started = time.monotonic()
                tries: list[ProviderTry] = []
                try:
                    outcomes = await adapter.generate_image_batch(
                        model=model, prompt=prompt, n=call.units_requested, task_id=call.task_id or None,
                        size=job.image_size or None, record=tries.append)
                except ProviderError as exc:
                    rows = call_tries_recorded(call, tries, model=model, started=started, error=exc, task_ids=presaved)
                    return _CallResult(call=call, presaved=presaved, retries=rows[1:], error=(exc.code, exc.message),
                                       model_index=index, failover_units=call.units_requested if exc.failover else 0,
                                       health=_health(exc))
                # Files written in a thread: storage is blocking I/O (a disk, or S3).
                result = await _in_thread(_images_result, job, call, tries, outcomes, model=model, started=started,
                                          presaved=presaved)
                result.model_index, result.health = index, True
                return result
            return ask

        return [asker(call) for call in calls]

    def _resumable(self, call: ProviderCall) -> tuple[Any, AIModelConfig | None]:
        """The adapter and model to look a sent call up with, or (None, None) when its provider
        cannot look calls up."""
        adapter = adapter_for(provider_id=call.provider_id)
        if adapter.resumable and call.task_id:
            return adapter, _model_for_call(call.model_name)
        return None, None

    async def _resume(self, wanted: int) -> int:
        """Fetch the answers of calls an earlier run sent and never heard back from; how many
        images that delivered. Calls that cannot be found are marked lost: their work is asked
        for again."""
        delivered = 0
        for call in self.unanswered:
            if call.kind != ModelType.IMAGE:
                continue
            started = time.monotonic()
            tries: list[ProviderTry] = []
            outcomes = model = None
            try:
                adapter, model = await _in_thread(self._resumable, call)
                if adapter is not None and model is not None:
                    outcomes = await adapter.resume_images(model=model, task_id=call.task_id,
                                                           n=min(call.units_requested, wanted - delivered),
                                                           record=tries.append)
            except ProviderError:
                outcomes = None
            if outcomes is None:
                if tries and model is not None:  # its tries the provider answered with an error; none delivered
                    rows = call_tries_recorded(call, tries, model=model, started=started, task_ids=True)
                else:  # nothing to be found: the work is asked for again
                    call_ended_unanswered(call, started, status=CallStatus.LOST, error_code="answer_lost")
                    rows = [call]
                self.pending.append(_CallResult(call=call, presaved=True, retries=rows[1:]))
                continue
            assert model is not None  # outcomes come only from resume_images, which was given the model
            result = await _in_thread(_images_result, self.job, call, tries, outcomes, model=model, started=started,
                                      presaved=True)
            result.failover_units = 0  # what the lookup could not deliver is asked for below
            delivered += len(result.images)
            self.pending.append(result)
            await _in_thread(_step, self.job, "resumed")
        return delivered

    # Storing.

    def _record_sent(self, calls: list[ProviderCall], retrying: bool) -> None:
        if retrying and ProviderCall.objects.filter(pk=calls[0].pk).exists():
            return
        ProviderCall.objects.bulk_create(calls)

    def store(self, retrying: bool = False) -> None:
        """Store the answers received so far, while other calls are still out (own transaction)."""
        with transaction.atomic(durable=True):
            lease = dt.timedelta(seconds=settings.CREDITGATE_JOB_LEASE_SECONDS)
            updates = dict(lease_expires_at=timezone.now() + lease, **self._text_fields())
            if not Job.objects.filter(pk=self.job.pk, lease_token=self.lease.token,
                                      status=JobStatus.RUNNING).update(**updates):
                raise LeaseLost()
            self._record(retrying)
        self._stored()

    def settle(self, retrying: bool = False) -> None:
        """Store the last answers and settle, in one transaction: capture exactly what was
        delivered at the rates the job was held at, release the rest, set the final status."""
        job = self.job
        text = self._delivered_text()
        images = self.images_stored + sum(len(r.images) for r in self.pending)
        with transaction.atomic(durable=True):
            if retrying and Job.objects.filter(pk=job.pk, status__in=FINAL_STATUSES).exists():
                return  # the first try committed before its connection broke
            outcome = charging.settlement(job, images=images, text_tokens=text, errors=self.errors)
            fields = {**outcome.job_fields, **self._text_fields()}
            if not Job.objects.filter(pk=job.pk, lease_token=self.lease.token, status=JobStatus.RUNNING).update(
                    **fields):
                raise LeaseLost()
            self._record(retrying)
            # The row as this update leaves it: the claim read it whole (every column), and since
            # then only this run wrote it, under its lease, keeping `job` in step (`_stored`). Text
            # jobs only: an image job's answer has its images, read with it.
            final = copy.copy(job) if job.kind == JobKind.TEXT else None
            if final is not None:
                for name, value in fields.items():
                    setattr(final, name, value)
            outcome.settle_hold(job, final=final)
        self._stored()

    def _text_fields(self) -> dict:
        text = next((r.text for r in self.pending if r.text is not None), None)
        if text is None:
            return {}
        return dict(text=text.content, prompt_tokens=text.prompt_tokens, completion_tokens=text.completion_tokens,
                    total_tokens=text.total_tokens)

    def _delivered_text(self) -> int | None:
        fields = self._text_fields()
        return fields["total_tokens"] if fields else self.job.total_tokens

    def _record(self, retrying: bool) -> None:
        """The pending calls and their images, in the caller's transaction."""
        results = self.pending
        if retrying:  # a first try may have committed: keep only what is not recorded yet
            recorded = set(ProviderCall.objects.filter(pk__in=[r.call.pk for r in results])
                           .exclude(status=CallStatus.SENT).values_list("pk", flat=True))
            results = [r for r in results if r.call.pk not in recorded]
        sent = [r.call for r in results if r.presaved]
        # First tries before their retries, which point at them.
        new = [r.call for r in results if not r.presaved] + [row for r in results for row in r.retries]
        for call in sent:
            ProviderCall.objects.filter(pk=call.pk, status=CallStatus.SENT).update(
                **{f: getattr(call, f) for f in CALL_OUTCOME_FIELDS})
        ProviderCall.objects.bulk_create(new)
        transaction.on_commit(partial(_count_calls, [*sent, *new]))  # every try, retries included
        images = [image for r in results for image in r.images]
        for index, image in enumerate(images, start=self.images_stored):
            image.index = index
        JobImage.objects.bulk_create(images)
        if self.job.text_model_name and self._text_fields():
            self.job.total_tokens = self._text_fields()["total_tokens"]

    def _stored(self) -> None:
        self.images_stored += sum(len(r.images) for r in self.pending)
        for name, value in self._text_fields().items():  # the job in memory keeps its row's text
            setattr(self.job, name, value)
        self.pending = []


def _health(error: ProviderError) -> bool | None:
    """What a failed call tells the circuit breaker: a provider-side failure counts against the
    model; a refused prompt is an answer (healthy); a request the model cannot take, nothing."""
    if error.failover:
        return False
    return True if isinstance(error, ProviderContentRefused) else None


def _models_in_order(job: Job) -> dict[str, tuple[AIModelConfig, ...]]:
    """The models that may serve the job, in order of service: its tier's (its text's) models that
    can be served now, all at the rate the job was held at. Empty: nothing can serve it any more
    (the job fails, uncharged).

    An inline run's first start (`job_run_inline`, within the routing memo's bound of the job's
    creation) takes them from the memo its quote was priced by a moment before, at no query: the
    job never waited in a queue, and the memo is at most catalog_selectors.ROUTING_MAX_LAG_SECONDS
    behind a change made through the services, as the quote was. Any other start reads the
    database (one query per part of the job, two for an article), as every failover does
    (`_Run._calls`): a model switched off while the job waited in the queue is never called."""
    if (_inline_job.get() == str(job.pk) and job.attempts == 1
            and (timezone.now() - job.created_at).total_seconds() < catalog_selectors.ROUTING_MAX_LAG_SECONDS):
        routing = catalog_selectors.routing_get()
        return {ModelType.TEXT: routing.text_models_ordered if job.text_model_name else (),
                ModelType.IMAGE: routing.image_models_ordered.get(job.tier, ()) if job.image_model_name else ()}
    return {ModelType.TEXT: _models_of(job, ModelType.TEXT) if job.text_model_name else (),
            ModelType.IMAGE: _models_of(job, ModelType.IMAGE) if job.image_model_name else ()}


def _models_of(job: Job, kind: str) -> tuple[AIModelConfig, ...]:
    if kind == ModelType.TEXT:
        return tuple(catalog_selectors.models_text_ordered())
    return tuple(catalog_selectors.models_serving_tier(job.tier))


def _unavailable(job: Job, kind: str) -> tuple[str, str]:
    """The error of a job whose tier (or text) lost every model that could serve it."""
    if kind == ModelType.TEXT:
        return ("tier_unavailable", "Text generation is not available any more: no active model serves it.")
    label = QualityTier(job.tier).label if job.tier in QualityTier.values else job.tier
    return ("tier_unavailable", f"The {label} quality is not available any more: no active model serves it.")


def _count_calls(calls: list[ProviderCall]) -> None:
    for call in calls:
        metrics.provider_calls.labels(call.provider_id, call.model_name, call.kind,
                                      metrics.provider_call_outcome(call.status, call.error_code)).inc()
        if call.latency_ms is not None:
            metrics.provider_call_seconds.labels(call.provider_id, call.model_name, call.kind).observe(
                call.latency_ms / 1000)


def _images_result(job: Job, call: ProviderCall, tries: list[ProviderTry], outcomes: list[ImageOutcome], *,
                   model: AIModelConfig, started: float, presaved: bool) -> _CallResult:
    """A call's images written to our storage (files first: a crash before the rows are stored
    leaves an unreferenced file, never a row without its file), ready to be recorded with the
    call's tries; the images belong to the try that delivered them, the last."""
    delivered = [o for o in outcomes if o.ok and o.data]
    failed = [o for o in outcomes if not (o.ok and o.data)]
    costs_reported = [o.cost_usd for o in outcomes if o.cost_usd is not None]
    rows = call_tries_recorded(
        call, tries, model=model, started=started, delivered=len(delivered), task_ids=presaved,
        answered=ProviderTry(ok=True, latency_ms=None, units=len(delivered),
                             request_id=next((o.provider_task_id for o in outcomes if o.provider_task_id), "") or "",
                             cost_usd=sum(costs_reported, Decimal(0)) if costs_reported else None))
    last = rows[-1]
    images = [_image_file_saved(job, last, n, outcome) for n, outcome in enumerate(delivered)]
    if failed:
        last.error_code = last.error_code or failed[0].error_code or "provider_error"
        last.status = CallStatus.PARTIAL if images else CallStatus.FAILED
    error = ((failed[0].error_code or "provider_error", failed[0].error_message or "An image could not be made.")
             if failed else None)
    lost_to_provider = sum(1 for o in failed if failover_code(o.error_code))
    return _CallResult(call=call, presaved=presaved, retries=rows[1:], images=images, error=error,
                       failover_units=lost_to_provider)


def _image_file_saved(job: Job, call: ProviderCall, n: int, outcome: ImageOutcome) -> JobImage:
    assert outcome.data is not None  # only delivered outcomes (ok, with data) are saved
    content_type = outcome.content_type or "image/png"
    width = height = None
    try:
        with Image.open(io.BytesIO(outcome.data)) as img:
            width, height = img.size
            if img.format:
                content_type = Image.MIME.get(img.format, content_type)
    except Exception:  # noqa: BLE001 - keep the bytes even if Pillow cannot read the header
        logger.warning("job %s: an image of call %s is not readable by Pillow", job.pk, call.pk)
    image = JobImage(job=job, call=call, model_name=call.model_name, index=0, content_type=content_type,
                     width=width, height=height, provider_image_id=outcome.provider_image_id or "",
                     seed=outcome.seed, cost_usd=outcome.cost_usd)
    name = f"{call.pk.hex[:12]}-{n}.{_EXTENSIONS.get(content_type, 'bin')}"
    image.file.save(name, ContentFile(outcome.data), save=False)
    return image


def styled_prompt(prompt: str, style: str) -> str:
    """Neither provider has a style parameter, so the global style goes into the prompt."""
    return f"{prompt.rstrip(' .')}, in a {style} style" if style else prompt


# --- Recovery: the sweep ----------------------------------------------------------------------


@dataclass(frozen=True)
class Swept:
    requeued: int = 0         # lapsed leases whose job goes round again
    settled: int = 0          # lapsed leases whose job was settled with what it had delivered
    expired: int = 0          # queued jobs no worker took in time
    dispatched: int = 0       # outbox hand-offs made
    holds_expired: int = 0    # expiring holds (not a job's) past their time
    audit_problems: int = 0   # what the quick audit of jobs against holds found

    def as_dict(self) -> dict:
        return asdict(self)


def jobs_sweep(*, now: dt.datetime | None = None) -> Swept:
    """Recovery, run every CREDITGATE_JOB_SWEEP_SECONDS (Celery beat, or the in-process thread):

    - a running job whose lease lapsed (its worker died or lost the database) is taken over: with
      attempts left and work missing it is queued again after a backoff; otherwise it is settled
      with what it delivered (charged for that, the rest released);
    - a queued job no worker started within CREDITGATE_JOB_QUEUE_TIMEOUT_SECONDS is settled (failed,
      its hold released);
    - the outbox: due queued jobs whose hand-off to the queue is owed (it failed, or was made long
      ago and may have been lost with the broker) are handed over;
    - expiring holds past their time are expired; the quick audit's findings are counted.
    A hold that belongs to a job is never expired by age: it leaves `active` only with its job.
    """
    now = now or timezone.now()
    counts = dict(requeued=0, settled=0, expired=0, dispatched=0)
    lapsed = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now).order_by("lease_expires_at")
    for job in lapsed[:500]:
        outcome = _isolated(lambda retrying, job=job: _job_recover(job, now=now), what=f"job {job.pk}: recover")
        if outcome:
            counts[outcome] += 1
    timeout = now - dt.timedelta(seconds=settings.CREDITGATE_JOB_QUEUE_TIMEOUT_SECONDS)
    for job in Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=timeout).order_by("created_at")[:500]:
        if _isolated(lambda retrying, job=job: charging.job_expire(job, now=now, timeout=timeout),
                     what=f"job {job.pk}: expire"):
            counts["expired"] += 1
    counts["dispatched"] = _outbox_dispatch(now=now)
    holds_expired = credits_services.holds_release_stale(now=now)
    problems = generation_selectors.jobs_audit(now=now, full=False)
    for problem in problems[:20]:
        logger.error("audit: %s", problem)
    swept = Swept(**counts, holds_expired=holds_expired, audit_problems=len(problems))
    if swept != Swept():
        logger.info("sweep: %s", swept.as_dict())
    return swept


def _isolated(write, *, what: str):
    """One job's recovery step: a bug in one job must not stop the sweep for the others."""
    try:
        return _db_retry(write, what=what)
    except Exception:  # logged; the job stays as it is and the audit reports it
        logger.exception("%s failed", what)
        return None


def _job_recover(job: Job, *, now: dt.datetime) -> str | None:
    """Take over a job whose lease lapsed: queue it again, or settle it. None if its worker
    renewed the lease meanwhile (then it is alive after all)."""
    lapsed = Q(pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token, lease_expires_at__lt=now)
    if job.streamed:
        return _stream_recover(job, lapsed)
    with transaction.atomic(durable=True):
        images = JobImage.objects.filter(job=job).count()
        text_tokens = job.total_tokens
        complete = images >= job.image_count and (text_tokens is not None or not job.text_model_name)
        if not complete and job.attempts < settings.CREDITGATE_JOB_MAX_ATTEMPTS:
            backoff = settings.CREDITGATE_JOB_RETRY_DELAY_SECONDS * 2 ** max(job.attempts - 1, 0)
            taken = Job.objects.filter(lapsed).update(
                status=JobStatus.QUEUED, lease_token=None, lease_expires_at=None, dispatched_at=None,
                run_after=now + dt.timedelta(seconds=backoff))
            if taken:
                logger.warning("job %s: its worker was lost during attempt %d; queued again in %ss",
                               job.pk, job.attempts, backoff)
            return "requeued" if taken else None
        errors = [] if complete else [("job_interrupted", (f"The job was interrupted {job.attempts} times and could "
                                                          f"not be finished."))]
        outcome = charging.settlement(job, images=images, text_tokens=text_tokens, errors=errors)
        if not Job.objects.filter(lapsed).update(**outcome.job_fields):
            return None
        outcome.settle_hold(job)
    logger.warning("job %s: settled by recovery after attempt %d (%s)", job.pk, job.attempts,
                   outcome.job_fields["status"])
    return "settled"


def _stream_recover(job: Job, lapsed: Q) -> str | None:
    """Settle a streamed job whose process died (generation.streams): never run again (its caller is
    gone), charged for the tokens its last checkpoint counted, the text up to there kept."""
    tokens = job.stream_tokens
    with transaction.atomic(durable=True):
        outcome = charging.settlement(
            job, images=0, text_tokens=tokens,
            errors=[("job_interrupted", "The stream was interrupted before any text.")],
            cut=("stream_interrupted", "The stream was interrupted when our server stopped.") if tokens else None)
        text_fields = {} if tokens is None else dict(total_tokens=tokens,
                                                     completion_tokens=tokens - (job.prompt_tokens or 0))
        if not Job.objects.filter(lapsed).update(**outcome.job_fields, **text_fields):
            return None
        outcome.settle_hold(job)
    logger.warning("job %s: a stream whose process died, settled from its checkpoint (%s tokens)", job.pk, tokens)
    return "settled"


def _outbox_dispatch(*, now: dt.datetime) -> int:
    """Hand over the due queued jobs whose hand-off is owed; stops at the first failure (the
    broker is down: the next sweep tries again)."""
    stale = now - dt.timedelta(seconds=settings.CREDITGATE_JOB_REDISPATCH_SECONDS)
    owed = (Job.objects.filter(status=JobStatus.QUEUED, run_after__lte=now)
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale))
            .order_by("run_after").values_list("pk", flat=True)[:1000])
    dispatched = 0
    for pk in owed:
        if not runtime.enqueue(pk):
            break
        Job.objects.filter(pk=pk, status=JobStatus.QUEUED).update(dispatched_at=now)
        dispatched += 1
    return dispatched


def _model_for_call(name: str) -> AIModelConfig:
    """The catalog row a job's model is called with (sizes, parameters). Its prices are not used:
    a job pays the rates it was held at."""
    model = AIModelConfig.objects.select_related("provider").filter(model_name=name).first()
    if model is None:
        raise ProviderRejectedRequest("This model is no longer in the catalog.")
    return model
