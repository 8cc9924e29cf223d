"""/v1 streams on the real server as the Procfile runs it (gunicorn with a uvicorn worker,
creditgate.asgi) on PostgreSQL: the web process killed mid-stream is settled by the sweep from its
last checkpoint; 200 concurrent streams complete, each charged exactly, within the database pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading

import httpx
import pytest
from django.db import connection

from creditgate.core import reconciliation
from creditgate.core.tests import polling
from creditgate.generation import charging
from creditgate.generation.models import Job, JobStatus
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.generation.tests.test_crash_points import wait_final
from creditgate.generation.tests.web_server import PeakConnections, Web
from creditgate.openai_compat.tests.conftest import api_key_for

pytestmark = [pytest.mark.postgres]

POOL = 6  # the web process's database pool (CREDITGATE_DB_POOL_SIZE)
APP_NAME = "cg-v1-under-test"
PROMPT = [{"role": "user", "content": "Write about the sea, the wind and the old harbour at dawn."}]


@pytest.fixture
def web(gen_env, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the server is a process of its own (run by .ci/run)")
    servers: list[Web] = []

    def start(**env) -> Web:
        servers.append(Web(gen_env, tmp_path, backend="inprocess", app_name=APP_NAME,
                           CREDITGATE_DB_POOL_SIZE=str(POOL), **env))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


def _pieces(line: str) -> str | None:
    if not line.startswith("data: {"):
        return None
    choices = json.loads(line[6:]).get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or None


def test_a_web_process_killed_mid_stream_is_settled_by_the_sweep_from_its_last_checkpoint(web, gen_env):
    gen_env.configure(stream_tokens_per_second=15)
    server = web(CREDITGATE_STREAM_CHECKPOINT_SECONDS="0.3")
    user = make_user(credits=100)
    key = api_key_for(user)
    received: list[str] = []
    body = {"model": "default", "messages": PROMPT, "stream": True}

    def read() -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=60) as http, http.stream(
                "POST", f"{server.url}/v1/chat/completions", json=body,
                headers={"Authorization": f"Bearer {key}"}) as response:
            for line in response.iter_lines():
                if (piece := _pieces(line)) is not None:
                    received.append(piece)  # noqa: PERF401  (as they come: the server dies mid-stream)

    reader = threading.Thread(target=read)
    reader.start()
    # Killed once a checkpoint past the first few tokens is written, the provider still writing.
    job = polling.wait_for(lambda: Job.objects.filter(user=user, stream_tokens__isnull=False).first(),
                           timeout=30, what="the stream's first checkpoint")
    assert job is not None
    job_id, prompt = job.pk, job.prompt_tokens or 0
    polling.wait_for(lambda: (Job.objects.get(pk=job_id).stream_tokens or 0) >= prompt + 8, timeout=30,
                     what="a checkpoint of 8 tokens")
    server.kill()
    reader.join(timeout=30)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # its process is gone; nobody settled it

    job = wait_final(job, sweep=True, timeout=60)  # the lease lapses, then the sweep settles it
    record = gen_env.state.streams[-1]
    assert (job.status, job.error_code) == (JobStatus.PARTIAL, "stream_interrupted")
    assert job.total_tokens is not None and job.completion_tokens is not None and job.tokens_per_credit
    assert job.stream_tokens is not None and job.total_tokens == job.stream_tokens > prompt
    assert job.completion_tokens <= record.tokens_sent < record.completion_tokens
    # The text kept is what the caller had been sent (up to the checkpoint).
    assert "".join(received).startswith(job.text) and job.text
    assert job.credits_charged == math.ceil(job.total_tokens / job.tokens_per_credit) > 0
    assert balance(user) == {"balance": 100 - job.credits_charged, "held": 0, "available": 100 - job.credits_charged}
    assert charging.charges_audit() == []
    assert reconciliation.reconciliation_audit() == []


def test_200_concurrent_streams_complete_each_charged_exactly_within_the_database_pool(web, gen_env):
    gen_env.configure(latency_ms=1500)  # every stream is open at once, waiting on the provider
    server = web()
    users = [make_user(f"streamer{n}", credits=1000) for n in range(4)]  # 50 each: the key's share
    keys = [api_key_for(user) for user in users]

    async def one(http: httpx.AsyncClient, key: str) -> tuple[str, str, dict]:
        body = {"model": "default", "messages": PROMPT, "stream": True, "stream_options": {"include_usage": True}}
        text, last = [], {}
        async with http.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {key}"}) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if (piece := _pieces(line)) is not None:
                    text.append(piece)
                elif line.startswith("data: {"):
                    last = json.loads(line[6:])
        return response.headers["x-creditgate-job-id"], "".join(text), last

    async def all_streams():
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            return await asyncio.gather(*(one(http, keys[n % 4]) for n in range(200)))

    with PeakConnections(APP_NAME) as connections:
        results = asyncio.run(all_streams())
    assert len(results) == 200
    spent = {user.pk: 0 for user in users}
    for job_id, text, last in results:
        job = Job.objects.get(pk=job_id)
        assert job.status == JobStatus.SUCCEEDED and job.text == text != ""
        assert last["usage"]["total_tokens"] == job.total_tokens
        assert job.total_tokens is not None and job.tokens_per_credit
        assert last["creditgate"]["credits_charged"] == job.credits_charged == math.ceil(
            job.total_tokens / job.tokens_per_credit)
        spent[job.user_id] += job.credits_charged
    for user in users:
        assert balance(user) == {"balance": 1000 - spent[user.pk], "held": 0, "available": 1000 - spent[user.pk]}
    assert sum(1 for r in gen_env.state.streams if r.outcome == "completed") == 200
    assert 0 < connections.peak <= POOL, server.output()
    assert charging.charges_audit() == []
    assert reconciliation.reconciliation_audit() == []
