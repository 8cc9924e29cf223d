"""`Prefer: wait=N` on a generation POST and `?wait=N` on GET /jobs/{id}/: the final job in the
answer, as soon as it is final, never longer than the bound; on the embedded default (SQLite,
in-process runner) and on PostgreSQL with a real Celery worker (Redis pub/sub wakes the waiter)."""

from __future__ import annotations

import asyncio
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
    monkeypatch.setattr(runtime, "run_here", lambda job_id, **kwargs: True)  # nor inline, for Prefer: wait
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
    """Five waits of one event loop (as five requests of a web process are), woken by the job's
    settlement in the runner's thread; nothing stays registered."""
    gen_env.configure(latency_ms=600)
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()

    async def wait_for_it():
        waiter = waiting.Waiter(job["id"])
        try:
            first = await waiting.in_thread(lambda: _job(job["id"]))
            return await waiting.job_wait_final(waiter, first, seconds=20, read=lambda: _job(job["id"]))
        finally:
            waiter.close()

    async def all_of_them():
        return await asyncio.gather(*(wait_for_it() for _ in range(5)))

    # No safety re-read: only the settlement's wake-up can end these waits before their 20 s.
    waiting.SAFETY_POLL_SECONDS, safety = 60.0, waiting.SAFETY_POLL_SECONDS
    try:
        finals = asyncio.run(all_of_them())
    finally:
        waiting.SAFETY_POLL_SECONDS = safety
    assert [final.status for final in finals] == ["succeeded"] * 5
    assert waiting._waiters == {}  # nothing left registered


def test_a_wait_that_ends_at_its_deadline_answers_the_job_as_it_is(gen_env, monkeypatch):
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # nobody runs it: it stays queued
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(make_user("dora", credits=100))
    job = api.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    reads: list[int] = []

    def read():
        reads.append(1)
        return _job(job["id"])

    waiter = waiting.Waiter(job["id"])  # registered before the first read, as the views do
    first = _job(job["id"])

    async def wait():
        try:
            return await waiting.job_wait_final(waiter, first, seconds=1,
                                                read=read)
        finally:
            waiter.close()

    assert asyncio.run(wait()).status == "queued"
    assert reads == [1]  # read once more at its deadline (no wake-up, no poll within 1 s)


def test_the_safety_rereads_of_a_long_wait_back_off(gen_env, monkeypatch):
    """A job that stays queued (nobody runs it, nothing wakes its waiter): re-read after the safety
    interval, then at doubling intervals, and at the deadline; not every interval, which under a
    backlog had every waiter take CPU from the jobs."""
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)
    monkeypatch.setattr(waiting, "SAFETY_POLL_SECONDS", 0.2)
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(make_user("erin", credits=100))
    job = api.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    reads: list[float] = []
    waiter = waiting.Waiter(job["id"])
    first = _job(job["id"])

    def read():
        reads.append(time.monotonic())
        return _job(job["id"])

    async def wait():
        try:
            return await waiting.job_wait_final(waiter, first, seconds=3.3, read=read)
        finally:
            waiter.close()

    began = time.monotonic()
    assert asyncio.run(wait()).status == "queued"
    # After 0.2, 0.6, 1.4 and 3.0 s, then at the deadline (3.3 s): five reads (four when slow reads
    # push the fourth past the deadline), where a fixed 0.2 s interval makes about sixteen.
    assert 4 <= len(reads) <= 5, [round(t - began, 2) for t in reads]
    assert reads[-1] - began >= 3.3


# --- Concurrent waits: a share per account and per API key ----------------------------------------------

def test_past_the_accounts_waits_a_get_with_wait_is_429_and_a_prefer_is_ignored(client, gen_env, settings,
                                                                              monkeypatch):
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # nobody runs them: they stay queued
    monkeypatch.setattr(runtime, "run_here", lambda job_id, **kwargs: True)  # nor inline, for Prefer: wait
    settings.CREDITGATE_ACCOUNT_WAITS = 1
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()
    from creditgate.generation.models import Job

    held = waiting.wait_slot_take(account_id=Job.objects.get(pk=job["id"]).account_id)  # another request's wait
    try:
        refused = client.get(f"/api/v1/jobs/{job['id']}/?wait=5")
        assert refused.status_code == 429
        assert refused["Retry-After"] == str(waiting.TOO_MANY_WAITS_RETRY_AFTER)
        error = refused.json()["error"]
        assert error["code"] == "too_many_waits" and error["message"]
        assert error["details"] == {"retry_after": 1, "scope": "account", "limit": 1}
        assert client.get(f"/api/v1/jobs/{job['id']}/").status_code == 200  # without a wait: as ever

        ignored = client.post(TEXT, {"prompt": "Again.", "max_tokens": 16}, format="json", HTTP_PREFER="wait=5")
        assert ignored.status_code == 202 and ignored.json()["status"] == "queued"
        assert "Preference-Applied" not in ignored  # RFC 7240: the preference was not applied
    finally:
        held.release()
    assert waiting.waits_open() == 0

    # With its slot free again the account waits (here until the 1 s deadline: nobody runs the job).
    waited = client.get(f"/api/v1/jobs/{job['id']}/?wait=1")
    assert (waited.status_code, waited.json()["status"]) == (200, "queued")
    assert waiting.waits_open() == 0  # the wait gave its slot back


def test_a_final_job_is_answered_at_once_whatever_the_waits_held(client, gen_env, settings):
    settings.CREDITGATE_ACCOUNT_WAITS = 0  # no wait at all may be held
    response = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json")
    job = response.json()
    assert response.status_code == 202 and "Preference-Applied" not in response
    from creditgate.generation.models import Job

    for _ in range(600):  # the in-process runner finishes it
        if Job.objects.get(pk=job["id"]).status == "succeeded":
            break
        time.sleep(0.05)
    assert client.get(f"/api/v1/jobs/{job['id']}/?wait=20").status_code == 200  # final: no wait, no slot


def test_each_api_key_has_its_own_share_within_the_accounts():
    from django.test import override_settings

    with override_settings(CREDITGATE_ACCOUNT_WAITS=3, CREDITGATE_API_KEY_WAITS=1):
        first = waiting.wait_slot_take(account_id=7, api_key_id=1)
        with pytest.raises(waiting.TooManyWaits) as refused:
            waiting.wait_slot_take(account_id=7, api_key_id=1)
        assert refused.value.details["scope"] == "api_key"
        second = waiting.wait_slot_take(account_id=7, api_key_id=2)
        third = waiting.wait_slot_take(account_id=7)  # a session or token: the account's share only
        with pytest.raises(waiting.TooManyWaits) as refused:
            waiting.wait_slot_take(account_id=7, api_key_id=3)
        assert refused.value.details["scope"] == "account"
        for slot in (first, second, third, third):  # a release is idempotent
            slot.release()
        assert waiting.waits_open() == 0 and waiting._slots == {}


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


def test_a_view_that_fails_after_starting_a_wait_gives_its_slot_back(client, gen_env, monkeypatch):
    from creditgate.generation import apis

    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # nobody runs it: it stays queued
    job = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json").json()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug after the wait was started")

    monkeypatch.setattr(apis, "PendingWait", broken)
    client.raise_request_exception = False
    assert client.get(f"/api/v1/jobs/{job['id']}/?wait=5").status_code == 500
    assert waiting.waits_open() == 0 and waiting._waiters == {}


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_the_waited_answer_is_the_job_as_it_reads_afterwards_and_reads_nothing(client, gen_env, monkeypatch,
                                                                              outcome):
    """The job settled in this process: its waiter takes it as the settlement announced it, with
    no read back, and answers exactly what a later GET reads."""
    from creditgate.generation import apis

    if outcome == "failed":
        gen_env.configure(error_rate=1.0, error_kind="content_refusal")
    reads = []
    job_get = apis.selectors.job_get

    def read(**kwargs):
        reads.append(kwargs)
        return job_get(**kwargs)

    monkeypatch.setattr(apis.selectors, "job_get", read)

    response = client.post(TEXT, {"prompt": "Say hello.", "max_tokens": 16}, format="json", HTTP_PREFER="wait=20")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == outcome
    assert reads == []
    assert client.get(response["Location"]).json() == response.json()
