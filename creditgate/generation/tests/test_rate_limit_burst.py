"""Concurrent POSTs against gunicorn with 4 worker processes (PostgreSQL; real processes, real
HTTP): the generation rate limit is exact (60 at once against a limit of 20 admit exactly 20), and
one Idempotency-Key sent by many retries at once starts one job, held once."""

import contextlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection
from rest_framework.authtoken.models import Token

from creditgate.credits import selectors as credits_selectors
from creditgate.credits.models import Hold
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import START_CREDITS, balance, make_user
from creditgate.generation.tests.test_crash_points import ROOT, worker_env
from creditgate.generation.tests.test_faults import free_port, wait_for_port

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("gen_env")]

LIMIT, BURST, PRICE = 20, 60, 1  # a basic image costs 1 credit


@contextlib.contextmanager
def _gunicorn(sandbox, tmp_path, *, rate: str) -> Iterator[tuple[str, str, object]]:
    """gunicorn -w 4 on the test database; yields the images URL, a token and its user, with every
    worker warmed up (its catalog memo built) by requests that count against nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run by .ci/run)")
    env = {**worker_env(sandbox, backend="inprocess"), "CREDITGATE_GENERATION_RATE": rate, "DEBUG": "true"}
    port = free_port()
    with open(tmp_path / "web.log", "w") as log:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "creditgate.wsgi", "-w", "4", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port)
            user = make_user(credits=START_CREDITS)
            token = Token.objects.create(user=user).key
            url = f"http://127.0.0.1:{port}/api/v1/images/generations/"
            for _ in range(8):
                assert requests.post(url, json={"prompt": "x", "tier": "basic", "count": 0}, timeout=30,
                                     headers={"Authorization": f"Token {token}"}).status_code == 400
            yield url, token, user
        finally:
            web.terminate()
            web.wait(timeout=30)


def _burst(n: int, send) -> list[requests.Response]:
    start = threading.Barrier(n)

    def one(i: int) -> requests.Response:
        start.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_a_burst_of_60_concurrent_posts_admits_exactly_the_limit(sandbox, tmp_path):
    with _gunicorn(sandbox, tmp_path, rate=f"{LIMIT}/min") as (url, token, user):
        responses = _burst(BURST, lambda n: requests.post(
            url, json={"prompt": f"fox {n}", "tier": "basic", "count": 1}, timeout=60,
            headers={"Authorization": f"Token {token}", "Idempotency-Key": str(uuid.uuid4())}))

        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(202) == LIMIT, statuses
        assert statuses.count(429) == BURST - LIMIT, statuses
        for refused in (r for r in responses if r.status_code == 429):
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        accepted = {r.json()["id"] for r in responses if r.status_code == 202}
        assert {str(pk) for pk in Job.objects.values_list("pk", flat=True)} == accepted
        # The ledger: exactly the accepted jobs' price left the available credits, one hold each.
        assert Hold.objects.count() == LIMIT
        assert sum(Job.objects.values_list("credits_held", flat=True)) == LIMIT * PRICE
        assert START_CREDITS - balance(user)["available"] == LIMIT * PRICE
        assert credits_selectors.ledger_check() == []


def test_one_key_retried_30_times_at_once_starts_one_job_held_once(sandbox, tmp_path):
    """A client whose POST timed out retries, many times and at once, and a buggy one reuses the
    key with another body: whichever body's request wins the race starts the one job, every other
    request with that body gets it (the losers of the race recognise it after their transaction
    rolled back), every request with the other body gets 409, and the account is held once."""
    key = str(uuid.uuid4())
    counts = [2 if n % 6 == 5 else 3 for n in range(30)]  # every sixth: the same key, another body
    with _gunicorn(sandbox, tmp_path, rate="1000/min") as (url, token, user):
        responses = _burst(30, lambda n: requests.post(
            url, json={"prompt": "a fox", "tier": "basic", "count": counts[n]}, timeout=60,
            headers={"Authorization": f"Token {token}", "Idempotency-Key": key}))

        winner = {counts[n] for n, r in enumerate(responses) if r.status_code == 202}
        assert len(winner) == 1, [r.text for r in responses]
        won = [r for n, r in enumerate(responses) if counts[n] in winner]
        lost = [r for n, r in enumerate(responses) if counts[n] not in winner]
        assert {r.status_code for r in won} == {202}, [r.text for r in won if r.status_code != 202]
        assert len({r.json()["id"] for r in won}) == 1
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in won) == len(won) - 1
        assert {r.status_code for r in lost} == {409}
        assert {r.json()["error"]["code"] for r in lost} == {"idempotency_conflict"}
        assert Job.objects.count() == 1 and Hold.objects.count() == 1
        assert START_CREDITS - balance(user)["available"] == winner.pop() * PRICE
        assert credits_selectors.ledger_check() == []
