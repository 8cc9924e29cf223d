"""Contract tests: the adapters against the providers' *documented* shapes, not our emulator's.

A tiny stdlib server replays recorded responses (tests/recorded/) and records each request, so
the assertions cover the URL, the auth header and the body the real SDK and client send
(a real server is the only way to see requests of openai 3.x, which speaks HTTPX2).
"""

from __future__ import annotations

import base64
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from creditgate.providers.base import (
    ProviderAuthError,
    ProviderContentRefused,
    ProviderQuotaExhausted,
    ProviderTry,
    call_sync,
)
from creditgate.providers.openai import OpenAIAdapter
from creditgate.providers.runware import RunwareAdapter
from creditgate.providers.tests.conftest import image_model, policy, text_model

RECORDED = Path(__file__).parent / "recorded"
PNG = base64.b64decode(json.loads((RECORDED / "openai_images_b64.json").read_text())["body"]["data"][0]["b64_json"])


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


class ReplayServer:
    """Answers POSTs with the queued recorded responses, in order; GET /files/* with a PNG."""

    def __init__(self, *responses: dict):
        self.queue = list(responses)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self._send(200, {"Content-Type": "image/png"}, PNG)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                server.requests.append({"method": "POST", "path": self.path,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                response = server.queue.pop(0)
                if "sse" in response:  # a stream: its events, each as OpenAI frames them
                    events = (e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))
                              for e in response["sse"])
                    self._send(response["status"], {"Content-Type": "text/event-stream", **response["headers"]},
                               "".join(f"data: {e}\n\n" for e in events).encode())
                    return
                text = json.dumps(response["body"]).replace("{base}", server.url)
                if isinstance(body, list) and body and isinstance(body[0], dict):
                    text = text.replace("{taskUUID}", str(body[0].get("taskUUID")))
                self._send(response["status"], {"Content-Type": "application/json", **response["headers"]},
                           text.encode())

            def _send(self, status, headers, payload):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def replay():
    servers = []

    def start(*names: str) -> ReplayServer:
        servers.append(ReplayServer(*[recorded(name) for name in names]))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


POLICY = policy(max_retries=2, retry_base_delay=0.01)


# OpenAI.

def test_openai_chat_request_and_response(replay):
    server = replay("openai_chat_completion")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)

    result = call_sync(adapter.generate_text,
        model=text_model(), prompt="Write about foxes.", max_tokens=300, temperature=0.7)

    (request,) = server.posts()
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test-123"
    assert request["headers"]["content-type"] == "application/json"
    assert request["body"] == {"model": "gpt-5.1", "messages": [{"role": "user", "content": "Write about foxes."}],
                               "max_completion_tokens": 300, "reasoning_effort": "none", "temperature": 0.7}
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (13, 9, 22)
    assert result.content == "Foxes grow a thicker coat in winter."
    assert result.finish_reason == "stop" and result.provider_request_id == "req_8c1f0e1d2a"


def test_openai_chat_stream_request_and_documented_chunks(replay):
    server = replay("openai_chat_stream")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)
    tries: list[ProviderTry] = []
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write about foxes."}]

    async def read():
        async with await adapter.stream_text(model=text_model(), messages=messages, max_tokens=300,
                                             temperature=0.7, record=tries.append) as stream:
            return [piece async for piece in stream], stream

    pieces, stream = call_sync(read)

    (request,) = server.posts()
    assert request["path"] == "/v1/chat/completions"
    assert request["body"] == {"model": "gpt-5.1", "messages": messages, "max_completion_tokens": 300,
                               "stream": True, "stream_options": {"include_usage": True},
                               "reasoning_effort": "none", "temperature": 0.7}
    assert pieces == ["Foxes", " grow a thicker", " coat in winter."]  # the role chunk's "" is skipped
    result = stream.result
    assert result is not None and result.content == "Foxes grow a thicker coat in winter." == stream.text_so_far
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (13, 9, 22)
    assert result.finish_reason == "stop" and result.provider_request_id == "req_stream_5b2e"
    (attempt,) = tries
    assert attempt.ok and (attempt.prompt_tokens, attempt.completion_tokens, attempt.finish_reason) == (13, 9, "stop")
    assert attempt.request_id == "req_stream_5b2e"


def test_openai_images_request_and_base64_response(replay):
    server = replay("openai_images_b64")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)
    model = image_model("gpt-image-2", max_images_per_call=10, request_defaults={"quality": "medium"})

    (outcome,) = call_sync(adapter.generate_image_batch, model=model, prompt="a red fox", n=1)

    (request,) = server.posts()
    assert request["path"] == "/v1/images/generations"
    assert request["headers"]["authorization"] == "Bearer sk-test-123"
    assert request["body"] == {"model": "gpt-image-2", "prompt": "a red fox", "n": 1, "size": "1024x1024",
                               "quality": "medium"}
    assert outcome.ok and outcome.data == PNG and outcome.content_type == "image/png"
    assert outcome.provider_task_id == "req_image_b64"


def test_openai_images_url_response_is_downloaded(replay):
    server = replay("openai_images_url")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)

    (outcome,) = call_sync(adapter.generate_image_batch, model=image_model("dall-e-3"), prompt="a red fox", n=1)

    assert outcome.ok and outcome.data == PNG and outcome.source_url == f"{server.url}/files/img-1.png"
    assert [r["path"] for r in server.requests] == ["/v1/images/generations", "/files/img-1.png"]


def test_openai_content_policy_error(replay, waits):
    server = replay("openai_error_content_policy")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)

    with pytest.raises(ProviderContentRefused) as caught:
        call_sync(adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="x", n=1)

    assert len(server.posts()) == 1 and waits == []
    assert "safety system" not in caught.value.message
    assert isinstance(caught.value.__cause__, openai.APIError)  # the SDK's error, chained for the log
    assert caught.value.__cause__.code == "content_policy_violation"


def test_openai_insufficient_quota_is_not_retried(replay, waits):
    server = replay("openai_error_insufficient_quota")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)

    with pytest.raises(ProviderQuotaExhausted):
        call_sync(adapter.generate_text, model=text_model(), prompt="x", max_tokens=10)
    assert len(server.posts()) == 1 and waits == []


def test_openai_rate_limit_honours_retry_after_ms(replay, waits):
    server = replay("openai_error_rate_limit", "openai_images_b64")
    adapter = OpenAIAdapter(api_key="sk-test-123", base_url=f"{server.url}/v1", policy=POLICY)

    (outcome,) = call_sync(adapter.generate_image_batch, model=image_model("gpt-image-2"), prompt="x", n=1)

    assert outcome.ok and len(server.posts()) == 2 and waits == [0.15]


def test_openai_invalid_key_message_stays_out(replay):
    server = replay("openai_error_invalid_api_key")
    adapter = OpenAIAdapter(api_key="sk-wrong-9f2c", base_url=f"{server.url}/v1", policy=POLICY)

    with pytest.raises(ProviderAuthError) as caught:
        call_sync(adapter.generate_text, model=text_model(), prompt="x", max_tokens=10)
    assert "9f2c" not in str(caught.value) and "platform.openai.com" not in str(caught.value)


# Runware.

def test_runware_request_matches_the_documented_task(replay):
    server = replay("runware_data_response")
    adapter = RunwareAdapter(api_key="rw-test-key", base_url=f"{server.url}/v1", policy=POLICY)
    model = image_model("runware:97@1", max_images_per_call=20,
                        optional_params=["negative_prompt", "steps", "cfg_scale", "seed"],
                        request_defaults={"steps": 30})

    call_sync(adapter.generate_image_batch, model=model, prompt="a red fox in snow", n=2,
                            options={"negative_prompt": "blurry", "cfg_scale": 7, "seed": 42})

    (request,) = server.posts()
    documented = recorded("runware_image_inference_request")[0]
    assert request["path"] == "/v1"
    assert request["headers"]["authorization"] == "Bearer rw-test-key"
    assert request["headers"]["content-type"] == "application/json"
    assert isinstance(request["body"], list) and len(request["body"]) == 1
    task = request["body"][0]
    assert set(task) <= set(documented)  # no field the docs do not name
    assert {k: type(v) for k, v in task.items()} == {k: type(documented[k]) for k in task}
    assert {k: task[k] for k in task if k != "taskUUID"} == {
        k: documented[k] for k in task if k != "taskUUID"}
    assert len(task["taskUUID"]) == 36


def test_runware_data_response_is_parsed(replay):
    server = replay("runware_data_response")
    adapter = RunwareAdapter(api_key="rw-test-key", base_url=f"{server.url}/v1", policy=POLICY)

    outcomes = call_sync(adapter.generate_image_batch,
        model=image_model("runware:97@1", max_images_per_call=20), prompt="a fox",
                                       n=2)

    task_uuid = server.posts()[0]["body"][0]["taskUUID"]
    assert [o.ok for o in outcomes] == [True, True]
    assert [o.provider_image_id for o in outcomes] == ["b7db282d-2943-4f12-992f-77df3ad3ec71",
                                                       "c8ec393e-3a54-4f23-a03f-88ef4be4fd82"]
    assert {o.provider_task_id for o in outcomes} == {task_uuid}
    assert [o.seed for o in outcomes] == [42, 43]
    assert [o.cost_usd for o in outcomes] == [Decimal("0.009")] * 2
    assert all(o.data == PNG for o in outcomes)


@pytest.mark.parametrize("fixture, error", [
    ("runware_errors_list_envelope", ProviderContentRefused),
    ("runware_error_object_envelope", ProviderQuotaExhausted),
    ("runware_bare_list_envelope", ProviderAuthError),
])
def test_runware_error_envelopes(replay, waits, fixture, error):
    server = replay(fixture)
    adapter = RunwareAdapter(api_key="rw-test-key", base_url=f"{server.url}/v1", policy=POLICY)

    with pytest.raises(error) as caught:
        call_sync(adapter.generate_image_batch, model=image_model("runware:97@1"), prompt="a fox", n=1)

    assert len(server.posts()) == 1 and waits == []  # none of these is worth a retry
    assert "runware.ai" not in str(caught.value)


def test_runware_rate_limit_is_retried_with_a_new_task_after_retry_after(replay, waits):
    server = replay("runware_rate_limited", "runware_data_response")
    adapter = RunwareAdapter(api_key="rw-test-key", base_url=f"{server.url}/v1", policy=POLICY)

    outcomes = call_sync(adapter.generate_image_batch,
        model=image_model("runware:97@1", max_images_per_call=20), prompt="a fox",
                                       n=2)

    assert [o.ok for o in outcomes] == [True, True] and waits == [2.0]
    first, second = (r["body"][0]["taskUUID"] for r in server.posts())
    assert first != second
