"""Emulation of OpenAI's HTTP API: chat completions, image generations and the model list, with
OpenAI's response and error shapes (PROVIDERS.md §2, §3, §5).

The model names below are the emulator's knowledge of the far end (which model wants which
parameters), the same knowledge the real API has; the service itself reads models from its catalog.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable

from creditgate.providers.sandbox.render import Completion, completion_for, render_png
from creditgate.providers.sandbox.state import ImageSpec, SandboxState
from creditgate.providers.sandbox.wire import Call, Reply, Stream
from creditgate.providers.tokens import chat_prompt_tokens, text_tokens

MODELS = ["gpt-5.1", "gpt-5.1-2025-11-13", "gpt-image-2", "gpt-image-2-2026-04-21", "gpt-image-1-mini", "dall-e-3"]
SHUTDOWN = {"gpt-image-1-mini": "2026-12-01", "dall-e-3": "2026-05-12"}
# Gone from the real API; asking for them gets OpenAI's model_not_found. Any other model name is
# served, so tests and demos may configure models of their own.
RETIRED = {"gpt-image-1", "dall-e-2"}
SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def _error(status: int, message: str, *, type_: str, code: str | None, param: str | None = None,
           headers: dict | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}},
                 headers={"x-request-id": _request_id(), **(headers or {})})


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _unauthorized(call: Call) -> Reply:
    key = call.bearer() or ""
    shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
    return _error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.", type_="invalid_request_error",
                  code="invalid_api_key")


def fault_reply(state: SandboxState, kind: str | None, *, partial_means_refusal: bool = True) -> Reply | None:
    if kind is None:
        return None
    retry = state.knobs.retry_after_s
    if kind == "rate_limit":
        return _error(429, "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. "
                           f"Please try again in {retry:g}s.", type_="requests", code="rate_limit_exceeded",
                      headers={"retry-after": f"{retry:g}", "retry-after-ms": str(int(retry * 1000))})
    if kind == "quota":
        return _error(429, "You exceeded your current quota, please check your plan and billing details.",
                      type_="insufficient_quota", code="insufficient_quota")
    if kind == "server_error":
        return _error(500, "The server had an error while processing your request. Sorry about that!",
                      type_="server_error", code=None)
    if kind == "content_refusal" or (kind == "partial" and partial_means_refusal and state.partial_call_fails()):
        return _error(400, "Your request was rejected as a result of our safety system. Your prompt may contain "
                           "text that is not allowed by our safety system.", type_="invalid_request_error",
                      code="content_policy_violation")
    if kind == "timeout":
        return Reply(200, None, hang=True)  # the real answer follows the hang; see handle()
    return None


def _model_not_found(model: str) -> Reply:
    return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                  type_="invalid_request_error", code="model_not_found")


def _authorized(state: SandboxState, call: Call) -> bool:
    return call.bearer() == state.knobs.api_key


def _read_request(state: SandboxState, call: Call, *, route: str) -> dict | Reply:
    """What every endpoint checks first, in OpenAI's order: the JSON parses (it is recorded even
    when the key is wrong, so tests can see what was sent), the key, a JSON object. Returns the
    body, or the error Reply to send instead."""
    try:
        body = call.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.",
                      type_="invalid_request_error", code=None)
    state.record(route, body)
    if not _authorized(state, call):
        return _unauthorized(call)
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.", type_="invalid_request_error", code=None)
    return body


def chat_completions(state: SandboxState, call: Call) -> Reply:
    body = _read_request(state, call, route="openai.chat.completions")
    if isinstance(body, Reply):
        return body
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _error(400, "you must provide a model parameter", type_="invalid_request_error", code=None,
                      param="model")
    if model in RETIRED or state.model_dropped(model):
        return _model_not_found(model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "[] is too short - 'messages'", type_="invalid_request_error", code="empty_array",
                      param="messages")
    if "max_tokens" in body and model.startswith("gpt-5"):
        return _error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.", type_="invalid_request_error",
                      code="unsupported_parameter", param="max_tokens")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in ("none", "low", "medium", "high"):
        return _error(400, f"Unsupported value: 'reasoning_effort' does not support '{effort}' with this model.",
                      type_="invalid_request_error", code="unsupported_value", param="reasoning_effort")
    temperature = body.get("temperature")
    if temperature is not None and effort not in (None, "none") and temperature != 1:
        return _error(400, f"Unsupported value: 'temperature' does not support {temperature} with this model. "
                           "Only the default (1) value is supported.", type_="invalid_request_error",
                      code="unsupported_value", param="temperature")
    max_tokens = body.get("max_completion_tokens", 4096)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _error(400, "Invalid 'max_completion_tokens': expected a positive integer.",
                      type_="invalid_request_error", code="invalid_value", param="max_completion_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        return _error(400, f"Invalid type for 'stream': expected a boolean, but got {type(stream).__name__} instead.",
                      type_="invalid_request_error", code="invalid_type", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        return _error(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                      type_="invalid_request_error", code=None, param="stream_options")
    fault = fault_reply(state, state.draw_fault("openai"))
    if fault is not None and not fault.hang:
        return fault

    prompt = " ".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
    prompt_tokens = chat_prompt_tokens([m for m in messages if isinstance(m, dict)], model)
    completion = completion_for(prompt, max_tokens=max_tokens, model=model)
    completion_id, request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}", _request_id()
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion.completion_tokens,
             "total_tokens": prompt_tokens + completion.completion_tokens,
             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    if stream:
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        reply = Reply(200, None, headers={"x-request-id": request_id}, content_type="text/event-stream; charset=utf-8",
                      stream=_chat_stream(state, completion, model=model, completion_id=completion_id,
                                          request_id=request_id, usage=usage, include_usage=include_usage))
    else:
        reply = Reply(200, {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": completion.finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": completion.text, "refusal": None,
                                     "annotations": []}}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": None,
        }, headers={"x-request-id": request_id})
    reply.hang = bool(fault and fault.hang)
    return reply


def _content_text(content) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text") or "") for part in content
                        if isinstance(part, dict) and part.get("type") == "text")
    return str(content or "")


STREAM_ERROR = {"message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error", "param": None, "code": None}


def _chat_stream(state: SandboxState, completion: Completion, *, model: str, completion_id: str, request_id: str,
                 usage: dict, include_usage: bool) -> Stream:
    """The completion as OpenAI streams it (Server-Sent Events of chat.completion.chunk): a chunk
    with the role, one chunk per token piece, a chunk with the finish_reason, with include_usage a
    chunk with no choices and the usage (every other chunk then has "usage": null), then [DONE].
    The knobs read when the stream starts decide its pacing and whether it drops or errs."""
    knobs = state.knobs
    created = int(time.time())

    def chunk(delta: dict | None, finish_reason: str | None = None, *, usage_chunk: bool = False) -> bytes:
        data: dict = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                      "service_tier": "default", "system_fingerprint": None,
                      "choices": [] if usage_chunk else [{"index": 0, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish_reason}]}
        if include_usage:
            data["usage"] = usage if usage_chunk else None
        return event(data)

    def event(data) -> bytes:
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def run(send: Callable[[bytes], None]) -> bool:
        record = state.stream_started(request_id=request_id, model=model, prompt_tokens=usage["prompt_tokens"],
                                      completion_tokens=completion.completion_tokens)
        pause = 1 / knobs.stream_tokens_per_second if knobs.stream_tokens_per_second else 0.0
        try:
            send(chunk({"role": "assistant", "content": ""}))
            for sent, piece in enumerate(completion.pieces):
                if sent == knobs.stream_drop_after_tokens:
                    state.stream_ended(record, "dropped")
                    return False
                if sent == knobs.stream_error_after_tokens:
                    send(event({"error": STREAM_ERROR}))
                    state.stream_ended(record, "error")
                    return True
                if pause:
                    time.sleep(pause)
                send(chunk({"content": piece}))
                state.stream_sent(record)
            # Past the whole answer, a drop or error still comes before its end.
            if knobs.stream_drop_after_tokens is not None and knobs.stream_drop_after_tokens <= len(completion.pieces):
                state.stream_ended(record, "dropped")
                return False
            if knobs.stream_error_after_tokens is not None \
                    and knobs.stream_error_after_tokens <= len(completion.pieces):
                send(event({"error": STREAM_ERROR}))
                state.stream_ended(record, "error")
                return True
            send(chunk({}, completion.finish_reason))
            if include_usage:
                send(chunk(None, usage_chunk=True))
            send(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            # The client hung up: a real model stops generating when its connection closes.
            state.stream_ended(record, "client_gone")
            raise
        state.stream_ended(record, "completed")
        return True

    return run


def images_generations(state: SandboxState, call: Call, *, base_url: str) -> Reply:
    body = _read_request(state, call, route="openai.images.generations")
    if isinstance(body, Reply):
        return body
    model = body.get("model") or "dall-e-3"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _error(400, "Missing required parameter: 'prompt'.", type_="invalid_request_error",
                      code="missing_required_parameter", param="prompt")
    gpt_image = model.startswith("gpt-image")
    if model in RETIRED or state.model_dropped(model):
        return _model_not_found(model)
    if gpt_image and "response_format" in body:
        return _error(400, "Unknown parameter: 'response_format'.", type_="invalid_request_error",
                      code="unknown_parameter", param="response_format")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        return _error(400, f"Invalid 'n': {n!r} is not between 1 and 10.", type_="invalid_request_error",
                      code="invalid_value", param="n")
    if model == "dall-e-3" and n != 1:
        # dall-e-3 (removed from the real API on 2026-05-12) is still emulated as it behaved, one
        # image per call, so fan-out can be exercised and benchmarked.
        return _error(400, "You must provide n=1 for this model.", type_="invalid_request_error",
                      code="invalid_value", param="n")
    match = SIZE.match(str(body.get("size", "1024x1024")))
    if not match:
        return _error(400, f"Invalid 'size': {body.get('size')!r}.", type_="invalid_request_error",
                      code="invalid_value", param="size")
    width, height = int(match[1]), int(match[2])
    if gpt_image and (width % 16 or height % 16 or not 256 <= width <= 3840 or not 256 <= height <= 3840):
        return _error(400, f"Invalid 'size': {width}x{height}. Both sides must be multiples of 16, up to 3840.",
                      type_="invalid_request_error", code="invalid_value", param="size")

    fault = fault_reply(state, state.draw_fault("openai"))
    if fault is not None and not fault.hang:
        return fault

    data = []
    for _ in range(n):
        image_id = uuid.uuid4().hex
        spec = ImageSpec(prompt=prompt, model=model, width=width, height=height, seed=None)
        if gpt_image or body.get("response_format") == "b64_json":
            data.append({"b64_json": base64.b64encode(render_png(prompt=prompt, model=model, width=width,
                                                                 height=height)).decode()})
        else:
            state.remember_image(image_id, spec)
            data.append({"url": f"{base_url}/openai/images/{image_id}.png", "revised_prompt": prompt})
    response = {"created": int(time.time()), "data": data}
    if gpt_image:
        input_tokens = text_tokens(prompt, model)
        response.update({
            "background": "opaque", "output_format": "png", "quality": body.get("quality", "auto"),
            "size": f"{width}x{height}",
            "usage": {"input_tokens": input_tokens, "output_tokens": 1056 * n,
                      "total_tokens": input_tokens + 1056 * n,
                      "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0}},
        })
    return Reply(200, response, headers={"x-request-id": _request_id()}, hang=bool(fault and fault.hang))


def models_list(state: SandboxState, call: Call) -> Reply:
    state.record("openai.models")
    if not _authorized(state, call):
        return _unauthorized(call)
    created = 1_763_000_000
    return Reply(200, {"object": "list", "data": [
        {"id": m, "object": "model", "created": created, "owned_by": "system",
         "shutdown_date": state.model_retirement(m) or SHUTDOWN.get(m)}
        for m in MODELS if not state.model_dropped(m)]}, headers={"x-request-id": _request_id()}, slow=False)
