"""The Runware adapter against the sandbox over real HTTP."""

from decimal import Decimal

import pytest

from creditgate.providers.base import (
    ProviderAuthError,
    ProviderContentRefused,
    ProviderQuotaExhausted,
    ProviderRejectedRequest,
    ProviderServerError,
    ProviderTimeout,
    call_sync,
)
from creditgate.providers.runware import RunwareAdapter, RunwareAPIError
from creditgate.providers.tests.conftest import image_model

PNG = b"\x89PNG\r\n\x1a\n"
INFERENCE = "runware.imageInference"
LOOKUP = "runware.getResponse"


def hidream(**fields):
    return image_model("runware:97@1", **{"sizes": ["1024x1024", "1216x832"], "max_images_per_call": 20,
                                          "optional_params": ["negative_prompt", "steps", "cfg_scale", "seed"],
                                          "request_defaults": {"steps": 30}, **fields})


def nano_banana_pro(**fields):
    return image_model("google:4@2", **{"sizes": ["1024x1024", "1264x848"], "max_images_per_call": 20,
                                        "optional_params": ["seed"], **fields})


@pytest.mark.parametrize("count", [1, 8])
def test_a_batch_model_takes_the_whole_count_in_one_task(runware_adapter, sandbox, count):
    outcomes = call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="a red fox in snow", n=count)

    assert len(outcomes) == count
    assert all(o.ok and o.data.startswith(PNG) and o.content_type == "image/png" for o in outcomes)
    assert all(o.cost_usd == Decimal("0.009") and o.seed and o.provider_image_id for o in outcomes)
    assert len({o.provider_task_id for o in outcomes}) == 1
    assert sandbox.stats[INFERENCE] == 1
    assert sandbox.last_request(INFERENCE)["numberResults"] == count
    assert sandbox.stats["runware.image_file"] == count  # every URL copied at once


@pytest.mark.parametrize("count", [1, 8])
def test_a_one_per_call_model_fans_out(runware_adapter, sandbox, count):
    model = hidream(max_images_per_call=1)
    # What the job runner does (generation.services, at once there): one call per size.
    outcomes = [o for n in runware_adapter.image_call_sizes(model=model, count=count)
                for o in call_sync(runware_adapter.generate_image_batch, model=model, prompt="fox", n=n)]

    assert [o.ok for o in outcomes] == [True] * count
    assert sandbox.stats[INFERENCE] == count
    assert len({body["taskUUID"] for body in sandbox.requests(INFERENCE)}) == count


def test_task_has_the_documented_fields_and_only_accepted_options(runware_adapter, sandbox):
    call_sync(runware_adapter.generate_image_batch,
        model=hidream(optional_params=["negative_prompt", "seed"]), prompt="a fox",
                                    n=2, size="1216x832",
                                    options={"negative_prompt": "blurry", "seed": 42, "steps": 5, "cfg_scale": 3,
                                             "unknown": 1})

    task = sandbox.last_request(INFERENCE)
    assert task["taskType"] == "imageInference" and task["model"] == "runware:97@1"
    assert task["positivePrompt"] == "a fox" and (task["width"], task["height"]) == (1216, 832)
    assert task["numberResults"] == 2 and task["includeCost"] is True and task["outputType"] == "URL"
    assert task["negativePrompt"] == "blurry" and task["seed"] == 42
    assert task["steps"] == 30  # request_defaults always; the caller's steps dropped: not accepted
    assert "CFGScale" not in task and "unknown" not in task


def test_a_model_without_negative_prompt_steps_or_cfg_never_gets_them(runware_adapter, sandbox):
    outcomes = call_sync(runware_adapter.generate_image_batch,
        model=nano_banana_pro(), prompt="a fox", n=2, size="1264x848",
                                               options={"negative_prompt": "x", "steps": 9, "cfg_scale": 2, "seed": 7})

    assert all(o.ok for o in outcomes)  # the far end rejects those parameters for this model
    task = sandbox.last_request(INFERENCE)
    assert not {"negativePrompt", "steps", "CFGScale"} & set(task)
    assert task["seed"] == 7
    assert [o.seed for o in outcomes] == [7, 8]


def test_a_size_the_model_does_not_take_is_refused_before_any_call(runware_adapter, sandbox):
    with pytest.raises(ProviderRejectedRequest):
        call_sync(runware_adapter.generate_image_batch,
            model=nano_banana_pro(), prompt="a fox", n=1, size="1000x1000")
    assert sandbox.stats.get("runware", 0) == 0


def test_rate_limit_then_success_is_one_delivery_after_retry_after(runware_adapter, sandbox, waits):
    sandbox.configure(retry_after_s=0.4)
    sandbox.fail_next(1, "rate_limit")

    outcomes = call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="fox", n=3)

    assert [o.ok for o in outcomes] == [True] * 3
    assert sandbox.stats[INFERENCE] == 2
    assert waits == [0.4]
    first, second = sandbox.requests(INFERENCE)
    assert first["taskUUID"] != second["taskUUID"]  # the first task was answered (429), so it ended


def test_server_error_is_retried_then_reported(runware_adapter, sandbox, waits):
    sandbox.configure(error_rate=1.0, error_kind="server_error")
    with pytest.raises(ProviderServerError) as caught:
        call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="fox", n=2)
    assert sandbox.stats[INFERENCE] == 3 and len(waits) == 2
    assert isinstance(caught.value.__cause__, RunwareAPIError)
    assert caught.value.__cause__.status == 500  # the provider's answer, chained for the log
    assert "internalServerError" not in str(caught.value)


@pytest.mark.parametrize("kind, error", [("content_refusal", ProviderContentRefused),
                                         ("quota", ProviderQuotaExhausted)])
def test_refusal_and_quota_are_not_retried(runware_adapter, sandbox, waits, kind, error):
    sandbox.fail_next(1, kind)
    with pytest.raises(error):
        call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="fox", n=2)
    assert sandbox.stats[INFERENCE] == 1 and waits == []


@pytest.mark.parametrize("envelope", ["errors", "error", "list"])
def test_all_three_error_envelopes_are_understood(runware_adapter, sandbox, envelope):
    sandbox.configure(runware_error_envelope=envelope)
    sandbox.fail_next(1, "content_refusal")
    with pytest.raises(ProviderContentRefused):
        call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="fox", n=1)


def test_partial_batch_gives_ok_and_failed_outcomes(runware_adapter, sandbox):
    sandbox.configure(error_rate=1.0, error_kind="partial")

    outcomes = call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="fox", n=4)

    assert len(outcomes) == 4
    assert [o.ok for o in outcomes] == [True, True, False, False]
    assert all(o.error_code == "provider_unavailable" and o.error_message for o in outcomes if not o.ok)
    assert sandbox.stats[INFERENCE] == 1  # a partial answer is final: retrying would bill the good images twice


def test_ambiguous_timeout_is_looked_up_not_resubmitted(sandbox, settings, waits):
    settings.CREDITGATE_PROVIDER_IMAGE_TIMEOUT = 0.5
    sandbox.fail_next(1, "timeout")  # the task runs, its answer never arrives
    adapter = RunwareAdapter(api_key="sandbox", base_url=f"{sandbox.url}/runware/v1")

    outcomes = call_sync(adapter.generate_image_batch, model=hidream(), prompt="fox", n=2)

    assert [o.ok for o in outcomes] == [True, True]
    assert sandbox.stats[INFERENCE] == 1
    assert sandbox.stats[LOOKUP] == 1
    assert sandbox.last_request(LOOKUP)["taskUUID"] == sandbox.last_request(INFERENCE)["taskUUID"]


def test_timeout_of_a_task_the_provider_never_saw_fails_without_resubmitting(runware_adapter, sandbox, waits,
                                                                          monkeypatch):
    import httpx
    import respx

    from creditgate.providers import runware

    with respx.mock(assert_all_called=False) as mock, pytest.raises(ProviderTimeout) as caught:
        # The inference request is lost on the way (read timeout); the lookups reach the sandbox.
        mock.post(url__startswith=sandbox.url, content__contains=b"imageInference").mock(
            side_effect=httpx.ReadTimeout("read timed out"))
        mock.route().pass_through()
        call_sync(runware_adapter.generate_image_batch, model=hidream(), prompt="fox", n=1)

    assert sandbox.stats.get(INFERENCE, 0) == 0
    assert sandbox.stats[LOOKUP] == runware.RunwareAdapter.lookup_attempts
    assert isinstance(caught.value.__cause__, ProviderTimeout)


def test_wrong_key_is_an_auth_error_without_the_key_in_it(sandbox):
    adapter = RunwareAdapter(api_key="rw-secret-key-777", base_url=f"{sandbox.url}/runware/v1")
    with pytest.raises(ProviderAuthError) as caught:
        call_sync(adapter.generate_image_batch, model=hidream(), prompt="fox", n=1)
    assert "secret" not in str(caught.value) and "777" not in str(caught.value)
    assert sandbox.stats["runware"] == 1


def test_runware_serves_no_text(runware_adapter):
    with pytest.raises(ProviderRejectedRequest):
        call_sync(runware_adapter.generate_text, model=hidream(), prompt="hi", max_tokens=10)


def test_check_credentials(runware_adapter, sandbox):
    assert call_sync(runware_adapter.check_credentials).ok
    wrong = RunwareAdapter(api_key="wrong-key-5150", base_url=f"{sandbox.url}/runware/v1")
    check = call_sync(wrong.check_credentials)
    assert not check.ok and check.message == "Runware rejected the API key."
