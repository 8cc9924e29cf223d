"""Two members of one account racing the same Idempotency-Key at once, against gunicorn with 4
worker processes on PostgreSQL (real processes, real HTTP): each member gets a job of their own,
every retry of a member gets that member's job, and each job is held and charged once (issue 22)."""

import time
import uuid

import pytest
import requests
from rest_framework.authtoken.models import Token

from creditgate.core import reconciliation
from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.models import Hold
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import START_CREDITS, balance, make_user
from creditgate.generation.tests.test_rate_limit_burst import PRICE, _burst, _gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("gen_env")]

RETRIES = 12  # requests per member, all at once


def test_two_members_racing_one_key_each_get_their_own_job_charged_once(sandbox, tmp_path):
    key = str(uuid.uuid4())
    with _gunicorn(sandbox, tmp_path, rate="1000/min") as (url, _, owner):
        members = []
        for name in ("mia", "max"):
            user = make_user(name, credits=0)
            credits_services.account_member_add(account=credits_services.account_for_user(user=owner), user=user)
            members.append((user, Token.objects.create(user=user).key))

        # Interleaved: mia, max, mia, max, ... all released by one barrier.
        responses = _burst(2 * RETRIES, lambda n: requests.post(
            url, json={"prompt": "a fox", "tier": "basic", "count": 1}, timeout=60,
            headers={"Authorization": f"Token {members[n % 2][1]}", "Idempotency-Key": key}))

        assert {r.status_code for r in responses} == {202}, [r.text for r in responses if r.status_code != 202]
        jobs: dict[str, set[str]] = {}
        for n, response in enumerate(responses):
            jobs.setdefault(members[n % 2][0].username, set()).add(response.json()["id"])
        # One job per member: every request of a member names the same one, never the other's.
        assert {name: len(ids) for name, ids in jobs.items()} == {"mia": 1, "max": 1}, jobs
        assert jobs["mia"] != jobs["max"], jobs
        for n, response in enumerate(responses):
            user = members[n % 2][0]
            assert response.json()["user"] == {"id": user.pk, "username": user.username}
        for parity in (0, 1):  # each member's first request started their job; the others replayed it
            mine = [r for n, r in enumerate(responses) if n % 2 == parity]
            assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in mine) == RETRIES - 1

        assert Job.objects.filter(idempotency_key=key).count() == 2 and Hold.objects.count() == 2
        _wait_final(Job.objects.filter(idempotency_key=key))
        assert sorted(Job.objects.values_list("user__username", "credits_charged")) == [("max", PRICE),
                                                                                        ("mia", PRICE)]
        # Each member sees their own job and not the other's; the owner sees both.
        for n, (user, token) in enumerate(members):
            own, other = jobs[user.username], jobs[members[1 - n][0].username]
            get = lambda job_id, token=token: requests.get(  # noqa: E731
                f"{url.rsplit('/images/', 1)[0]}/jobs/{job_id}/", headers={"Authorization": f"Token {token}"},
                timeout=30)
            assert get(next(iter(own))).status_code == 200
            assert get(next(iter(other))).status_code == 404
        assert START_CREDITS - balance(owner)["available"] == 2 * PRICE
        assert credits_selectors.ledger_check() == [] and reconciliation.reconciliation_audit() == []


def _wait_final(jobs, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while jobs.exclude(status__in=["succeeded", "partial", "failed"]).exists():
        assert time.monotonic() < deadline, list(jobs.values_list("status", flat=True))
        time.sleep(0.2)
