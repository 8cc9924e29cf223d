"""The shared rules every adapter inherits: sizes, options, fan-out, retries, Retry-After."""

import asyncio
import gc
import threading

import pytest

from creditgate.providers import base
from creditgate.providers.base import (
    CallPolicy,
    ImageOutcome,
    PerLoop,
    ProviderAdapter,
    ProviderAuthError,
    ProviderContentRefused,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ProviderServerError,
    call_sync,
    call_with_retries,
    parse_retry_after,
)
from creditgate.providers.tests.conftest import image_model, policy


class FakeAdapter(ProviderAdapter):
    """Records calls; `behaviour(n)` decides what each call returns or raises."""

    provider_id = "fake"
    default_base_url = "http://fake.invalid/v1"
    option_names = {"negative_prompt": "negativePrompt", "steps": "steps"}

    def __init__(self, behaviour, **kwargs):
        super().__init__(api_key="k", policy=kwargs.pop("policy", policy(max_retries=0)), **kwargs)
        self.behaviour = behaviour
        self.calls: list[int] = []
        self.lock = threading.Lock()

    async def _generate_image_call(self, *, model, prompt, n, width, height, params, task_id=None, record=None):
        with self.lock:
            self.calls.append(n)
        return self.behaviour(n)

    async def generate_text(self, **kwargs):
        raise NotImplementedError

    async def check_credentials(self):
        raise NotImplementedError


def ok(n):
    return [ImageOutcome(ok=True, data=b"img", content_type="image/png") for _ in range(n)]


# Sizes and options.

def test_size_defaults_to_the_models_first_and_must_be_one_of_its_sizes():
    model = image_model(sizes=["1216x832", "1024x1024"])
    assert ProviderAdapter.resolve_size(model=model, size=None) == (1216, 832)
    assert ProviderAdapter.resolve_size(model=model, size="1024x1024") == (1024, 1024)
    with pytest.raises(ProviderRejectedRequest) as caught:
        ProviderAdapter.resolve_size(model=model, size="640x640")
    assert caught.value.details == {"size": ["Choose one of: 1216x832, 1024x1024."]}


def test_options_are_sent_only_when_the_model_accepts_them_and_the_provider_has_them():
    adapter = FakeAdapter(ok)
    model = image_model(optional_params=["negative_prompt", "seed"], request_defaults={"steps": 30, "style": "x"})

    params = adapter.image_params(model=model, options={"negative_prompt": "blur", "steps": 5, "seed": 1,
                                                        "cfg_scale": 2, "bogus": True})

    # steps: not accepted by the model; seed: accepted but this provider cannot express it.
    assert params == {"steps": 30, "style": "x", "negativePrompt": "blur"}


# One call (the job runner makes the calls, several at once: generation's fan-out tests).

def test_count_is_split_by_the_models_per_call_limit():
    adapter = FakeAdapter(ok)
    assert adapter.image_call_sizes(model=image_model(max_images_per_call=3), count=8) == [3, 3, 2]
    assert adapter.image_call_sizes(model=image_model(max_images_per_call=4), count=4) == [4]


def test_a_call_returns_its_n_outcomes():
    adapter = FakeAdapter(ok)
    outcomes = call_sync(adapter.generate_image_batch, model=image_model(max_images_per_call=3), prompt="p", n=3)
    assert adapter.calls == [3] and [o.ok for o in outcomes] == [True] * 3


def test_fewer_images_than_asked_are_padded_with_failures():
    adapter = FakeAdapter(lambda n: ok(n - 1))
    outcomes = call_sync(adapter.generate_image_batch, model=image_model(max_images_per_call=4), prompt="p", n=4)
    assert [o.ok for o in outcomes] == [True, True, True, False]
    assert outcomes[-1].error_code == "provider_bad_response"


def test_a_failed_call_raises_its_error():
    def refuse(n):
        raise ProviderAuthError()

    with pytest.raises(ProviderAuthError):
        call_sync(FakeAdapter(refuse).generate_image_batch, model=image_model(), prompt="p", n=1)


def test_zero_images_is_refused():
    with pytest.raises(ProviderRejectedRequest):
        call_sync(FakeAdapter(ok).generate_image_batch, model=image_model(), prompt="p", n=0)


# Retries.

def test_retryable_errors_are_retried_up_to_the_limit(waits):
    attempts = []

    async def always_busy():
        attempts.append(1)
        raise ProviderServerError()

    with pytest.raises(ProviderServerError):
        call_sync(call_with_retries, always_busy, policy=policy(max_retries=2, retry_base_delay=0.1), what="t")
    assert len(attempts) == 3
    assert 0.075 <= waits[0] <= 0.125 and 0.15 <= waits[1] <= 0.25  # exponential, with jitter


def test_non_retryable_errors_are_raised_at_once(waits):
    attempts = []

    async def refused():
        attempts.append(1)
        raise ProviderContentRefused()

    with pytest.raises(ProviderContentRefused):
        call_sync(call_with_retries, refused, policy=policy(max_retries=3), what="t")
    assert len(attempts) == 1 and waits == []


def test_retry_after_wins_over_backoff_and_is_capped():
    capped = policy(retry_base_delay=5, retry_max_delay=10)
    assert capped.delay_before_retry(1, ProviderRateLimited(retry_after=0.3)) == 0.3
    assert capped.delay_before_retry(1, ProviderRateLimited(retry_after=600)) == 10


@pytest.mark.parametrize("headers, seconds", [
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
    ({"retry-after": "-1"}, None),
    ({}, None),
])
def test_parse_retry_after(headers, seconds):
    assert parse_retry_after(headers) == seconds


def test_policy_reads_settings(settings):
    settings.CREDITGATE_PROVIDER_RETRY_BASE_DELAY = 0.05
    settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS = 4
    configured = CallPolicy.from_settings()
    assert configured.retry_base_delay == 0.05 and configured.max_parallel_calls == 4
    assert configured.image_timeout == 120.0



# Provider clients live as long as their loop, and are closed before it ends or when dropped.

class Client:
    def __init__(self):
        self.closed = threading.Event()

    async def aclose(self):
        self.closed.set()


@pytest.fixture
def running_loop():
    """An event loop running in a thread of its own, as the in-process runner's does."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def built_on(loop, per_loop: PerLoop) -> Client:
    async def get():
        return per_loop.get()
    return asyncio.run_coroutine_threadsafe(get(), loop).result(timeout=10)


def test_a_short_lived_loops_clients_are_closed_before_it_ends():
    per_loop = PerLoop(lambda _key: Client())
    client = call_sync(lambda: asyncio.sleep(0, per_loop.get()))
    assert client.closed.is_set()


def test_a_dropped_adapters_clients_are_closed_on_their_running_loop(running_loop):
    per_loop = PerLoop(lambda _key: Client())
    client = built_on(running_loop, per_loop)
    assert not client.closed.is_set()

    del per_loop  # a replaced adapter, once its last call ended
    gc.collect()
    assert client.closed.wait(timeout=10)


def test_clients_of_a_loop_still_running_at_exit_are_closed(running_loop):
    per_loop = PerLoop(lambda _key: Client())
    client = built_on(running_loop, per_loop)

    base._clients_close_at_exit()
    assert client.closed.is_set()  # waited for: the process ends right after


def test_the_servers_clients_are_closed_at_its_shutdown():
    """The ASGI lifespan (creditgate/asgi.py): uvicorn's loop ends after the shutdown event."""
    from creditgate.asgi import application

    per_loop = PerLoop(lambda _key: Client())
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def serve():
        client = per_loop.get()  # a streamed run's, on the server's loop

        async def receive():
            return next(events)

        async def send(message):
            sent.append(message["type"])

        await application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        return client

    client = asyncio.run(serve())
    assert client.closed.is_set()
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
