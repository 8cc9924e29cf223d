"""The emulator itself: the far end must look like the providers for the real clients to be tested."""

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from creditgate.providers.sandbox import SandboxServer

AUTH = {"Authorization": "Bearer sandbox"}


def runware_task(**fields):
    return {"taskType": "imageInference", "taskUUID": "1b7a3c2e-0000-4000-8000-000000000001", "model": "runware:97@1",
            "positivePrompt": "a fox", "width": 1216, "height": 832, "numberResults": 1, **fields}


def test_images_are_real_pngs_at_the_requested_size(sandbox):
    answer = requests.post(f"{sandbox.url}/runware/v1", json=[runware_task()], headers=AUTH, timeout=5).json()
    png = requests.get(answer["data"][0]["imageURL"], timeout=5)

    assert png.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (1216, 832)


def test_wrong_key_gets_each_providers_401(sandbox):
    openai = requests.post(f"{sandbox.url}/openai/v1/chat/completions", headers={"Authorization": "Bearer nope"},
                           json={"model": "gpt-5.1", "messages": [{"role": "user", "content": "hi"}]}, timeout=5)
    runware = requests.post(f"{sandbox.url}/runware/v1", json=[runware_task()],
                            headers={"Authorization": "Bearer nope"}, timeout=5)

    assert openai.status_code == 401 and openai.json()["error"]["code"] == "invalid_api_key"
    assert runware.status_code == 401 and runware.json()["errors"][0]["code"] == "invalidApiKey"


def test_runware_authentication_task_is_an_alternative_to_the_header(sandbox):
    ok = requests.post(f"{sandbox.url}/runware/v1", json=[{"taskType": "authentication", "apiKey": "sandbox"},
                                                            runware_task()], timeout=5)
    assert ok.status_code == 200
    assert [d["taskType"] for d in ok.json()["data"]] == ["authentication", "imageInference"]


def test_runware_rejects_what_the_model_does_not_take(sandbox):
    answer = requests.post(f"{sandbox.url}/runware/v1", headers=AUTH, timeout=5,
                           json=[runware_task(model="google:4@2", width=1024, height=1024, steps=20)])
    assert answer.status_code == 400
    assert answer.json()["errors"][0] == {**answer.json()["errors"][0], "code": "unsupportedParameter",
                                          "parameter": "steps", "taskUUID": runware_task()["taskUUID"]}


def test_gpt_image_models_reject_response_format_and_answer_base64(sandbox):
    body = {"model": "gpt-image-2", "prompt": "a fox", "n": 2, "size": "1024x1024"}
    refused = requests.post(f"{sandbox.url}/openai/v1/images/generations", headers=AUTH, timeout=5,
                            json={**body, "response_format": "url"})
    answered = requests.post(f"{sandbox.url}/openai/v1/images/generations", headers=AUTH, json=body, timeout=5)

    assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_format"
    assert [set(item) for item in answered.json()["data"]] == [{"b64_json"}, {"b64_json"}]
    assert answered.json()["usage"]["total_tokens"] > 0


def test_chat_usage_adds_up_and_respects_max_completion_tokens(sandbox):
    answer = requests.post(f"{sandbox.url}/openai/v1/chat/completions", headers=AUTH, timeout=5, json={
        "model": "gpt-5.1", "messages": [{"role": "user", "content": "one two three four five"}],
        "max_completion_tokens": 12}).json()
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == 12 and answer["choices"][0]["finish_reason"] == "length"
    assert usage["prompt_tokens"] >= 7  # five words at about 1.3 tokens each


def test_knobs_script_and_stats_over_http(sandbox):
    config = requests.post(f"{sandbox.url}/_sandbox/config", json={"latency_ms": 5, "error_kind": "quota"},
                           timeout=5)
    assert config.status_code == 200 and sandbox.knobs.latency_ms == 5 and sandbox.knobs.error_kind == "quota"

    requests.post(f"{sandbox.url}/_sandbox/fail_next", json={"n": 1, "kind": "server_error"}, timeout=5)
    failed = requests.post(f"{sandbox.url}/runware/v1", json=[runware_task()], headers=AUTH, timeout=5)
    passed = requests.post(f"{sandbox.url}/runware/v1", json=[runware_task()], headers=AUTH, timeout=5)
    assert (failed.status_code, passed.status_code) == (500, 200)

    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    assert stats["counts"]["runware.imageInference"] == 2
    assert stats["requests"]["runware.imageInference"][-1]["positivePrompt"] == "a fox"

    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5)
    assert sandbox.stats == {} and sandbox.knobs.latency_ms == 0


@pytest.mark.parametrize("body", [{"error_kind": "meteor"}, {"error_rate": 2}, {"colour": "red"}])
def test_bad_knobs_are_refused_and_change_nothing(sandbox, body):
    before = dict(vars(sandbox.knobs))
    answer = requests.post(f"{sandbox.url}/_sandbox/config", json=body, timeout=5)
    assert answer.status_code == 400 and vars(sandbox.knobs) == before


def test_rate_limit_carries_retry_after(sandbox):
    sandbox.configure(retry_after_s=3)
    sandbox.fail_next(2, "rate_limit")
    openai = requests.post(f"{sandbox.url}/openai/v1/images/generations", headers=AUTH, timeout=5,
                           json={"model": "gpt-image-2", "prompt": "x"})
    runware = requests.post(f"{sandbox.url}/runware/v1", json=[runware_task()], headers=AUTH, timeout=5)
    assert openai.status_code == 429 and openai.headers["retry-after"] == "3"
    assert openai.headers["retry-after-ms"] == "3000" and openai.json()["error"]["code"] == "rate_limit_exceeded"
    assert runware.status_code == 429 and runware.headers["Retry-After"] == "3"


def test_error_rate_draws_per_request():
    with SandboxServer(error_rate=1.0, error_kind="server_error") as server:
        statuses = {requests.post(f"{server.url}/runware/v1", json=[runware_task()], headers=AUTH, timeout=5)
                    .status_code for _ in range(3)}
        server.configure(error_rate=0.0)
        statuses_after = {requests.post(f"{server.url}/runware/v1", json=[runware_task()], headers=AUTH,
                                        timeout=5).status_code for _ in range(3)}
    assert statuses == {500} and statuses_after == {200}


def test_management_command_runs_the_sandbox_alone(tmp_path):
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "creditgate.settings", "CREDITGATE_VAR_DIR": str(tmp_path),
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(root / "manage.py"), "sandbox", "--port", "0",
                                "--latency-ms", "1", "--error-rate", "0", "--error-kind", "timeout"],
                               cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None  # stdout=PIPE
    try:
        line = process.stdout.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        stats = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
        assert stats["knobs"]["latency_ms"] == 1 and stats["knobs"]["error_kind"] == "timeout"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_runware_reports_each_images_cost_when_a_task_asks(sandbox):
    def costs(**fields):
        answer = requests.post(f"{sandbox.url}/runware/v1", json=[runware_task(numberResults=2, **fields)],
                               headers=AUTH, timeout=5).json()
        return [item.get("cost") for item in answer["data"]]

    assert costs() == [None, None]
    assert costs(includeCost=True, width=1024, height=1024, steps=30) == [0.009, 0.009]
    assert costs(includeCost=True, model="google:4@2", width=1024, height=1024) == [0.138, 0.138]
    sandbox.configure(runware_cost=False)  # a model whose price Runware does not report
    assert costs(includeCost=True) == [None, None]


def test_the_sandbox_logs_each_answer_and_a_failed_task_can_be_looked_up(sandbox):
    sandbox.fail_next(1, "rate_limit")
    for _ in range(2):
        requests.post(f"{sandbox.url}/openai/v1/chat/completions", headers=AUTH, timeout=5,
                      json={"model": "gpt-5.1", "messages": [{"role": "user", "content": "hi"}]})
    answers = sandbox.answers("openai.chat.completions")
    assert [a["status"] for a in answers] == [429, 200] and all(a["request_id"].startswith("req_") for a in answers)

    refused = runware_task(positivePrompt="x")  # too short: the task fails
    requests.post(f"{sandbox.url}/runware/v1", json=[refused], headers=AUTH, timeout=5)
    lookup = requests.post(f"{sandbox.url}/runware/v1", headers=AUTH, timeout=5,
                           json=[{"taskType": "getResponse", "taskUUID": refused["taskUUID"]}]).json()
    assert [e["code"] for e in lookup["errors"]] == ["invalidPositivePrompt"]
    assert [a["status"] for a in sandbox.answers("runware")] == [400, 200]
