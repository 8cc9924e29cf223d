"""The OpenAI adapter against the sandbox over real HTTP (the SDK speaks HTTPX2 over aiohttp to a local server)."""

import socket
import threading

import pytest

from creditgate.providers.base import (
    ProviderAuthError,
    ProviderContentRefused,
    ProviderError,
    ProviderModelGone,
    ProviderQuotaExhausted,
    ProviderRejectedRequest,
    ProviderServerError,
    ProviderTimeout,
    call_sync,
)
from creditgate.providers.openai import OpenAIAdapter
from creditgate.providers.tests.conftest import each_call, image_model, text_model

PNG = b"\x89PNG\r\n\x1a\n"
IMAGES = "openai.images.generations"
CHAT = "openai.chat.completions"


# Images.

@pytest.mark.parametrize("count", [1, 8])
def test_one_image_per_call_model_fans_out_into_count_calls(openai_adapter, sandbox, count):
    model = image_model("gpt-image-2", max_images_per_call=1)

    outcomes = each_call(openai_adapter, model=model, prompt="a red fox", count=count)

    assert len(outcomes) == count
    assert all(o.ok and (o.data or b"").startswith(PNG) and o.content_type == "image/png" for o in outcomes)
    assert sandbox.stats[IMAGES] == count
    assert all(body["n"] == 1 for body in sandbox.requests(IMAGES))


@pytest.mark.parametrize("count", [1, 8])
def test_batch_model_asks_for_all_images_in_one_call(openai_adapter, sandbox, count):
    model = image_model("gpt-image-2", max_images_per_call=10)

    outcomes = call_sync(openai_adapter.generate_image_batch, model=model, prompt="a red fox", n=count)

    assert [o.ok for o in outcomes] == [True] * count
    assert sandbox.stats[IMAGES] == 1
    assert sandbox.last_request(IMAGES)["n"] == count


def test_count_above_the_per_call_limit_is_split_into_calls_that_add_up(openai_adapter, sandbox):
    model = image_model("gpt-image-2", max_images_per_call=3)
    assert openai_adapter.image_call_sizes(model=model, count=8) == [3, 3, 2]
    outcomes = each_call(openai_adapter, model=model, prompt="foxes", count=8)

    assert len(outcomes) == 8 and all(o.ok for o in outcomes)
    assert sorted(body["n"] for body in sandbox.requests(IMAGES)) == [2, 3, 3]


def test_url_answers_are_downloaded_so_the_bytes_outlive_the_url(openai_adapter, sandbox):
    # dall-e-3 answered with URLs that expire after an hour; the adapter must copy the bytes.
    outcomes = each_call(openai_adapter, model=image_model("dall-e-3"), prompt="a fox", count=2)

    assert all(o.ok and (o.data or b"").startswith(PNG) and (o.source_url or "").startswith(sandbox.url)
               for o in outcomes)
    assert sandbox.stats["openai.image_file"] == 2


def test_request_carries_model_size_and_defaults_but_never_response_format(openai_adapter, sandbox):
    model = image_model("gpt-image-2", sizes=["1024x1024", "1536x1024"], request_defaults={"quality": "medium"})

    call_sync(openai_adapter.generate_image_batch, model=model, prompt="a fox", n=1, size="1536x1024",
                                   options={"negative_prompt": "blur", "steps": 10})

    body = sandbox.last_request(IMAGES)
    assert body["model"] == "gpt-image-2" and body["size"] == "1536x1024" and body["quality"] == "medium"
    assert "response_format" not in body
    assert "negative_prompt" not in body and "steps" not in body  # the Images API has no such parameters


def test_default_size_is_the_models_first(openai_adapter, sandbox):
    call_sync(openai_adapter.generate_image_batch,
        model=image_model(sizes=["1536x1024", "1024x1024"]), prompt="x", n=1)
    assert sandbox.last_request(IMAGES)["size"] == "1536x1024"


def test_a_size_the_model_does_not_take_is_refused_before_any_call(openai_adapter, sandbox):
    with pytest.raises(ProviderRejectedRequest) as caught:
        call_sync(openai_adapter.generate_image_batch,
            model=image_model(sizes=["1024x1024"]), prompt="x", n=1, size="512x512")
    assert "512x512" in caught.value.message
    assert sandbox.stats.get(IMAGES, 0) == 0


def test_rate_limited_call_is_retried_after_retry_after_and_delivers_once(openai_adapter, sandbox, waits):
    sandbox.configure(retry_after_s=0.25)
    sandbox.fail_next(1, "rate_limit")

    outcomes = call_sync(openai_adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)

    assert [o.ok for o in outcomes] == [True]
    assert sandbox.stats[IMAGES] == 2
    assert waits == [0.25]


def test_retry_after_is_capped(sandbox, settings, waits):
    settings.CREDITGATE_PROVIDER_RETRY_MAX_DELAY = 0.5
    sandbox.configure(retry_after_s=90)
    sandbox.fail_next(1, "rate_limit")
    adapter = OpenAIAdapter(api_key="sandbox", base_url=f"{sandbox.url}/openai/v1")

    call_sync(adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)

    assert waits == [0.5]


def test_insufficient_quota_is_not_retried(openai_adapter, sandbox, waits):
    sandbox.fail_next(1, "quota")

    with pytest.raises(ProviderQuotaExhausted) as caught:
        call_sync(openai_adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)

    assert sandbox.stats[IMAGES] == 1 and waits == []
    assert caught.value.__cause__ is not None  # chained to the SDK's RateLimitError


def test_content_refusal_is_not_retried_and_reads_plainly(openai_adapter, sandbox, waits):
    sandbox.fail_next(1, "content_refusal")

    with pytest.raises(ProviderContentRefused) as caught:
        call_sync(openai_adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)

    assert sandbox.stats[IMAGES] == 1 and waits == []
    assert caught.value.code == "content_refused"
    assert "safety system" not in str(caught.value)  # the provider's own text stays out


def test_server_error_is_retried_then_reported(openai_adapter, sandbox, waits):
    sandbox.configure(error_rate=1.0, error_kind="server_error")

    with pytest.raises(ProviderServerError) as caught:
        call_sync(openai_adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)

    assert sandbox.stats[IMAGES] == 3  # the first try and two retries
    assert len(waits) == 2
    assert isinstance(caught.value, ProviderError) and caught.value.status_code == 502


def test_partial_fan_out_keeps_the_calls_that_worked(openai_adapter, sandbox):
    sandbox.configure(error_rate=1.0, error_kind="partial")

    outcomes = each_call(openai_adapter, model=image_model("gpt-image-2"), prompt="fox", count=8)

    assert len(outcomes) == 8
    assert sum(o.ok for o in outcomes) == 4
    failed = [o for o in outcomes if not o.ok]
    assert all(o.error_code == "content_refused" and o.error_message and o.data is None for o in failed)


def test_every_call_failing_fails_every_image(openai_adapter, sandbox):
    sandbox.configure(error_rate=1.0, error_kind="content_refusal")
    outcomes = each_call(openai_adapter, model=image_model("gpt-image-2"), prompt="fox", count=3)
    assert [o.error_code for o in outcomes] == ["content_refused"] * 3
    assert sandbox.stats[IMAGES] == 3


def test_timeout_is_retried_then_reported(sandbox, settings, waits):
    settings.CREDITGATE_PROVIDER_IMAGE_TIMEOUT = 0.3
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 1
    sandbox.configure(error_rate=1.0, error_kind="timeout")
    adapter = OpenAIAdapter(api_key="sandbox", base_url=f"{sandbox.url}/openai/v1")

    with pytest.raises(ProviderTimeout):
        call_sync(adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)
    assert sandbox.stats[IMAGES] == 2


def test_wrong_key_is_an_auth_error_without_the_key_in_it(sandbox):
    adapter = OpenAIAdapter(api_key="sk-live-secret-1234567890", base_url=f"{sandbox.url}/openai/v1")

    with pytest.raises(ProviderAuthError) as caught:
        call_sync(adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="fox", n=1)

    assert "secret" not in str(caught.value) and "7890" not in str(caught.value)
    assert "secret" not in repr(adapter)
    assert sandbox.stats[IMAGES] == 1  # not retried


# Text.

def test_text_reports_the_providers_token_usage(openai_adapter, sandbox):
    result = call_sync(openai_adapter.generate_text,
        model=text_model(), prompt="Write about foxes in winter.", max_tokens=300)

    assert result.content
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens
    assert result.provider_request_id.startswith("req_")
    body = sandbox.last_request(CHAT)
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert body["reasoning_effort"] == "none"  # the model's request_defaults
    assert body["messages"] == [{"role": "user", "content": "Write about foxes in winter."}]


def test_text_is_cut_at_max_tokens(openai_adapter):
    result = call_sync(openai_adapter.generate_text,
        model=text_model(), prompt="Write a long essay " * 20, max_tokens=20)
    assert result.completion_tokens == 20 and result.finish_reason == "length"


def test_temperature_only_for_models_that_accept_it(openai_adapter, sandbox):
    call_sync(openai_adapter.generate_text, model=text_model(), prompt="hi there", max_tokens=50, temperature=0.7)
    assert sandbox.last_request(CHAT)["temperature"] == 0.7

    call_sync(openai_adapter.generate_text, model=text_model(optional_params=[]), prompt="hi there", max_tokens=50,
                                 temperature=0.7)
    assert "temperature" not in sandbox.last_request(CHAT)


def test_temperature_refused_by_the_model_is_dropped_once(openai_adapter, sandbox):
    # With reasoning effort above none, the far end refuses a non-default temperature (PROVIDERS.md §3).
    model = text_model(request_defaults={"reasoning_effort": "low"})

    result = call_sync(openai_adapter.generate_text, model=model, prompt="hi there", max_tokens=50, temperature=0.7)

    assert result.total_tokens > 0
    first, second = sandbox.requests(CHAT)
    assert first["temperature"] == 0.7 and "temperature" not in second


def test_text_rate_limit_then_success(openai_adapter, sandbox, waits):
    sandbox.fail_next(1, "rate_limit")
    result = call_sync(openai_adapter.generate_text, model=text_model(), prompt="hi there", max_tokens=50)
    assert result.total_tokens > 0 and sandbox.stats[CHAT] == 2 and waits == [0.02]


def test_unknown_model_is_gone_without_retry_and_another_model_may_serve(openai_adapter, sandbox, waits):
    with pytest.raises(ProviderModelGone) as caught:
        call_sync(openai_adapter.generate_text, model=text_model("gpt-image-1"), prompt="hi", max_tokens=50)
    assert "no longer available" in caught.value.message
    assert (caught.value.code, caught.value.failover) == ("model_unavailable", True)
    assert waits == []


# Credentials.

def test_check_credentials(openai_adapter, sandbox):
    assert call_sync(openai_adapter.check_credentials).ok

    wrong = OpenAIAdapter(api_key="sk-wrong-9f2c", base_url=f"{sandbox.url}/openai/v1")
    check = call_sync(wrong.check_credentials)
    assert not check.ok and "rejected" in check.message and "9f2c" not in check.message


def test_unreachable_provider_is_a_readable_check(settings):
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    check = call_sync(OpenAIAdapter(api_key="k", base_url="http://127.0.0.1:9/v1").check_credentials)
    assert not check.ok and "could not be reached" in check.message


def test_a_server_that_hangs_up_could_not_be_reached_rather_than_timed_out(settings):
    """The SDK's aiohttp transport reports a dropped connection as a connect timeout: it is told
    apart from a real timeout (`test_timeout_is_retried_then_reported`)."""
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with pytest.raises(ProviderServerError) as caught:
            call_sync(OpenAIAdapter(api_key="k", base_url=f"http://127.0.0.1:{port}/v1").generate_text,
                      model=text_model(), prompt="hi", max_tokens=5)
    finally:
        listener.close()
    assert not isinstance(caught.value, ProviderTimeout) and "could not be reached" in caught.value.message
