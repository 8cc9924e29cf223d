"""Streamed chat completions: the sandbox's Server-Sent Events read raw, and the OpenAI adapter's
TextStream against the sandbox over real HTTP. Nothing here asserts wall-clock bounds: the tests
wait on the sandbox's stream records (which end when the server's side of a stream ends)."""

import json

import httpx
import pytest

from creditgate.providers.base import (
    ProviderAuthError,
    ProviderError,
    ProviderRejectedRequest,
    ProviderServerError,
    ProviderTry,
    call_sync,
)
from creditgate.providers.runware import RunwareAdapter
from creditgate.providers.tests.conftest import text_model
from creditgate.providers.tokens import chat_prompt_tokens, text_tokens, token_pieces

CHAT = "openai.chat.completions"
MESSAGES = [{"role": "system", "content": "You write about animals."},
            {"role": "user", "content": "Write a long piece about foxes in winter, their coats and their hunting."}]


def raw_stream(sandbox, **body) -> tuple[httpx.Response, list[str]]:
    """POST a chat completion and read the response's SSE `data:` payloads as they come."""
    request = {"model": "gpt-5.1", "messages": MESSAGES, "max_completion_tokens": 400, **body}
    with httpx.stream("POST", f"{sandbox.url}/openai/v1/chat/completions", json=request,
                      headers={"Authorization": "Bearer sandbox"}, timeout=10) as response:
        if response.status_code != 200:
            response.read()
            return response, []
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    return response, events


def chunks_of(events: list[str]) -> list[dict]:
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# The sandbox's stream, read raw.

@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_shape(sandbox, include_usage):
    body = {"stream": True, **({"stream_options": {"include_usage": True}} if include_usage else {})}
    response, events = raw_stream(sandbox, **body)
    plain = httpx.post(f"{sandbox.url}/openai/v1/chat/completions", headers={"Authorization": "Bearer sandbox"},
                       json={"model": "gpt-5.1", "messages": MESSAGES, "max_completion_tokens": 400}).json()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    chunks = chunks_of(events)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    first, *content, finish = chunks[:-1] if include_usage else chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in content]
    assert all(c["choices"][0]["finish_reason"] is None for c in [first, *content])
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    # One chunk per token piece of the same text the non-streamed call answers.
    text = plain["choices"][0]["message"]["content"]
    assert "".join(pieces) == text and pieces == token_pieces(text, "gpt-5.1")
    assert len(pieces) == plain["usage"]["completion_tokens"]
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    else:
        assert all("usage" not in c for c in chunks)


def test_completion_is_counted_in_the_models_tokens_and_cut_at_max_tokens(sandbox):
    answer = httpx.post(f"{sandbox.url}/openai/v1/chat/completions", headers={"Authorization": "Bearer sandbox"},
                        json={"model": "gpt-5.1", "messages": MESSAGES, "max_completion_tokens": 17}).json()
    usage, choice = answer["usage"], answer["choices"][0]
    assert usage["prompt_tokens"] == chat_prompt_tokens(MESSAGES, "gpt-5.1")
    assert usage["completion_tokens"] == 17 and choice["finish_reason"] == "length"
    assert len(token_pieces(choice["message"]["content"], "gpt-5.1")) == 17

    whole = httpx.post(f"{sandbox.url}/openai/v1/chat/completions", headers={"Authorization": "Bearer sandbox"},
                       json={"model": "gpt-5.1", "messages": MESSAGES, "max_completion_tokens": 4000}).json()
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"]["completion_tokens"] == text_tokens(whole["choices"][0]["message"]["content"], "gpt-5.1")
    assert whole["choices"][0]["message"]["content"].startswith(choice["message"]["content"])  # deterministic


def test_a_fault_answers_as_an_error_before_any_byte(sandbox):
    sandbox.fail_next(1, "rate_limit")
    response, _events = raw_stream(sandbox, stream=True)
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limit_exceeded"
    assert sandbox.streams() == []


def test_stream_options_without_stream_is_refused(sandbox):
    response, _ = raw_stream(sandbox, stream_options={"include_usage": True})
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream_options"


def test_drop_knob_cuts_the_connection_after_n_content_chunks(sandbox):
    sandbox.configure(stream_drop_after_tokens=3)
    with pytest.raises(httpx.RemoteProtocolError):
        raw_stream(sandbox, stream=True, stream_options={"include_usage": True})
    (record,) = sandbox.wait_for_streams(1)
    assert (record["outcome"], record["tokens_sent"]) == ("dropped", 3)


def test_error_knob_sends_openais_error_event_then_ends(sandbox):
    sandbox.configure(stream_error_after_tokens=2)
    _response, events = raw_stream(sandbox, stream=True)
    _first, one, two, error = (json.loads(e) for e in events)
    assert [one["choices"][0]["delta"]["content"], two["choices"][0]["delta"]["content"]]
    assert error == {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                               "type": "server_error", "param": None, "code": None}}
    (record,) = sandbox.wait_for_streams(1)
    assert (record["outcome"], record["tokens_sent"]) == ("error", 2)


def test_knobs_and_stream_records_over_http(sandbox):
    config = httpx.post(f"{sandbox.url}/_sandbox/config", json={"stream_tokens_per_second": 1000,
                                                                "stream_drop_after_tokens": None,
                                                                "stream_error_after_tokens": None})
    assert config.status_code == 200 and config.json()["knobs"]["stream_tokens_per_second"] == 1000.0
    bad = httpx.post(f"{sandbox.url}/_sandbox/config", json={"stream_drop_after_tokens": -1})
    assert bad.status_code == 400
    response, _ = raw_stream(sandbox, stream=True)
    sandbox.wait_for_streams(1)

    (record,) = httpx.get(f"{sandbox.url}/_sandbox/stats").json()["streams"]
    assert record["request_id"] == response.headers["x-request-id"] and record["model"] == "gpt-5.1"
    assert record["prompt_tokens"] == chat_prompt_tokens(MESSAGES, "gpt-5.1")
    assert record["outcome"] == "completed" and record["tokens_sent"] == record["completion_tokens"] > 0


# The adapter.

def read_all(adapter, **kwargs):
    """Open a stream, read every piece; (pieces, stream, error raised or None)."""
    async def run():
        stream = await adapter.stream_text(**{"model": text_model(), "messages": MESSAGES, "max_tokens": 400,
                                              **kwargs})
        pieces: list[str] = []
        try:
            async with stream:
                async for piece in stream:  # a loop, not a comprehension: the pieces before a failure count
                    pieces.append(piece)  # noqa: PERF401
        except ProviderError as exc:
            return pieces, stream, exc
        return pieces, stream, None

    return call_sync(run)


def test_streamed_pieces_make_the_same_text_and_usage_as_the_plain_call(openai_adapter, sandbox):
    tries: list[ProviderTry] = []
    pieces, stream, error = read_all(openai_adapter, record=tries.append)
    plain = call_sync(openai_adapter.generate_text, model=text_model(), prompt="", messages=MESSAGES,
                                                        max_tokens=400)

    assert error is None and pieces and all(pieces)
    result = stream.result
    assert result is not None
    assert "".join(pieces) == stream.text_so_far == result.content == plain.content
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens, result.finish_reason) == (
        plain.prompt_tokens, plain.completion_tokens, plain.total_tokens, plain.finish_reason)
    assert len(pieces) == result.completion_tokens
    assert result.provider_request_id == sandbox.streams()[0]["request_id"]
    (attempt,) = tries
    assert attempt.ok and attempt.request_id == result.provider_request_id
    assert (attempt.prompt_tokens, attempt.completion_tokens, attempt.finish_reason) == (
        result.prompt_tokens, result.completion_tokens, "stop")
    body = sandbox.requests(CHAT)[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 400 and body["reasoning_effort"] == "none"
    assert body["messages"] == MESSAGES


def test_generate_text_sends_the_messages_it_is_given(openai_adapter, sandbox):
    call_sync(openai_adapter.generate_text, model=text_model(), prompt="ignored", messages=MESSAGES, max_tokens=20)
    assert sandbox.last_request(CHAT)["messages"] == MESSAGES


def test_a_dropped_connection_fails_the_stream_after_exactly_the_pieces_sent(openai_adapter, sandbox, waits):
    sandbox.configure(stream_drop_after_tokens=3)
    tries: list[ProviderTry] = []
    pieces, stream, error = read_all(openai_adapter, record=tries.append)

    assert isinstance(error, ProviderServerError) and "could not be reached" in error.message
    assert len(pieces) == 3 and stream.result is None and stream.text_so_far == "".join(pieces)
    assert sandbox.stats[CHAT] == 1 and waits == []  # text had flowed: never retried
    (attempt,) = tries
    assert not attempt.ok and attempt.error_class == "ProviderServerError" and attempt.request_id.startswith("req_")
    assert sandbox.wait_for_streams(1)[0]["outcome"] == "dropped"


@pytest.mark.parametrize("after", [0, 5])
def test_an_error_event_fails_the_stream_after_n_pieces(openai_adapter, sandbox, waits, after):
    sandbox.configure(stream_error_after_tokens=after)
    tries: list[ProviderTry] = []
    pieces, stream, error = read_all(openai_adapter, record=tries.append)

    assert isinstance(error, ProviderServerError) and error.provider_code == "server_error"
    assert len(pieces) == after and stream.result is None
    assert sandbox.stats[CHAT] == 1 and waits == []
    assert [t.ok for t in tries] == [False]


def test_aclose_hangs_up_and_the_provider_stops_generating(openai_adapter, sandbox):
    sandbox.configure(stream_tokens_per_second=200)
    tries: list[ProviderTry] = []

    async def read_three_then_close():
        stream = await openai_adapter.stream_text(model=text_model(), messages=MESSAGES, max_tokens=4000,
                                                  record=tries.append)
        pieces = []
        async for piece in stream:
            pieces.append(piece)
            if len(pieces) == 3:
                break
        await stream.aclose()
        await stream.aclose()  # idempotent
        return pieces, stream

    pieces, stream = call_sync(read_three_then_close)

    assert len(pieces) == 3 and stream.result is None and stream.text_so_far == "".join(pieces)
    (record,) = sandbox.wait_for_streams(1)
    assert record["outcome"] == "client_gone", record
    assert 3 <= record["tokens_sent"] < record["completion_tokens"] // 2
    (attempt,) = tries
    assert attempt.ok and attempt.finish_reason == "cancelled" and attempt.completion_tokens is None


def test_a_429_before_the_first_byte_is_retried(openai_adapter, sandbox, waits):
    sandbox.fail_next(1, "rate_limit")
    tries: list[ProviderTry] = []
    pieces, stream, error = read_all(openai_adapter, record=tries.append)

    assert error is None and stream.result is not None and "".join(pieces) == stream.result.content
    assert sandbox.stats[CHAT] == 2 and waits == [0.02]
    assert [(t.ok, t.error_class) for t in tries] == [(False, "ProviderRateLimited"), (True, "")]


def test_an_auth_error_is_raised_when_opening(sandbox, waits):
    from creditgate.providers.openai import OpenAIAdapter

    adapter = OpenAIAdapter(api_key="sk-wrong-9f2c", base_url=f"{sandbox.url}/openai/v1")
    with pytest.raises(ProviderAuthError):
        read_all(adapter)
    assert waits == [] and sandbox.streams() == []


def test_temperature_refused_by_the_model_is_dropped_once_when_streaming(openai_adapter, sandbox):
    model = text_model(request_defaults={"reasoning_effort": "low"})
    pieces, stream, error = read_all(openai_adapter, model=model, temperature=0.7)

    assert error is None and stream.result is not None and "".join(pieces) == stream.result.content
    first, second = sandbox.requests(CHAT)
    assert first["temperature"] == 0.7 and "temperature" not in second and second["stream"] is True


def test_runware_does_not_stream_text(sandbox):
    adapter = RunwareAdapter(api_key="sandbox", base_url=f"{sandbox.url}/runware/v1")
    with pytest.raises(ProviderRejectedRequest, match="does not stream"):
        call_sync(adapter.stream_text, model=text_model(), messages=MESSAGES, max_tokens=10)


def test_a_read_timeout_mid_stream_fails_it_without_retry(sandbox, settings, waits):
    from creditgate.providers.base import ProviderTimeout
    from creditgate.providers.openai import OpenAIAdapter

    settings.CREDITGATE_PROVIDER_TEXT_TIMEOUT = 0.3
    sandbox.configure(stream_tokens_per_second=1)  # a second before each piece: past the read timeout
    adapter = OpenAIAdapter(api_key="sandbox", base_url=f"{sandbox.url}/openai/v1")

    pieces, stream, error = read_all(adapter)

    assert isinstance(error, ProviderTimeout) and pieces == [] and stream.result is None
    assert sandbox.stats[CHAT] == 1 and waits == []
    assert sandbox.wait_for_streams(1)[0]["outcome"] == "client_gone"
