"""/v1 through OpenAI's official Python SDK, sync and async, against the real ASGI server and the
provider sandbox: what a customer who points `OpenAI(base_url=...)` at creditgate sees, and what
it costs them."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
from typing import Any

import httpx
import openai
import pytest
import requests
from openai.types.chat import ChatCompletionMessageParam

from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.generation import charging
from creditgate.generation.models import Job, JobStatus
from creditgate.generation.tests.conftest import START_CREDITS, make_user
from creditgate.openai_compat.tests.conftest import api_key_for
from creditgate.providers import tokens

PROMPT: list[ChatCompletionMessageParam] = [{"role": "system", "content": "You write short answers."},
          {"role": "user", "content": "Tell me about the lighthouse keeper and his three cats."}]


def client(server, key: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30, **kwargs)


def available(user) -> int:
    return credits_selectors.balance_get(account=credits_services.account_for_user(user=user))["available"]


def expected_charge(job: Job) -> int:
    assert job.total_tokens is not None and job.tokens_per_credit
    return min(job.credits_held, math.ceil(job.total_tokens / job.tokens_per_credit))


def test_models_lists_the_default_text_model_its_alias_and_the_image_tiers_never_image_model_names(
        v1_server, v1_key):
    listed = client(v1_server, v1_key).models.list().data
    ids = [m.id for m in listed]
    from creditgate.catalog import selectors as catalog_selectors

    routing = catalog_selectors.routing_get()
    assert routing.text_model is not None
    assert ids[:2] == [routing.text_model.model_name, "default"]
    assert set(ids[2:]) == {"image-basic", "image-quality", "image-premium"}
    image_names = {m.model_name for m in routing.image_models.values()}
    assert not image_names & set(ids)
    prices = {m.id: (m.model_extra or {})["creditgate"] for m in listed}
    assert prices["image-basic"]["credits_per_image"] == 1
    assert prices["image-premium"]["credits_per_image"] == 15
    assert prices["default"]["tokens_per_credit"] == routing.text_model.tokens_per_credit


def test_a_chat_completion_is_charged_ceil_tokens_over_tokens_per_credit(v1_server, v1_user, v1_key, gen_env):
    raw = client(v1_server, v1_key).chat.completions.with_raw_response.create(model="default", messages=PROMPT)
    completion: Any = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    job = Job.objects.get(pk=raw.headers["x-creditgate-job-id"])
    # A text job like the job API's, with its messages: one non-streamed provider call.
    assert (job.status, job.kind, job.streamed, job.messages) == (JobStatus.SUCCEEDED, "text", False, PROMPT)
    assert gen_env.stats["openai.chat.completions"] == 1 and not gen_env.state.streams
    assert job.total_tokens == completion.usage.total_tokens
    charged = int(raw.headers["x-creditgate-credits-charged"])
    assert charged == expected_charge(job) > 0
    assert available(v1_user) == START_CREDITS - charged
    assert charging.charges_audit() == []


def test_a_stream_arrives_chunk_by_chunk_ends_with_usage_and_says_what_it_cost(v1_server, v1_user, v1_key, gen_env):
    sdk = client(v1_server, v1_key)
    whole = sdk.chat.completions.create(model="default", messages=PROMPT).choices[0].message.content
    spent = START_CREDITS - available(v1_user)

    chunks: list[Any] = list(sdk.chat.completions.create(model="default", messages=PROMPT, stream=True,
                                              stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 10  # one chunk per token, as they came
    assert "".join(pieces) == whole
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    cost = last.model_extra["creditgate"]
    job = Job.objects.get(pk=cost["job_id"])
    assert chunks[0].model_extra["creditgate"] == {"job_id": str(job.pk), "credits_held": job.credits_held}
    assert job.total_tokens == last.usage.total_tokens
    assert cost["credits_charged"] == job.credits_charged == expected_charge(job)
    assert available(v1_user) == START_CREDITS - spent - job.credits_charged
    assert gen_env.state.streams[-1].outcome == "completed"


def test_the_async_sdk_streams_and_answers_too(v1_server, v1_key):
    async def both():
        sdk = openai.AsyncOpenAI(base_url=f"{v1_server.url}/v1", api_key=v1_key, max_retries=0, timeout=30)
        stream: Any = await sdk.chat.completions.create(model="default", messages=PROMPT, stream=True)
        pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        completion = await sdk.chat.completions.create(model="default", messages=PROMPT)
        await sdk.close()
        return "".join(pieces), completion.choices[0].message.content

    streamed, answered = asyncio.run(both())
    assert streamed == answered != ""


def test_images_by_tier_as_base64_and_as_urls_charged_per_image(v1_server, v1_user, v1_key):
    sdk = client(v1_server, v1_key)
    raw = sdk.images.with_raw_response.generate(model="image-quality", prompt="a red fox", n=2,
                                                response_format="b64_json")
    images: Any = raw.parse().data
    assert len(images) == 2
    assert base64.b64decode(images[0].b64_json)[:8] == b"\x89PNG\r\n\x1a\n"
    assert raw.headers["x-creditgate-credits-charged"] == "10"

    by_url: Any = sdk.images.generate(model="image-basic", prompt="a blue fox").data
    fetched = requests.get(by_url[0].url, timeout=10)  # no credentials: the URL is signed
    assert fetched.status_code == 200 and fetched.content[:4] == b"\x89PNG"
    assert requests.get(by_url[0].url + "x", timeout=10).status_code == 404
    assert available(v1_user) == START_CREDITS - 10 - 1


def test_errors_are_the_sdks_own_classes(v1_server, v1_user, v1_key, settings):
    with pytest.raises(openai.AuthenticationError):
        client(v1_server, "cg_not.a-key").models.list()
    sdk = client(v1_server, v1_key)
    with pytest.raises(openai.NotFoundError) as gone:
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=PROMPT)
    assert gone.value.code == "model_not_found" and gone.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        sdk.images.generate(model="default", prompt="a fox")
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="default", messages=PROMPT, temperature=7)
    assert bad.value.param == "temperature"

    broke = make_user("broke", credits=0)
    with pytest.raises(openai.APIStatusError) as refused:
        client(v1_server, api_key_for(broke)).chat.completions.create(model="default", messages=PROMPT)
    assert refused.value.status_code == 402 and refused.value.code == "insufficient_credits"

    settings.CREDITGATE_GENERATION_RATE = (1, 3600)
    jobs = Job.objects.count()
    sdk.chat.completions.create(model="default", messages=PROMPT)
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="default", messages=PROMPT)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert Job.objects.count() == jobs + 1  # the refused request held and ran nothing


def test_a_replayed_idempotency_key_returns_the_stored_completion_without_calling_the_provider(
        v1_server, v1_user, v1_key, gen_env):
    sdk = client(v1_server, v1_key)
    headers = {"Idempotency-Key": "chat-1"}
    first: Any = sdk.chat.completions.create(model="default", messages=PROMPT, stream=True, extra_headers=headers)
    text = "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    calls = len(gen_env.state.streams)
    left = available(v1_user)
    replay = sdk.chat.completions.with_raw_response.create(model="default", messages=PROMPT, stream=True,
                                                          extra_headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["content-type"].startswith("application/json")  # stored, not streamed again
    replay.http_response.read()
    assert replay.http_response.json()["choices"][0]["message"]["content"] == text
    assert len(gen_env.state.streams) == calls and available(v1_user) == left


# --- How a stream that does not end well is charged --------------------------------------------


def _stream_pieces(server, key: str, n: int) -> tuple[str, list[str]]:
    """Read `n` content pieces of a stream, then hang up; (job id, the pieces)."""
    pieces: list[str] = []
    body = {"model": "default", "messages": PROMPT, "stream": True}
    with httpx.Client(timeout=30) as http, http.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                                                       headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        job_id = response.headers["x-creditgate-job-id"]
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                pieces.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
                if len(pieces) == n:
                    break
    return job_id, pieces


def _final(job_id) -> Job:
    from creditgate.core.tests.polling import wait_for

    def settled() -> Job | None:
        job = Job.objects.get(pk=job_id)
        return job if job.is_final else None

    job = wait_for(settled, timeout=30, what="the job to be settled")
    assert job is not None
    return job


def test_a_client_that_hangs_up_after_3_chunks_pays_for_the_tokens_the_provider_produced(
        v1_server, v1_user, v1_key, gen_env):
    gen_env.configure(stream_tokens_per_second=20)
    job_id, pieces = _stream_pieces(v1_server, v1_key, 3)
    job = _final(job_id)
    from creditgate.core.tests.polling import wait_for

    record = wait_for(lambda: gen_env.state.streams and gen_env.state.streams[-1].outcome != "streaming"
                      and gen_env.state.streams[-1], timeout=30, what="the sandbox to see the hang-up")
    assert record.outcome == "client_gone"
    assert record.tokens_sent < record.completion_tokens  # the provider stopped: it did not write it all
    prompt = tokens.chat_prompt_tokens(job.messages or [], job.text_model_name)
    assert job.status == JobStatus.PARTIAL and job.error_code == "stream_stopped"
    assert job.prompt_tokens == prompt
    # Every token the client saw, and none the provider did not produce.
    assert job.completion_tokens is not None and 3 <= job.completion_tokens <= record.tokens_sent
    assert job.text.startswith("".join(pieces))
    assert job.credits_charged == expected_charge(job) > 0
    assert available(v1_user) == START_CREDITS - job.credits_charged
    assert charging.charges_audit() == []


@pytest.mark.parametrize("knob", ["stream_error_after_tokens", "stream_drop_after_tokens"])
def test_a_provider_that_fails_mid_stream_gives_an_error_event_and_charges_what_was_delivered(
        v1_server, v1_user, v1_key, gen_env, knob):
    gen_env.configure(**{knob: 5})
    sdk = client(v1_server, v1_key)
    got = []
    with pytest.raises(openai.APIError):  # the error event; or the stream's end without [DONE]
        stream: Any = sdk.chat.completions.create(model="default", messages=PROMPT, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)  # noqa: PERF401  (the error ends the loop)
    assert len(got) == 5
    job = Job.objects.filter(streamed=True).latest("created_at")
    job = _final(job.pk)
    assert job.status == JobStatus.PARTIAL
    assert job.text == "".join(got)
    assert job.completion_tokens == tokens.text_tokens("".join(got), job.text_model_name)
    assert job.credits_charged == expected_charge(job) > 0
    assert available(v1_user) == START_CREDITS - job.credits_charged


def test_an_unknown_v1_path_is_a_json_404(v1_server, v1_key):
    response = requests.get(f"{v1_server.url}/v1/embeddings", headers={"Authorization": f"Bearer {v1_key}"},
                            timeout=10)
    assert response.status_code == 404 and response.json()["error"]["message"]



def test_a_client_that_hangs_up_before_the_first_token_pays_nothing(v1_server, v1_user, v1_key, gen_env):
    from creditgate.core.tests.polling import wait_for

    gen_env.configure(latency_ms=1500)  # the provider takes its time before the first token
    body = json.dumps({"model": "default", "messages": PROMPT, "stream": True}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {v1_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", v1_server.port)) as caller:
        caller.sendall(head + body)
        wait_for(lambda: gen_env.stats.get("openai.chat.completions"), what="the provider to be asked")
    # Hung up: the server cancels the provider's stream before it wrote a token.
    job = _final(Job.objects.get(streamed=True).pk)
    assert (job.status, job.error_code, job.credits_charged) == (JobStatus.FAILED, "stream_stopped", 0)
    assert available(v1_user) == START_CREDITS
    assert charging.charges_audit() == []
