"""The generation rate limit is exact across processes: 60 concurrent POSTs against gunicorn with 4
worker processes and a limit of 20 admit exactly 20 (PostgreSQL; real processes, real HTTP)."""

import subprocess
import sys
import threading
import uuid
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


def test_a_burst_of_60_concurrent_posts_admits_exactly_the_limit(sandbox, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run by .ci/run)")
    env = {**worker_env(sandbox, backend="inprocess"), "CREDITGATE_GENERATION_RATE": f"{LIMIT}/min",
           "DEBUG": "true"}
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
            for _ in range(8):  # every worker has served a request (its catalog memo is warm), none counted
                assert requests.post(url, json={"prompt": "x", "tier": "basic", "count": 0}, timeout=30,
                                     headers={"Authorization": f"Token {token}"}).status_code == 400
            start = threading.Barrier(BURST)

            def one(n: int) -> requests.Response:
                start.wait()
                return requests.post(url, json={"prompt": f"fox {n}", "tier": "basic", "count": 1}, timeout=60,
                                     headers={"Authorization": f"Token {token}", "Idempotency-Key": str(uuid.uuid4())})

            with ThreadPoolExecutor(BURST) as pool:
                responses = list(pool.map(one, range(BURST)))

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
        finally:
            web.terminate()
            web.wait(timeout=30)
