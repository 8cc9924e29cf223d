"""`Prefer: wait=N` on a generation POST and `?wait=N` on GET /jobs/{id}/: the final job in the
answer, as soon as it is final, never longer than the bound; on the embedded default (SQLite,
in-process runner) and on PostgreSQL with a real Celery worker (Redis pub/sub wakes the waiter)."""

from __future__ import annotations

import threading
import time

import pytest

from creditgate.core import runtime
from creditgate.generation import waiting
from creditgate.generation.tests.conftest import make_user
from creditgate.generation.tests.test_crash_points import CeleryWorker, celery_env  # noqa: F401 - a fixture

TEXT = "/api/v1/text/generations/"


@pytest.fixture
def client(gen_env):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user(credits=100)).key}")
    return api


def test_prefer_wait_answers_the_final_job_with_its_charge(client):
    response = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json", HTTP_PREFER="wait=20")
    assert response.status_code == 200, response.content
    assert response["Preference-Applied"] == "wait=20"
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["credits_charged"] > 0 and job["text"]
    assert job["tokens"]["total"] > 0
    assert response["Location"].endswith(f"/api/v1/jobs/{job['id']}/")


def test_without_prefer_the_post_answers_202_at_once(client):
    response = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json")
    assert response.status_code == 202
    assert "Preference-Applied" not in response
    assert response.json()["status"] == "queued"


def test_a_wait_that_ends_first_answers_202_with_the_job_as_it_is(client, gen_env):
    # The provider answers after 5 s: a 1 s wait ends first (had it waited for the job, the job
    # would be final and the answer a 200), whatever the machine's speed.
    gen_env.configure(latency_ms=5000)
    response = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json", HTTP_PREFER="wait=1")
    assert response.status_code == 202
    assert response["Preference-Applied"] == "wait=1"
    assert response.json()["status"] in ("queued", "running")


def test_get_with_wait_answers_as_soon_as_the_job_is_final_not_after_the_wait(client, gen_env):
    gen_env.configure(latency_ms=800)
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    began = time.monotonic()
    response = client.get(f"/api/v1/jobs/{job['id']}/?wait=20")
    elapsed = time.monotonic() - began
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response.json()["credits_charged"] > 0
    assert elapsed < 15, elapsed  # answered when the job was final (~0.8 s), not after the 20 s asked for


def test_waits_are_bounded(client, monkeypatch):
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # nobody runs it: it stays queued
    monkeypatch.setattr(waiting, "MAX_WAIT_SECONDS", 1)
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    began = time.monotonic()
    response = client.get(f"/api/v1/jobs/{job['id']}/?wait=3600")
    assert time.monotonic() - began < 30  # the 1 s cap, not the hour asked for
    assert (response.status_code, response.json()["status"]) == (200, "queued")
    began = time.monotonic()
    response = client.post(TEXT, {"prompt": "Again.", "max_tokens": 16}, format="json", HTTP_PREFER="wait=3600")
    assert time.monotonic() - began < 30
    assert response.status_code == 202 and response["Preference-Applied"] == "wait=1"


def test_the_default_bound_is_thirty_seconds():
    assert waiting.prefer_wait("wait=3600") == 30
    assert waiting.prefer_wait("respond-async, wait=5") == 5
    assert waiting.prefer_wait("return=minimal") is None
    assert waiting.prefer_wait("wait=soon") is None  # an unreadable preference is ignored (RFC 7240)
    assert waiting.wait_param("3600") == 30


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_a_bad_wait_parameter_is_a_400_in_the_error_shape(client, value):
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    response = client.get(f"/api/v1/jobs/{job['id']}/?wait={value}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_someone_elses_job_is_404_before_any_wait(client, gen_env):
    from rest_framework.test import APIClient

    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    other = APIClient()
    other.force_authenticate(make_user("mallory", credits=0))
    began = time.monotonic()
    assert other.get(f"/api/v1/jobs/{job['id']}/?wait=10").status_code == 404
    assert time.monotonic() - began < 2


def test_many_waiters_on_one_job_all_wake(client, gen_env):
    gen_env.configure(latency_ms=600)
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    results: list[tuple[str, float]] = []

    def wait_for_it():
        began = time.monotonic()
        final = waiting.job_wait_final(job["id"], seconds=20, read=lambda: _job(job["id"]))
        results.append((final.status, time.monotonic() - began))

    threads = [threading.Thread(target=wait_for_it) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [status for status, _ in results] == ["succeeded"] * 5
    assert max(elapsed for _, elapsed in results) < 5
    assert waiting._waiters == {}  # nothing left registered


def _job(job_id):
    from django.db import connection

    from creditgate.generation.models import Job

    try:
        return Job.objects.get(pk=job_id)
    finally:
        connection.close()  # a thread of its own: give its connection back


@pytest.mark.postgres
@pytest.mark.celery
def test_with_celery_a_waiting_get_is_woken_by_the_worker(client, celery_env, gen_env, settings,  # noqa: F811
                                                          tmp_path, monkeypatch):
    settings.CREDITGATE_JOBS_BACKEND = "celery"
    gen_env.configure(latency_ms=700)
    worker = CeleryWorker(gen_env, tmp_path / "worker.log")
    celery_env.append(worker)
    # The worker needs a moment to start: wait for a first job with a generous bound.
    first = client.post(TEXT, {"prompt": "Warm up.", "max_tokens": 16}, format="json", HTTP_PREFER="wait=30")
    assert first.status_code == 200, worker.output()
    assert first.json()["status"] == "succeeded" and first.json()["credits_charged"] > 0

    # No safety re-read during the wait below: only the worker's message can end it before its 25 s.
    monkeypatch.setattr(waiting, "SAFETY_POLL_SECONDS", 60.0)
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    began = time.monotonic()
    response = client.get(f"/api/v1/jobs/{job['id']}/?wait=25")
    elapsed = time.monotonic() - began
    assert response.json()["status"] == "succeeded", worker.output()
    assert elapsed < 20, elapsed  # woken by the worker's message (~0.7 s), not by the end of the wait
