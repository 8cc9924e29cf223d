"""Fair shares under concurrency, on PostgreSQL: many generation POSTs at once, each on its own
thread with its own database connection, through the whole request stack (authentication, intake,
the hold under the account row's lock). The in-flight limits admit exactly their number; the rest
are refused with 429 and hold nothing. Jobs are parked (test_fair_shares.Parked), so none leaves
flight during the burst."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.models import Hold
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import START_CREDITS, balance, make_user
from creditgate.generation.tests.test_fair_shares import IMAGE, bearer, parked, session  # noqa: F401 (fixture)

pytestmark = [pytest.mark.postgres]

PRICE = 1  # a basic image


@pytest.fixture
def pg(parked):  # noqa: F811 (the fixture imported above)
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    return parked


def burst(clients: list[APIClient]) -> list[tuple[int, dict]]:
    """One image POST per client, all released at once, each thread on its own connection:
    (status, body) in the clients' order."""
    start = threading.Barrier(len(clients))

    def one(client: APIClient) -> tuple[int, dict]:
        start.wait()
        try:
            path, body = IMAGE
            response = client.post(path, body, format="json")
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(one, clients))


def test_40_concurrent_posts_against_an_account_limit_of_12_admit_exactly_12(pg, settings):
    settings.CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT = 12
    settings.CREDITGATE_GENERATION_RATE = (1000, 60)
    user = make_user()

    results = burst([session(user) for _ in range(40)])

    statuses = [status for status, _ in results]
    assert statuses.count(202) == 12, statuses
    assert statuses.count(429) == 28, statuses
    refusals = [body["error"] for status, body in results if status == 429]
    assert {error["code"] for error in refusals} == {"too_many_jobs_in_flight"}
    assert {(e["details"]["scope"], e["details"]["limit"], e["details"]["in_flight"]) for e in refusals} == {
        ("account", 12, 12)}
    accepted = {body["id"] for status, body in results if status == 202}
    assert {str(pk) for pk in Job.objects.values_list("pk", flat=True)} == accepted
    assert sorted(pg.ids) == sorted(accepted)  # every accepted job was handed over, none refused
    assert Hold.objects.count() == 12
    assert START_CREDITS - balance(user)["available"] == 12 * PRICE
    assert credits_selectors.ledger_check() == []


def test_a_greedy_key_at_once_gets_its_share_and_starves_neither_its_accounts_other_key_nor_another_account(
        pg, settings):
    settings.CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT = 100
    settings.CREDITGATE_API_KEY_JOBS_IN_FLIGHT = 5
    settings.CREDITGATE_GENERATION_RATE = (1000, 60)
    owner = make_user("owner")
    member = credits_services.member_for_user(user=owner)
    greedy_key, greedy = credits_services.api_key_create(actor=owner, member=member, name="greedy")
    polite_key, polite = credits_services.api_key_create(actor=owner, member=member, name="polite")
    other = make_user("bob")
    # Interleaved, all released at once: 20 from the greedy key, 4 from the polite one, 4 from bob's page.
    callers = ["greedy"] * 20 + ["polite"] * 4 + ["bob"] * 4
    callers = callers[::2] + callers[1::2]
    clients = {"greedy": lambda: bearer(greedy), "polite": lambda: bearer(polite), "bob": lambda: session(other)}

    results = burst([clients[name]() for name in callers])

    by_caller: dict[str, list[int]] = {}
    for name, (status, _) in zip(callers, results, strict=True):
        by_caller.setdefault(name, []).append(status)
    assert sorted(by_caller["greedy"]) == [202] * 5 + [429] * 15
    assert by_caller["polite"] == [202] * 4
    assert by_caller["bob"] == [202] * 4
    for name, (status, body) in zip(callers, results, strict=True):
        if status == 429:
            assert name == "greedy"
            assert body["error"]["code"] == "too_many_jobs_in_flight"
            assert body["error"]["details"]["scope"] == "api_key"
    assert Job.objects.filter(api_key=greedy_key).count() == 5
    assert Job.objects.filter(api_key=polite_key).count() == 4
    assert Hold.objects.count() == 13
    assert credits_selectors.ledger_check() == []
