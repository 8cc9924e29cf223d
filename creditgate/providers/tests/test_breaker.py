"""Circuit breakers: the rules on both stores, across OS processes, one trial under concurrency,
and what ai-config and the admin show."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from creditgate.catalog import ai_config_cache
from creditgate.core.tests import races
from creditgate.core.tests.polling import wait_for
from creditgate.providers import breaker
from creditgate.providers.breaker import breaker_allow, breaker_record, breaker_state

N = 3  # failures in a row that open a breaker, in these tests
P, M, M2 = "runware", "runware:97@1", "google:4@2"


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["database", "redis"])
def store(request, settings):
    if request.param == "redis" and not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL)")
    settings.CREDITGATE_BREAKER_STORE = request.param
    settings.CREDITGATE_BREAKER_FAILURES = N
    settings.CREDITGATE_BREAKER_WINDOW_SECONDS = 60
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = 30
    return request.param


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(breaker, "clock", fake)
    return fake


def fail(n: int, model: str = M) -> None:
    for _ in range(n):
        breaker_record(P, model, False)


# --- The rules, on each store -------------------------------------------------------------------

@pytest.mark.django_db
def test_n_failures_in_a_row_open_it_and_calls_are_refused_for_the_cool_down(store, clock):
    fail(N - 1)
    assert breaker_allow(P, M) and breaker_state(P).state == "closed"
    assert breaker_state(P).failures == N - 1
    fail(1)
    status = breaker_state(P)
    assert status.state == "open" and status.retry_at is not None and status.retry_at.timestamp() == clock.now + 30
    assert not breaker_allow(P, M)
    assert not breaker_allow(P, M2)  # the provider's breaker: every model of it
    clock.advance(29.9)
    assert not breaker_allow(P, M)
    assert breaker_allow("openai", "gpt-image-2")  # other providers are not affected


@pytest.mark.django_db
def test_failures_further_apart_than_the_window_do_not_add_up(store, clock):
    for _ in range(N + 2):
        breaker_record(P, M, False)
        clock.advance(61)
    assert breaker_state(P).state == "closed" and breaker_allow(P, M)


@pytest.mark.django_db
def test_a_success_resets_the_count(store, clock):
    fail(N - 1)
    breaker_record(P, M, True)
    fail(N - 1)
    assert breaker_state(P).state == "closed" and breaker_allow(P, M)


@pytest.mark.django_db
def test_after_the_cool_down_exactly_one_trial_and_its_success_closes_it(store, clock):
    fail(N)
    clock.advance(30)
    assert breaker_state(P).state == "half_open"
    assert breaker_allow(P, M)          # the trial
    assert not breaker_allow(P, M)      # nobody else while it runs
    assert not breaker_allow(P, M2)
    breaker_record(P, M, True)
    assert breaker_state(P).state == "closed" and breaker_state(P, M).state == "closed"
    assert breaker_allow(P, M) and breaker_allow(P, M) and breaker_allow(P, M2)


@pytest.mark.django_db
def test_a_failed_trial_opens_it_for_another_cool_down(store, clock):
    fail(N)
    clock.advance(30)
    assert breaker_allow(P, M)
    breaker_record(P, M, False)
    assert breaker_state(P).state == "open" and not breaker_allow(P, M)
    clock.advance(29)
    assert not breaker_allow(P, M)
    clock.advance(1)
    assert breaker_allow(P, M)


@pytest.mark.django_db
def test_a_trial_that_never_reports_gives_way_to_another_after_a_cool_down(store, clock):
    fail(N)
    clock.advance(30)
    assert breaker_allow(P, M)  # its worker dies: no record
    clock.advance(29)
    assert not breaker_allow(P, M)
    clock.advance(1)
    assert breaker_allow(P, M)
    assert not breaker_allow(P, M)


@pytest.mark.django_db
def test_an_outcome_that_arrives_while_open_changes_nothing(store, clock):
    fail(N)
    breaker_record(P, M, True)  # a call allowed before it opened, finishing late
    assert breaker_state(P).state == "open" and not breaker_allow(P, M)


@pytest.mark.django_db
def test_a_model_opens_its_own_breaker_without_its_provider(store, clock):
    # Another model's successes keep the provider's count at zero; this model's failures add up.
    for _ in range(N):
        breaker_record(P, M, False)
        breaker_record(P, M2, True)
    assert breaker_state(P, M).state == "open" and breaker_state(P).state == "closed"
    assert not breaker_allow(P, M)
    assert breaker_allow(P, M2)


@pytest.mark.django_db
def test_a_trial_needs_both_breakers_and_takes_neither_when_one_refuses(store, clock):
    fail(N)  # opens the model's and the provider's
    clock.advance(30)
    assert breaker_allow(P, M2)  # M2 takes the provider's trial
    assert not breaker_allow(P, M)  # M's own cool-down is over, but the provider's trial is running
    breaker_record(P, M2, True)  # the provider is back
    assert breaker_allow(P, M)   # M's own trial now
    assert not breaker_allow(P, M)


@pytest.mark.django_db
def test_reset_closes_it(store, clock):
    fail(N)
    breaker.breaker_reset(P)
    breaker.breaker_reset(P, M)
    assert breaker_allow(P, M) and breaker_state(P).state == "closed"
    assert breaker.breakers_list() == []


@pytest.mark.django_db
def test_open_until_names_the_later_of_the_two_breakers(store, clock):
    fail(N, model=M)
    clock.advance(10)
    for _ in range(N):
        breaker_record(P, M2, False)  # M2's opens now; the provider's is already open
    until = breaker.breaker_open_until([(P, M), (P, M2), ("openai", "gpt-image-2")])
    assert until == {(P, M): clock.now + 20, (P, M2): clock.now + 30, ("openai", "gpt-image-2"): None}


# --- Shared across OS processes -----------------------------------------------------------------

def _worker_env(settings) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "creditgate.settings",
           "CREDITGATE_BREAKER_STORE": settings.CREDITGATE_BREAKER_STORE,
           "CREDITGATE_BREAKER_FAILURES": str(settings.CREDITGATE_BREAKER_FAILURES),
           "CREDITGATE_BREAKER_WINDOW_SECONDS": str(settings.CREDITGATE_BREAKER_WINDOW_SECONDS),
           "CREDITGATE_BREAKER_COOLDOWN_SECONDS": str(settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS)}
    if connection.vendor == "postgresql":
        # The test database (the breaker's store, or only where a worker's cache invalidation
        # looks for a transaction).
        s = connection.settings_dict
        env["DATABASE_URL"] = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    return env


def Workers(jobs: list[dict], env: dict) -> races.Workers:
    """Breaker worker processes (core.tests.races) with these settings."""
    return races.Workers("creditgate.providers.tests.breaker_worker", jobs, env=env)


@pytest.fixture
def shared_store(store, transactional_db, settings):
    """A store another OS process can reach: Redis, or the database when it is PostgreSQL."""
    if store == "database" and connection.vendor != "postgresql":
        pytest.skip("the SQLite test database lives in this process only; set DATABASE_URL to PostgreSQL")
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = 1.0
    return store


@pytest.mark.postgres
def test_another_process_sees_the_breaker_this_one_opened_and_its_trial(shared_store, settings):
    # Workers start (slowly, on a busy machine) before the clock that matters starts running.
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = 2.0
    peek = Workers([{"ops": [{"op": "state", "provider": P}, {"op": "allow", "provider": P, "model": M2}]}],
                   _worker_env(settings))
    fail(N)
    assert peek.run() == ["open", False]
    trial = Workers([{"ops": [{"op": "allow", "provider": P, "model": M},
                              {"op": "record", "provider": P, "model": M, "ok": True}]}], _worker_env(settings))
    wait_for(lambda: breaker_state(P).state == "half_open", what="the cool-down's end")
    # The other process takes the trial and reports success; this one sees it closed.
    assert trial.run() == [True, None]
    assert breaker_state(P).state == "closed" and breaker_allow(P, M2)


@pytest.mark.postgres
def test_failures_from_several_processes_add_up_to_one_breaker(shared_store, settings):
    settings.CREDITGATE_BREAKER_FAILURES = 4
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = 60.0
    jobs = [{"ops": [{"op": "record", "provider": P, "model": M, "ok": False}] * 2} for _ in range(2)]
    Workers(jobs, _worker_env(settings)).run()
    assert breaker_state(P).state == "open"


@pytest.mark.postgres
def test_exactly_one_trial_goes_through_when_many_processes_and_threads_ask_at_once(shared_store, settings):
    # A trial holds its place for one cool-down: long enough here that a slow machine cannot let
    # a second trial through legitimately while the callers below are still asking.
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = 3.0
    fail(N)
    ask = {"op": "allow", "provider": P, "model": M}
    jobs = [{"threads": 6, "ops": [ask] * 6} for _ in range(3)]
    workers = Workers(jobs, _worker_env(settings))  # they start while the cool-down runs
    # Over: every caller below competes for the one trial.
    wait_for(lambda: breaker_state(P).state == "half_open", what="the cool-down's end")
    go = threading.Event()

    def here(_):
        go.wait()
        try:
            return breaker_allow(P, M)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(here, i) for i in range(4)]
        go.set()
        results = workers.run() + [f.result() for f in futures]
    assert len(results) == 22
    assert results.count(True) == 1


@pytest.mark.django_db(transaction=True)  # each thread has its own connection: the rows must be committed
def test_exactly_one_trial_among_threads_of_one_process(store, settings, clock):
    if store == "database" and connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers by locking the file; the race is PostgreSQL's and Redis's")
    fail(N)
    clock.advance(30)
    go = threading.Event()

    def one(_):
        go.wait()
        try:
            return breaker_allow(P, M)
        finally:
            if store == "database":
                connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(one, i) for i in range(16)]
        go.set()
        results = [f.result() for f in futures]
    assert results.count(True) == 1


# --- When the store is unreachable --------------------------------------------------------------

@pytest.mark.django_db
def test_an_unreachable_redis_lets_calls_through(settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.CREDITGATE_BREAKER_STORE = "redis"
    breaker_record(P, M, False)
    assert breaker_allow(P, M)
    assert breaker_state(P).state == "closed"
    assert breaker.breaker_open_until([(P, M)]) == {(P, M): None}
    assert "Redis unreachable" in caplog.text


# --- What ai-config and the admin show ----------------------------------------------------------

URL = "/api/v1/system/ai-config/"
# Real seconds: the cached payload expires by the real clock. Long enough that a busy machine
# does not reach the end of a cool-down between opening a breaker and looking at ai-config.
COOL_DOWN = 2.0


def _tiers(client) -> list[str]:
    return [q["tier"] for q in client.get(URL).json()["image_qualities"]]


@pytest.fixture
def fresh_process():
    ai_config_cache._memos.clear()
    yield
    ai_config_cache._memos.clear()


@pytest.mark.django_db
def test_ai_config_lists_a_tier_while_one_of_its_models_can_be_called(store, client, fresh_process, settings,
                                                                      django_assert_num_queries):
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = COOL_DOWN
    assert _tiers(client) == ["basic", "quality", "premium"]
    for _ in range(N):
        breaker_record("openai", "gpt-image-2", False)
    # Quality's first model is refused, its backup (Runware) is not: the tier stays, at its price.
    body = client.get(URL).json()
    assert [(q["tier"], q["credits_per_image"]) for q in body["image_qualities"]] == [
        ("basic", 1), ("quality", 5), ("premium", 15)]
    assert body["text_model"] is None  # gpt-5.1 is OpenAI's and has no backup
    with django_assert_num_queries(0):
        client.get(URL)  # the warm path reads no breaker
    for _ in range(N):
        breaker_record("runware", "runware:97@1", False)
    assert _tiers(client) == []  # every model of every tier is refused now
    # The cool-downs end: a trial may go, so the tiers are offered again.
    wait_for(lambda: _tiers(client) == ["basic", "quality", "premium"], what="the tiers offered again")
    assert client.get(URL).json()["text_model"] == "gpt-5.1"


@pytest.mark.django_db
def test_a_failed_trial_hides_the_tier_again_at_once(store, client, fresh_process, settings):
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = COOL_DOWN
    for _ in range(N):
        breaker_record("runware", "runware:97@1", False)
    assert "basic" not in _tiers(client)
    wait_for(lambda: "basic" in _tiers(client), what="basic offered again after the cool-down")
    assert breaker_allow("runware", "runware:97@1")
    breaker_record("runware", "runware:97@1", False)
    assert "basic" not in _tiers(client)


@pytest.mark.django_db
def test_the_admin_shows_each_providers_breaker_and_resets_it(store, admin_client, clock):
    for _ in range(N):
        breaker_record("runware", "runware:97@1", False)
    page = admin_client.get("/admin/catalog/integrationprovider/").content.decode()
    assert "open until" in page and "runware:97@1: open until" in page
    models_page = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert "provider open until" in models_page
    admin_client.post("/admin/catalog/integrationprovider/",
                      {"action": "reset_breakers", "_selected_action": ["runware"]})
    assert breaker_state("runware").state == "closed"
    assert breaker_state("runware", "runware:97@1").state == "closed"
    assert breaker_allow("runware", "google:4@2")
