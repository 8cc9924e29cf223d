"""The record of provider calls: a call's tries as ProviderCall rows (one per request the provider
saw), filled in for the transaction that stores what the call delivered (generation.services)."""

from __future__ import annotations

import time

from django.utils import timezone

from creditgate.catalog.models import AIModelConfig
from creditgate.generation import costs
from creditgate.generation.models import CallStatus, ProviderCall
from creditgate.providers.base import ProviderError, ProviderTry

# What a call's row gets once it ended (a row recorded as sent is updated with these).
CALL_OUTCOME_FIELDS = ("status", "units_delivered", "provider_request_id", "error_class", "error_code",
                       "provider_status", "provider_error_code", "finish_reason", "latency_ms", "prompt_tokens",
                       "completion_tokens", "cost_usd", "cost_source", "started_at", "finished_at")


def call_ended_unanswered(call: ProviderCall, started: float, *, status: str, error_code: str = "") -> None:
    """A call that ended without a try the provider answered (nothing sent, or the answer lost)."""
    call.status, call.units_delivered, call.error_code = status, 0, error_code
    call.cost_usd, call.cost_source = None, ""
    call.latency_ms = int((time.monotonic() - started) * 1000)
    call.finished_at = timezone.now()


def call_tries_recorded(call: ProviderCall, tries: list[ProviderTry], *, model: AIModelConfig, started: float,
                        error: ProviderError | None = None, answered: ProviderTry | None = None,
                        delivered: int | None = None, task_ids: bool = False) -> list[ProviderCall]:
    """The rows of one call's tries, in the order they were sent: the first try fills `call`
    (which may be recorded already, as sent), each retry is a new row pointing at it. `answered`
    stands in for the tries of an adapter that reported none (so a delivered answer is never
    missing from the record); `error` is how the call ended if it failed; `delivered` the units
    the last try delivered (default: what it reported). `task_ids`: the retries' request ids are
    our task ids at the provider (a resumable provider), kept to look them up."""
    tries = list(tries)
    if not tries:
        if answered is not None:
            tries = [answered]
        else:
            call_ended_unanswered(call, started, status=CallStatus.FAILED,
                                  error_code=error.code if error else "provider_error")
            if error is not None:
                call.error_class = type(error).__name__
                call.provider_status = error.provider_status
                call.provider_error_code = (error.provider_code or "")[:100]
            return [call]
    elif error is not None and tries[-1].ok:  # the answer came and could not be used
        tries[-1] = ProviderTry.failed(error, latency_ms=tries[-1].latency_ms, request_id=tries[-1].request_id,
                                       started_at=tries[-1].started_at)
    rows = []
    for number, attempt in enumerate(tries, start=1):
        row = call if number == 1 else ProviderCall(
            job_id=call.job_id, attempt=call.attempt, first_try=call, kind=call.kind, provider_id=call.provider_id,
            model_name=call.model_name, units_requested=call.units_requested, size=call.size,
            task_id=attempt.request_id if task_ids else "")
        row.try_number = number
        units = attempt.units if attempt.ok else 0
        if number == len(tries) and delivered is not None:
            units = delivered
        row.status = CallStatus.SUCCEEDED if attempt.ok else CallStatus.FAILED
        row.units_delivered = min(units, row.units_requested)
        row.provider_request_id = attempt.request_id[:200]
        row.error_class, row.error_code = attempt.error_class, attempt.error_code
        row.provider_status, row.provider_error_code = attempt.provider_status, attempt.provider_code
        row.finish_reason = attempt.finish_reason[:30]
        row.latency_ms = attempt.latency_ms
        row.prompt_tokens, row.completion_tokens = attempt.prompt_tokens, attempt.completion_tokens
        row.cost_usd, row.cost_source = costs.try_cost(model=model, attempt=attempt, delivered=row.units_delivered)
        if attempt.started_at is not None:
            row.started_at = attempt.started_at
        row.finished_at = timezone.now()
        rows.append(row)
    return rows


def call_size(adapter, model: AIModelConfig) -> str:
    """The size a call asks for (the model's first; callers never pick one yet), for the record."""
    try:
        width, height = adapter.resolve_size(model=model, size=None)
    except ProviderError:
        return ""
    return f"{width}x{height}"
