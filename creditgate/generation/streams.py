"""Streamed runs: a chat (the OpenAI-compatible /v1) whose text goes to its caller as the provider
writes it, charged for what the provider produced however the stream ends.

A streamed job is created running, its lease claimed in the hold's transaction
(intake.job_create_chat), and is run by the request that made it, on that request's event loop:
`StreamRun` is an asyncio task that reads the provider's stream and hands each piece to the
request (a queue), so that the request's end (the caller hung up) never interrupts the
settlement. It is never queued and never run again: its caller is gone with it.

What it costs (charging.settlement, the one charge path; never more than the hold):
- **It ends.** The provider's usage (the last chunk of the stream): ceil(total / tokens_per_credit).
- **The caller hangs up** (`stop`). The upstream is cancelled at once (a provider stops generating
  when its connection closes) and the tokens the provider produced are counted with the model's
  tokenizer: the prompt (messages, OpenAI's framing) plus every piece received from the provider,
  forwarded or not. Why cancel and count rather than keep reading until the usage arrives: a
  drain makes the provider write the rest of a text nobody reads, up to max_tokens, which the
  operator pays for and the user is charged for; a count needs no bound on drains and is also what
  the crash checkpoint records. The count can miss the few tokens the provider wrote after our
  last read (they never reached us); it never counts a token that was not produced.
- **The provider fails mid-stream.** What was delivered, counted the same way; the caller gets an
  error event. Nothing delivered (it failed before the first piece): nothing charged, and, when the
  failure is the provider's (ProviderError.failover), the text model next in the order of service
  is tried first.
- **This process dies.** Every CREDITGATE_STREAM_CHECKPOINT_SECONDS the run writes its count and
  text to the job (`Job.stream_tokens`), with its lease; the sweep settles a streamed job whose
  lease lapsed from that checkpoint (services._job_recover). A crash costs the operator at most the
  tokens produced since the last checkpoint (before the first: the prompt and those tokens, the
  job then failed and free); it never costs the user more than what was produced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from creditgate.catalog.models import AIModelConfig, ModelType
from creditgate.generation import charging, leases
from creditgate.generation.calls import call_tries_recorded
from creditgate.generation.models import FINAL_STATUSES, CallStatus, Job, JobStatus, ProviderCall
from creditgate.generation.services import (
    _TRANSIENT_DB_ERRORS,
    LeaseLost,
    _db_retry,
    _health,
    _in_thread,
    _models_of,
    _unavailable,
)
from creditgate.providers import tokens
from creditgate.providers.base import ProviderError, ProviderTry, TextResult
from creditgate.providers.breaker import breaker_allow, breaker_record
from creditgate.providers.registry import adapter_for

logger = logging.getLogger(__name__)

_END = object()  # the queue's last item: the run is settled (or could not be)


def lease_fields(now: dt.datetime) -> dict:
    """The job's columns of a streamed run that starts now: running, claimed by its request."""
    return dict(status=JobStatus.RUNNING, attempts=1, lease_token=uuid.uuid4(), started_at=now,
                lease_expires_at=now + dt.timedelta(seconds=settings.CREDITGATE_JOB_LEASE_SECONDS))


@dataclass(frozen=True)
class StreamError:
    """How a stream failed, for its caller: our error code and a message safe for users."""

    code: str
    message: str
    status: int = 502


class StreamRun:
    """One streamed job's run. `start()` it on the request's loop, then read `next_piece()` until it
    returns None; `stop()` when the caller hung up. `job` is the final job once the run ended
    (None if it could not be settled: the sweep does, from the checkpoint); `error` what failed."""

    def __init__(self, job: Job, *, models: tuple[AIModelConfig, ...] | None = None):
        """`models`: the text models in order of service as the request priced it (the catalog's
        routing, a moment old); None reads them from the database."""
        self.job = job
        self._models = models
        self.final: Job | None = None
        self.error: StreamError | None = None
        self.finish_reason = ""  # the provider's, when the stream ended normally
        self.pieces: list[str] = []  # everything the provider sent, forwarded or not
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._reading: asyncio.Task | None = None
        self._stopped = False
        self._model: AIModelConfig | None = None

    # The request's side.

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def next_piece(self) -> str | None:
        """The next piece of text, or None once the run has ended (then `final` and `error` are set)."""
        item = await self._queue.get()
        return None if item is _END else item

    async def finished(self) -> Job | None:
        """Wait for the run to end (and be settled); the final job."""
        assert self._task is not None
        await asyncio.shield(self._task)
        return self.final

    def stop(self) -> None:
        """The caller hung up: cancel the upstream; the run settles what was produced."""
        self._stopped = True
        if self._reading is not None:
            self._reading.cancel()

    # The run.

    async def _run(self) -> None:
        job = self.job
        lease = leases.keep(job.pk, job.lease_token)
        structlog.contextvars.bind_contextvars(job_id=str(job.pk), account_id=job.account_id)
        tries: list[ProviderTry] = []
        call: ProviderCall | None = None
        started = time.monotonic()
        result: TextResult | None = None
        failure: ProviderError | None = None
        try:
            models = self._models if self._models is not None else await _in_thread(_models_of, job, ModelType.TEXT)
            for index, model in enumerate(models):
                if self._stopped:
                    break
                adapter = await _in_thread(self._adapter, model)
                if adapter is None:
                    continue
                self._model, tries, started = model, [], time.monotonic()
                call = ProviderCall(job_id=job.pk, attempt=job.attempts, kind=ModelType.TEXT,
                                    provider_id=model.provider_id, model_name=model.model_name, units_requested=1,
                                    status=CallStatus.SENT)
                self._reading = asyncio.ensure_future(self._read(adapter, model, tries, lease))
                try:
                    result = await self._reading
                    failure = None
                except asyncio.CancelledError:
                    if not self._stopped:
                        raise
                except ProviderError as exc:
                    failure = exc
                health = True if failure is None else _health(failure)
                if health is not None:
                    await _in_thread(breaker_record, model.provider_id, model.model_name, health)
                if failure is None or self.pieces or not failure.failover or index + 1 == len(models):
                    break
                logger.info("job %s: %s failed before its first token; the next text model serves it",
                            job.pk, model.model_name)
                await _in_thread(self._record_failed_call, call, tries, model, started, failure)
                call = None
            if call is None and not self._stopped:
                self.error = StreamError(*(_unavailable(job, ModelType.TEXT)), status=503)
            await _in_thread(_db_retry, lambda retrying: self._settle(call, tries, started, result, failure, retrying),
                             what=f"job {job.pk}: settle the stream")
        except LeaseLost:
            logger.warning("job %s: its stream's lease was taken over; recovery settled it", job.pk)
            self.error = self.error or StreamError("job_interrupted", "The stream was interrupted.")
        except _TRANSIENT_DB_ERRORS:
            logger.warning("job %s: the database stayed unreachable; recovery settles the stream from its checkpoint",
                           job.pk, exc_info=True)
            self.error = self.error or StreamError("service_unavailable", "The stream was interrupted.", status=503)
        except Exception:
            logger.exception("job %s: the stream failed unexpectedly; recovery settles it from its checkpoint", job.pk)
            self.error = self.error or StreamError("internal_error", "Something went wrong on our side.", status=500)
        finally:
            leases.release(lease)
            self._queue.put_nowait(_END)

    def _adapter(self, model: AIModelConfig):
        """The model's adapter if it can be called now (its provider configured, its breaker closed)."""
        try:
            adapter = adapter_for(provider_id=model.provider_id, provider=model.provider)
        except ProviderError:
            return None
        return adapter if breaker_allow(model.provider_id, model.model_name) else None

    async def _read(self, adapter, model: AIModelConfig, tries: list[ProviderTry],
                    lease: leases.Lease) -> TextResult | None:
        """Read the provider's stream, handing each piece on, with a checkpoint every
        CREDITGATE_STREAM_CHECKPOINT_SECONDS (the first that long after the first piece: nothing
        competes with the first token). Cancelled by `stop`."""
        job = self.job
        temperature = float(job.temperature) if job.temperature is not None and model.accepts("temperature") else None
        stream = await adapter.stream_text(model=model, messages=job.messages, max_tokens=job.max_tokens,
                                           temperature=temperature, record=tries.append)
        every = settings.CREDITGATE_STREAM_CHECKPOINT_SECONDS
        next_checkpoint: float | None = None
        try:
            async for piece in stream:
                self.pieces.append(piece)
                self._queue.put_nowait(piece)
                if lease.lost.is_set():
                    raise LeaseLost()
                if next_checkpoint is None:
                    next_checkpoint = time.monotonic() + every
                elif time.monotonic() >= next_checkpoint:
                    await _in_thread(_db_retry, lambda retrying: self._checkpoint(),
                                     what=f"job {job.pk}: stream checkpoint")
                    next_checkpoint = time.monotonic() + every
        finally:
            await stream.aclose()
        return stream.result

    # Counting and writing (in a thread).

    def _counted(self) -> tuple[int, int]:
        """(prompt, completion) tokens as the model's tokenizer counts them."""
        name = self._model.model_name if self._model else self.job.text_model_name
        return tokens.chat_prompt_tokens(self.job.messages or [], name), tokens.text_tokens("".join(self.pieces), name)

    def _checkpoint(self) -> None:
        prompt, completion = self._counted()
        until = timezone.now() + dt.timedelta(seconds=settings.CREDITGATE_JOB_LEASE_SECONDS)
        if not Job.objects.filter(pk=self.job.pk, lease_token=self.job.lease_token, status=JobStatus.RUNNING).update(
                stream_tokens=prompt + completion, prompt_tokens=prompt, text="".join(self.pieces),
                lease_expires_at=until):
            raise LeaseLost()

    def _record_failed_call(self, call: ProviderCall, tries, model, started, failure) -> None:
        ProviderCall.objects.bulk_create(call_tries_recorded(call, tries, model=model, started=started, error=failure))

    def _settle(self, call: ProviderCall | None, tries: list[ProviderTry], started: float, result: TextResult | None,
                failure: ProviderError | None, retrying: bool) -> None:
        """The final state, the call's record and the charge, in one transaction."""
        job = self.job
        text = "".join(self.pieces)
        cut: tuple[str, str] | None = None
        prompt: int | None
        completion: int | None
        total: int | None
        if result is not None and failure is None:
            prompt, completion, total = result.prompt_tokens, result.completion_tokens, result.total_tokens
            self.finish_reason = result.finish_reason or ""
        elif self.pieces:  # cut short, or ended without usage: count what was produced
            prompt, completion = self._counted()
            total = prompt + completion
            if self._stopped:
                cut = ("stream_stopped", "The caller stopped the stream.")
            elif failure is not None:
                cut = (failure.code, f"{failure.message} The text stopped there.")
        else:
            prompt = completion = total = None
        errors = []
        if failure is not None:
            errors.append((failure.code, failure.message))
            if not self.pieces:
                self.error = StreamError(failure.code, failure.message, status=failure.status_code)
            else:
                self.error = StreamError(failure.code, failure.message)
        elif self._stopped and not self.pieces:
            errors.append(("stream_stopped", "The caller stopped the stream before any text."))
        with transaction.atomic(durable=True):
            if retrying and Job.objects.filter(pk=job.pk, status__in=FINAL_STATUSES).exists():
                self.final = Job.objects.get(pk=job.pk)
                return
            outcome = charging.settlement(job, images=0, text_tokens=total, errors=errors, cut=cut)
            text_fields = {} if total is None else dict(text=text, prompt_tokens=prompt, completion_tokens=completion,
                                                         total_tokens=total, stream_tokens=total)
            if not Job.objects.filter(pk=job.pk, lease_token=job.lease_token, status=JobStatus.RUNNING).update(
                    **outcome.job_fields, **text_fields):
                raise LeaseLost()
            if call is not None and self._model is not None:
                answered = None
                if total is not None:
                    answered = ProviderTry(ok=True, latency_ms=int((time.monotonic() - started) * 1000), units=1,
                                           request_id=(result.provider_request_id or "") if result else "",
                                           prompt_tokens=prompt, completion_tokens=completion,
                                           finish_reason=(result.finish_reason or "") if result else
                                           ("client_gone" if self._stopped else "error"))
                rows = call_tries_recorded(call, tries if total is None or result else [], model=self._model,
                                           started=started, error=failure if total is None else None,
                                           answered=answered)
                ProviderCall.objects.bulk_create(rows)
            outcome.settle_hold(job)
        self.final = Job.objects.select_related("user").get(pk=job.pk)
