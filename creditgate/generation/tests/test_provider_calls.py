"""The record of provider calls through the job runner: one row per try, written with what the
call delivered, and the resumption of a Runware call kept intact (its first try is the row
recorded before it went out; a later run finds its retries by the task ids derived from it)."""

import asyncio
from decimal import Decimal

import pytest

from creditgate.catalog.models import AIModelConfig
from creditgate.core import runtime
from creditgate.generation import intake
from creditgate.generation.models import CallStatus, CostSource, Job, ProviderCall
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.generation.tests.test_jobs_lifecycle import (  # noqa: F401 - fixtures
    _quick_retries,
    crash_at,
    lapse,
    recover,
    run_until_crash,
    workers,
)
from creditgate.providers import runware

pytestmark = pytest.mark.usefixtures("gen_env")


def rows(job: Job) -> list[tuple]:
    return [(c.attempt, c.try_number, c.status, c.units_delivered, c.error_code, c.cost_source)
            for c in job.calls.order_by("attempt", "try_number")]


def test_a_resumed_call_records_the_tries_its_lookup_found(sandbox, crash_at, workers):  # noqa: F811
    user = make_user(credits=20)
    sandbox.fail_next(1, "partial")  # one image: the first task fails as a whole (a 500), its retry delivers
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=1)
    crash_at("answered")
    run_until_crash(job)  # both tries went out; the run died before storing anything
    first = ProviderCall.objects.get(job=job)
    assert (first.status, first.task_id) == (CallStatus.SENT, str(first.pk))

    lapse(job)
    recover(workers)
    job.refresh_from_db()
    assert (job.status, job.credits_charged, job.images.count()) == ("succeeded", 1, 1)
    assert sandbox.stats["runware.imageInference"] == 2 and sandbox.stats["runware.getResponse"] == 2
    assert rows(job) == [(1, 1, "failed", 0, "provider_unavailable", CostSource.NONE),
                         (1, 2, "succeeded", 1, "", CostSource.PROVIDER)]
    retry = job.calls.get(try_number=2)
    assert retry.first_try_id == first.pk
    assert retry.task_id == retry.provider_request_id == runware._task_uuids(str(first.pk), 2)[1]
    assert (retry.latency_ms, retry.cost_usd) == (None, Decimal("0.009"))  # found later: latency unknown
    assert job.images.get().call_id == retry.pk  # the image belongs to the try that made it
    assert balance(user)["available"] == 19


def test_a_call_refused_before_it_was_sent_is_one_failed_row(sandbox):
    AIModelConfig.objects.filter(model_name="runware:97@1").update(sizes=[])
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    runtime.wait_idle()
    job.refresh_from_db()
    assert job.status == "failed" and "runware.imageInference" not in sandbox.stats
    call = job.calls.get()
    assert (call.status, call.error_class, call.provider_request_id, call.provider_status, call.cost_usd) == (
        CallStatus.FAILED, "ProviderRejectedRequest", "", None, None)


def test_retries_of_a_fan_out_point_at_their_own_first_try(sandbox, settings):
    AIModelConfig.objects.filter(model_name="gpt-image-2").update(max_images_per_call=1)
    settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS = 1  # one call after the other: the failure hits the first
    sandbox.fail_next(1, "server_error")
    user = make_user(credits=50)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="quality", count=2)
    runtime.wait_idle()
    job.refresh_from_db()
    assert job.status == "succeeded" and job.calls.count() == 3 == sandbox.stats["openai.images.generations"]
    retry = job.calls.get(try_number=2)
    assert retry.first_try is not None
    assert retry.first_try.status == CallStatus.FAILED and retry.first_try.provider_status == 500
    assert retry.size == retry.first_try.size == "1024x1024"
    assert [c.cost_source for c in job.calls.filter(units_delivered=1)] == [CostSource.CATALOG] * 2
    assert sorted((i.call_id for i in job.images.all()), key=str) == sorted(
        job.calls.filter(units_delivered=1).values_list("pk", flat=True), key=str)


# The fan-out: the job runner splits a batch into the model's calls and makes them at once (the one
# fan-out path; adapters make single calls).


def _tracked_calls(monkeypatch, *, together: int, fail_call: int | None = None) -> dict:
    """Wrap the OpenAI adapter's single call: count calls in flight (the first `together` must be
    in flight at the same time, or the barrier times out) and make call number `fail_call` refused."""
    from creditgate.providers.base import ProviderContentRefused
    from creditgate.providers.openai import OpenAIAdapter

    seen = {"in_flight": 0, "peak": 0, "calls": 0}
    barrier = asyncio.Barrier(together)  # the calls of a job are tasks of one event loop
    real = OpenAIAdapter._generate_image_call

    async def tracked(self, **kwargs):
        seen["calls"] += 1
        number = seen["calls"]
        seen["in_flight"] += 1
        seen["peak"] = max(seen["peak"], seen["in_flight"])
        try:
            if number <= together:
                # TimeoutError unless these calls are in flight together (an event wait, bounded
                # only so that a regression fails instead of hanging).
                await asyncio.wait_for(barrier.wait(), timeout=30)
            if number == fail_call:
                raise ProviderContentRefused()
            return await real(self, **kwargs)
        finally:
            seen["in_flight"] -= 1

    monkeypatch.setattr(OpenAIAdapter, "_generate_image_call", tracked)
    return seen


def test_a_batch_is_split_into_calls_made_at_once_and_bounded_by_the_setting(sandbox, settings, monkeypatch):
    AIModelConfig.objects.filter(model_name="gpt-image-2").update(max_images_per_call=1)
    settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS = 3
    seen = _tracked_calls(monkeypatch, together=3)
    user = make_user(credits=100)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="quality", count=6)
    runtime.wait_idle()
    job.refresh_from_db()
    assert (job.status, job.credits_charged, job.images.count()) == ("succeeded", 30, 6)
    assert seen["calls"] == 6 and seen["peak"] == 3  # three at once, never more than the setting


def test_a_refused_call_of_a_batch_costs_only_its_images(sandbox, settings, monkeypatch):
    AIModelConfig.objects.filter(model_name="gpt-image-2").update(max_images_per_call=2)
    settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS = 1  # one call after the other: the second is refused
    _tracked_calls(monkeypatch, together=1, fail_call=2)
    user = make_user(credits=100)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="quality", count=5)
    runtime.wait_idle()
    job.refresh_from_db()
    # A content refusal does not fail over: 5 asked, 2 refused, 3 delivered and charged.
    assert (job.status, job.images.count(), job.credits_charged) == ("partial", 3, 15)
    assert balance(user)["available"] == 100 - 15
