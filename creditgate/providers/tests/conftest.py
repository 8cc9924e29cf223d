import dataclasses

import pytest

from creditgate.catalog.models import AIModelConfig
from creditgate.providers import base
from creditgate.providers.base import call_sync
from creditgate.providers.openai import OpenAIAdapter
from creditgate.providers.runware import RunwareAdapter


@pytest.fixture
def waits(monkeypatch):
    """The backoff waits the adapters asked for, recorded instead of slept."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(base, "sleep", sleep)
    return recorded


def policy(**overrides) -> base.CallPolicy:
    """The configured call policy with some values changed."""
    return dataclasses.replace(base.CallPolicy.from_settings(), **overrides)


def image_model(name="test-image", **fields) -> AIModelConfig:
    """An unsaved catalog row: adapters only read it, so tests need no database for it."""
    values = {"model_type": "image", "sizes": ["1024x1024", "1536x1024"], "max_images_per_call": 1,
              "optional_params": [], "request_defaults": {}, **fields}
    return AIModelConfig(model_name=name, display_name=name, **values)


def text_model(name="gpt-5.1", **fields) -> AIModelConfig:
    values = {"model_type": "text", "optional_params": ["temperature"],
              "request_defaults": {"reasoning_effort": "none"}, **fields}
    return AIModelConfig(model_name=name, display_name=name, **values)


@pytest.fixture
def openai_adapter(sandbox):
    return OpenAIAdapter(api_key="sandbox", base_url=f"{sandbox.url}/openai/v1")


@pytest.fixture
def runware_adapter(sandbox):
    return RunwareAdapter(api_key="sandbox", base_url=f"{sandbox.url}/runware/v1")


def each_call(adapter, *, model: AIModelConfig, prompt: str, count: int) -> list[base.ImageOutcome]:
    """The calls a `count`-image request is split into, one after the other (the job runner makes
    them at once: generation's fan-out tests), a call that fails counting as failed outcomes."""
    outcomes: list[base.ImageOutcome] = []
    for n in adapter.image_call_sizes(model=model, count=count):
        try:
            outcomes += call_sync(adapter.generate_image_batch, model=model, prompt=prompt, n=n)
        except base.ProviderError as exc:
            outcomes += [base.ImageOutcome.failed(exc)] * n
    return outcomes
