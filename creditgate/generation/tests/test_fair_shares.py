"""Fair shares (issue 24, item 4): an account, and each API key, may have only so many jobs in flight
(queued or running). Past a limit a generation POST is a 429 `too_many_jobs_in_flight` with
`Retry-After`, and nothing is held or created; one key at its limit leaves room for the account's
other keys and for other accounts.

The rule (charging.InFlight, charging.in_flight_retry_after) alone, then through HTTP and the
database (on PostgreSQL too when DATABASE_URL points at it). Jobs are kept in flight by parking
them: the hand-over to the runner is held back, and a test runs a parked job to free its place."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from creditgate.core import runtime
from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.models import Hold, LedgerEntry
from creditgate.generation import charging
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import START_CREDITS, balance, make_user

IMAGE = ("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 1})
TEXT = ("/api/v1/text/generations/", {"prompt": "Say hello.", "max_tokens": 50})
ARTICLE = ("/api/v1/articles/generations/", {"prompt": "Foxes", "tier": "basic", "image_count": 1, "max_tokens": 50})


# --- The rule ------------------------------------------------------------------------------------


def test_a_limit_admits_below_it_and_zero_is_no_limit():
    assert charging.InFlight("account", 3, 2).admits
    assert not charging.InFlight("account", 3, 3).admits
    assert not charging.InFlight("api_key", 3, 7).admits  # a limit lowered below what is in flight
    assert charging.InFlight("account", 0, 10_000).admits


def test_retry_after_is_the_mean_time_in_flight_shared_by_the_jobs_in_flight():
    # 12 jobs in flight, each in flight about 60 s: one finishes every 5 s (Little's law).
    assert charging.in_flight_retry_after([50.0, 70.0], 12) == 5
    assert charging.in_flight_retry_after([3.0], 1) == 3
    assert charging.in_flight_retry_after([0.2], 12) == 1  # never 0: at least a second
    assert charging.in_flight_retry_after([3600.0], 2) == charging.IN_FLIGHT_RETRY_AFTER_MAX
    assert charging.in_flight_retry_after([], 12) == charging.IN_FLIGHT_RETRY_AFTER_DEFAULT  # nothing to go by


@pytest.mark.parametrize("name", ["CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT", "CREDITGATE_API_KEY_JOBS_IN_FLIGHT"])
def test_a_negative_limit_is_refused_at_start(name):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "creditgate.settings", name: "-1"}
    started = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert started.returncode != 0
    assert "must be 0 (no limit) or more" in started.stderr


# --- Through HTTP and the database -----------------------------------------------------------------


class Parked:
    """Jobs accepted while this is active stay queued (in flight): their hand-over to the runner is
    held back until `run` hands one over and waits for it to be final."""

    def __init__(self, monkeypatch):
        self.ids: list[str] = []
        self._enqueue = runtime.enqueue
        monkeypatch.setattr(runtime, "enqueue", self._park)

    def _park(self, job_id) -> bool:
        self.ids.append(str(job_id))
        return True

    def run(self, job_id) -> None:
        self.ids.remove(str(job_id))
        assert self._enqueue(job_id)
        runtime.wait_idle()
        assert Job.objects.get(pk=job_id).is_final


@pytest.fixture
def parked(gen_env, monkeypatch):
    return Parked(monkeypatch)


@pytest.fixture
def limits(settings):
    def set_limits(*, account: int, api_key: int) -> None:
        settings.CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT = account
        settings.CREDITGATE_API_KEY_JOBS_IN_FLIGHT = api_key
    return set_limits


def session(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def post(client, endpoint=IMAGE, **headers):
    path, body = endpoint
    return client.post(path, body, format="json", **headers)


def books(user) -> tuple:
    """Everything a refused request must leave as it was: the balance, the ledger, holds, jobs."""
    return balance(user), LedgerEntry.objects.count(), Hold.objects.count(), Job.objects.count()


def assert_too_many(response, *, scope: str, limit: int, in_flight: int) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "too_many_jobs_in_flight"
    retry_after = error["details"].pop("retry_after")
    assert error["details"] == {"scope": scope, "limit": limit, "in_flight": in_flight}
    assert 1 <= retry_after <= charging.IN_FLIGHT_RETRY_AFTER_MAX
    assert response["Retry-After"] == str(retry_after)
    assert f"its limit of {limit}" in error["message"]


@pytest.mark.parametrize("endpoint", [IMAGE, TEXT, ARTICLE], ids=["images", "text", "article"])
def test_past_the_accounts_limit_a_generation_post_is_429_and_nothing_is_held_or_created(parked, limits, endpoint):
    limits(account=2, api_key=50)
    user = make_user()
    api = session(user)
    accepted = [post(api, IMAGE, HTTP_IDEMPOTENCY_KEY=f"k-{n}") for n in range(2)]
    assert [r.status_code for r in accepted] == [202, 202]
    before = books(user)

    refused = post(api, endpoint, HTTP_IDEMPOTENCY_KEY="k-refused")

    assert_too_many(refused, scope="account", limit=2, in_flight=2)
    assert books(user) == before
    assert not Job.objects.filter(idempotency_key="k-refused").exists()
    # A replay of an accepted job is still answered, before the limit.
    replay = post(api, IMAGE, HTTP_IDEMPOTENCY_KEY="k-0")
    assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == accepted[0].json()["id"]
    # Another account has its own share.
    assert post(session(make_user("bob"))).status_code == 202
    # A job that finishes frees its place, for exactly one more: the refused request never counted.
    parked.run(accepted[0].json()["id"])
    assert post(api, endpoint, HTTP_IDEMPOTENCY_KEY="k-refused").status_code == 202
    assert_too_many(post(api), scope="account", limit=2, in_flight=2)


def test_one_api_key_at_its_limit_leaves_room_for_the_accounts_other_keys_and_other_accounts(parked, limits):
    limits(account=4, api_key=2)
    owner = make_user("owner")
    member = credits_services.member_for_user(user=owner)
    key_a, secret_a = credits_services.api_key_create(actor=owner, member=member, name="greedy")
    key_b, secret_b = credits_services.api_key_create(actor=owner, member=member, name="polite")
    greedy, polite = bearer(secret_a), bearer(secret_b)

    assert [post(greedy).status_code for _ in range(2)] == [202, 202]
    before = books(owner)
    assert_too_many(post(greedy), scope="api_key", limit=2, in_flight=2)
    assert books(owner) == before

    # The account's other key and its page (a session counts only against the account) still start jobs.
    assert post(polite).status_code == 202
    assert post(session(owner), TEXT).status_code == 202
    # Now the account is full: every caller of it is refused, by the account's limit.
    assert_too_many(post(polite), scope="account", limit=4, in_flight=4)
    assert_too_many(post(session(owner)), scope="account", limit=4, in_flight=4)
    # Another account is untouched by all of this.
    assert post(session(make_user("bob"))).status_code == 202

    # Each job records the key it was made with: that is what the key's count counts.
    assert Job.objects.filter(api_key=key_a).count() == 2
    assert Job.objects.filter(api_key=key_b).count() == 1
    assert Job.objects.filter(user=owner, api_key=None).count() == 1  # the page's
    # Once one of the greedy key's jobs is final, that key may start one more.
    parked.run(Job.objects.filter(api_key=key_a).values_list("pk", flat=True).first())
    assert post(greedy).status_code == 202
    assert_too_many(post(greedy), scope="account", limit=4, in_flight=4)


def test_the_retry_after_follows_how_long_the_callers_jobs_stay_in_flight(parked, limits):
    limits(account=1, api_key=0)
    user = make_user()
    api = session(user)
    first = post(api)
    parked.run(first.json()["id"])  # one finished job to go by
    post(api)
    finished_job = Job.objects.get(pk=first.json()["id"])
    assert finished_job.finished_at is not None
    in_flight_for = (finished_job.finished_at - finished_job.created_at).total_seconds()

    refused = post(api)

    assert_too_many(refused, scope="account", limit=1, in_flight=1)
    assert int(refused["Retry-After"]) == charging.in_flight_retry_after([in_flight_for], 1)


def test_zero_means_no_limit(parked, limits):
    limits(account=0, api_key=0)
    owner = make_user("owner")
    _, secret = credits_services.api_key_create(actor=owner, member=credits_services.member_for_user(user=owner),
                                                name="ci")
    assert [post(bearer(secret)).status_code for _ in range(5)] == [202] * 5
    assert Job.objects.count() == 5


def test_refused_requests_leave_the_books_balanced(parked, limits):
    limits(account=1, api_key=1)
    user = make_user()
    api = session(user)
    assert post(api).status_code == 202
    for endpoint in (IMAGE, TEXT, ARTICLE):
        assert post(api, endpoint).status_code == 429
    assert balance(user)["available"] == START_CREDITS - 1
    assert credits_selectors.ledger_check() == []


def estimate_in_flight(client) -> dict | None:
    response = client.post("/api/v1/credits/estimate/", {"kind": "image", "tier": "basic", "count": 1}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["jobs_in_flight"]


def test_the_estimate_names_the_in_flight_limit_that_binds_and_whether_it_admits_a_job(parked, limits):
    limits(account=3, api_key=2)
    owner = make_user("owner")
    _, secret = credits_services.api_key_create(actor=owner, member=credits_services.member_for_user(user=owner),
                                                name="ci")
    page, key = session(owner), bearer(secret)
    assert estimate_in_flight(page) == {"scope": "account", "limit": 3, "in_flight": 0, "admits": True}
    assert estimate_in_flight(key) == {"scope": "api_key", "limit": 2, "in_flight": 0, "admits": True}

    assert [post(key).status_code for _ in range(2)] == [202, 202]
    assert estimate_in_flight(key) == {"scope": "api_key", "limit": 2, "in_flight": 2, "admits": False}
    assert_too_many(post(key), scope="api_key", limit=2, in_flight=2)  # as the estimate said
    assert estimate_in_flight(page) == {"scope": "account", "limit": 3, "in_flight": 2, "admits": True}
    assert post(page).status_code == 202
    assert estimate_in_flight(page) == {"scope": "account", "limit": 3, "in_flight": 3, "admits": False}

    limits(account=0, api_key=0)
    assert estimate_in_flight(page) is None
