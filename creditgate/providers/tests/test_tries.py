"""Every request an adapter sends is reported, as it ends, to the caller's recorder: retries and
failures included, with the provider's request id, status and code, latency, usage and cost."""

import uuid
from decimal import Decimal

import pytest

from creditgate.providers import runware
from creditgate.providers.base import (
    ProviderContentRefused,
    ProviderError,
    ProviderRateLimited,
    ProviderTry,
    call_sync,
    call_with_retries,
)
from creditgate.providers.tests.conftest import policy, text_model
from creditgate.providers.tests.test_runware_adapter import hidream

pytestmark = pytest.mark.usefixtures("waits")


def test_call_with_retries_reports_each_try_in_order():
    tries: list[ProviderTry] = []
    answers = iter([ProviderRateLimited(), ProviderRateLimited(), "done"])

    async def call():
        answer = next(answers)
        if isinstance(answer, ProviderError):
            answer.request_id, answer.provider_status, answer.provider_code = "req-x", 429, "rate_limit_exceeded"
            raise answer
        return answer

    result = call_sync(call_with_retries, call, policy=policy(max_retries=2), what="t", record=tries.append,
                               describe=lambda r: {"request_id": f"req-{r}", "units": 1})
    assert result == "done"
    assert [(t.ok, t.error_class, t.error_code, t.provider_status, t.provider_code, t.request_id) for t in tries] == [
        (False, "ProviderRateLimited", "provider_rate_limited", 429, "rate_limit_exceeded", "req-x"),
        (False, "ProviderRateLimited", "provider_rate_limited", 429, "rate_limit_exceeded", "req-x"),
        (True, "", "", None, "", "req-done")]
    assert all(t.latency_ms is not None and t.latency_ms >= 0 for t in tries)
    first, second, third = (t.started_at for t in tries)
    assert first is not None and second is not None and third is not None
    assert first <= second <= third


def test_a_try_that_is_not_retried_is_still_reported():
    async def refused():
        raise ProviderContentRefused()

    tries: list[ProviderTry] = []
    with pytest.raises(ProviderContentRefused):
        call_sync(call_with_retries, refused, policy=policy(max_retries=2), what="t", record=tries.append)
    assert [(t.ok, t.error_code) for t in tries] == [(False, "content_refused")]


def test_runware_reports_each_task_with_its_uuid_status_and_cost(runware_adapter, sandbox):
    sandbox.fail_next(1, "server_error")
    task_id, tries = str(uuid.uuid4()), list[ProviderTry]()
    outcomes = call_sync(runware_adapter.generate_image_batch,
        model=hidream(), prompt="a fox", n=2, task_id=task_id,
                                                    record=tries.append)
    assert [o.ok for o in outcomes] == [True, True]
    retry_uuid = runware._task_uuids(task_id, 2)[1]
    assert [body["taskUUID"] for body in sandbox.requests("runware.imageInference")] == [task_id, retry_uuid]
    failed, ok = tries
    assert (failed.ok, failed.request_id, failed.provider_status, failed.provider_code, failed.error_class) == (
        False, task_id, 500, "internalServerError", "ProviderServerError")
    assert (ok.ok, ok.request_id, ok.units, ok.cost_usd) == (True, retry_uuid, 2, Decimal("0.018"))


def test_runware_without_a_reported_cost_reports_none(runware_adapter, sandbox):
    sandbox.configure(runware_cost=False)
    tries: list[ProviderTry] = []
    call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="a fox", n=1, record=tries.append)
    assert [(t.ok, t.units, t.cost_usd) for t in tries] == [(True, 1, None)]


def test_a_resumed_call_reports_the_tries_the_provider_still_knows(runware_adapter, sandbox):
    sandbox.fail_next(1, "partial")  # one image asked: the task fails as a whole, and a retry delivers
    task_id = str(uuid.uuid4())
    call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="a fox", n=1, task_id=task_id)

    tries: list[ProviderTry] = []
    outcomes = call_sync(runware_adapter.resume_images, model=hidream(), task_id=task_id, n=1, record=tries.append)
    assert [o.ok for o in outcomes] == [True]
    retry_uuid = runware._task_uuids(task_id, 2)[1]
    assert [(t.ok, t.request_id, t.latency_ms, t.error_code, t.provider_code) for t in tries] == [
        (False, task_id, None, "provider_unavailable", "inferenceError"), (True, retry_uuid, None, "", "")]
    assert tries[1].cost_usd == Decimal("0.009")


def test_openai_reports_request_ids_statuses_and_usage(openai_adapter, sandbox):
    sandbox.fail_next(1, "rate_limit")
    tries: list[ProviderTry] = []
    result = call_sync(openai_adapter.generate_text, model=text_model(), prompt="Write about foxes.", max_tokens=50,
                                          temperature=0.7, record=tries.append)
    answers = sandbox.answers("openai.chat.completions")
    assert ([(a["status"], a["request_id"]) for a in answers]
            == [(t.provider_status or 200, t.request_id) for t in tries])
    failed, ok = tries
    assert (failed.error_class, failed.provider_code) == ("ProviderRateLimited", "rate_limit_exceeded")
    assert (ok.units, ok.prompt_tokens, ok.completion_tokens, ok.finish_reason, ok.cost_usd) == (
        1, result.prompt_tokens, result.completion_tokens, result.finish_reason, None)


def test_openai_reports_the_try_refused_for_its_temperature_and_the_one_without(openai_adapter, sandbox):
    tries: list[ProviderTry] = []
    call_sync(openai_adapter.generate_text,
        model=text_model(request_defaults={"reasoning_effort": "low"}), prompt="Foxes.",
                                 max_tokens=50, temperature=0.7, record=tries.append)
    assert [(t.ok, t.error_class, t.provider_status, t.provider_code) for t in tries] == [
        (False, "ProviderRejectedRequest", 400, "unsupported_value"), (True, "", None, "")]
    assert "temperature" not in sandbox.last_request("openai.chat.completions")
