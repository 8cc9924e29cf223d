"""500 paid jobs in flight at once on the real server as the Procfile runs it (gunicorn with a
uvicorn worker, creditgate.asgi) on PostgreSQL, the provider answering each call after 2 s: every
job completes and is charged exactly, and the web process's PostgreSQL connections stay within its
configured pool (issue 24)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.db import connection

from creditgate.core import reconciliation
from creditgate.generation import charging
from creditgate.generation.models import Job, JobStatus
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.generation.tests.web_server import PeakConnections, Web
from creditgate.openai_compat.tests.conftest import api_key_for

APP_NAME = "cg-inflight-under-test"
POOL = 6  # the web process's database pool (CREDITGATE_DB_POOL_SIZE)

pytestmark = [pytest.mark.postgres]

JOBS = 500
ACCOUNTS = 10  # 50 jobs each: an API key's default share of jobs in flight
START = 100


def test_500_concurrent_paid_jobs_complete_each_charged_exactly_within_the_pool(gen_env, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the server is a process of its own (run by .ci/run)")
    gen_env.configure(latency_ms=2000)
    server = Web(gen_env, tmp_path, backend="inprocess", app_name=APP_NAME, CREDITGATE_DB_POOL_SIZE=str(POOL))
    users = [make_user(f"payer{n}", credits=START) for n in range(ACCOUNTS)]
    keys = [api_key_for(user) for user in users]

    async def one(http: httpx.AsyncClient, n: int) -> dict:
        response = await http.post(f"{server.url}/api/v1/images/generations/",
                                   json={"prompt": f"a fox, {n}", "tier": "basic", "count": 1},
                                   headers={"Authorization": f"Bearer {keys[n % ACCOUNTS]}", "Prefer": "wait=30"})
        assert response.status_code in (200, 202), response.text
        job = response.json()
        while job["status"] not in ("succeeded", "partial", "failed"):
            response = await http.get(f"{server.url}/api/v1/jobs/{job['id']}/?wait=30",
                                      headers={"Authorization": f"Bearer {keys[n % ACCOUNTS]}"})
            job = response.json()
        return job

    async def everyone() -> list[dict]:
        limits = httpx.Limits(max_connections=JOBS + 50, max_keepalive_connections=JOBS)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            return await asyncio.gather(*(one(http, n) for n in range(JOBS)))

    try:
        with PeakConnections(APP_NAME) as connections:
            jobs = asyncio.run(everyone())
    finally:
        server.kill()
    assert [job["status"] for job in jobs] == ["succeeded"] * JOBS, server.output()
    assert {job["credits_charged"] for job in jobs} == {1}
    assert Job.objects.filter(status=JobStatus.SUCCEEDED, credits_charged=1).count() == JOBS
    for user in users:
        assert balance(user) == {"balance": START - JOBS // ACCOUNTS, "held": 0, "available": START - JOBS // ACCOUNTS}
    assert 0 < connections.peak <= POOL, f"{connections.peak} connections named {APP_NAME}"
    assert charging.charges_audit() == []
    assert reconciliation.reconciliation_audit() == []
