"""PostgreSQL only: Stripe's events delivered concurrently from several threads in several OS
processes against one committed database. A session is paid for in credits once, a refund racing
its payment is never lost, and one crossing of a low-balance threshold sends one email."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from creditgate.billing import selectors
from creditgate.billing.models import EventOutcome, Payment, StripeEvent
from creditgate.catalog.models import IntegrationProvider
from creditgate.credits.models import LedgerEntry
from creditgate.credits.tests.test_postgres import Workers

from .conftest import account_of, buy, client_for, make_user

pytestmark = pytest.mark.postgres
WORKER = "creditgate.billing.tests.concurrency_worker"


@pytest.fixture
def pg(transactional_db, stripe, pack, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    for provider_id in ("stripe", "resend"):
        IntegrationProvider.objects.get_or_create(provider_id=provider_id)
    return stripe


def run(ops: list[dict], sandbox_url: str) -> list[dict]:
    half = len(ops) // 2
    workers = Workers([{"threads": 6, "ops": ops[:half]}, {"threads": 6, "ops": ops[half:]}], module=WORKER,
                      env={"CREDITGATE_SANDBOX": "true", "CREDITGATE_SANDBOX_URL": sandbox_url,
                           "CREDITGATE_JOBS_BACKEND": "inprocess"})
    workers.go()
    return workers.results()


def webhook(stripe, event: dict) -> dict:
    body, signature = stripe.signed(event)
    return {"op": "webhook", "payload": body.decode(), "signature": signature}


def clean() -> None:
    call_command("check_ledger", stdout=io.StringIO())  # exits 1 on any problem


def test_one_event_delivered_12_times_at_once_grants_once(pg, pack, sandbox):
    user = make_user()
    _, event = buy(client_for(user), pg, pack)
    results = run([webhook(pg, event)] * 12, sandbox.url)
    assert all(r["ok"] for r in results)
    assert sum(not r["duplicate"] for r in results) == 1
    assert {r["outcome"] for r in results} == {"fulfilled"}
    assert account_of(user).available == pack.credits
    assert StripeEvent.objects.get().deliveries == 12
    clean()


def test_12_different_events_for_one_session_at_once_grant_once(pg, pack, sandbox):
    """Different event ids, so no event-level dedupe helps: only the payment's unique row."""
    user = make_user()
    _, event = buy(client_for(user), pg, pack)
    ops = [webhook(pg, {**event, "id": f"evt_race_{n}"}) for n in range(12)]
    results = run(ops, sandbox.url)
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == ["already_fulfilled"] * 11 + ["fulfilled"]
    assert account_of(user).available == pack.credits
    assert Payment.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="grant", account=account_of(user)).count() == 1
    clean()


def test_refunds_racing_their_payments_are_never_lost(pg, pack, sandbox):
    users, ops = [], []
    for n in range(5):
        user = make_user(f"racer{n}")
        _, completed = buy(client_for(user), pg, pack)
        pg.refund(completed["data"]["object"]["payment_intent"], pack.price_amount)
        (refunded,) = pg.take_held()
        users.append(user)
        ops += [webhook(pg, completed), webhook(pg, refunded), webhook(pg, refunded), webhook(pg, completed)]
    results = run(ops, sandbox.url)
    assert all(r["ok"] for r in results)
    for user in users:
        account = account_of(user)
        assert (account.available, account.shortfall) == (0, 0)
    assert not StripeEvent.objects.filter(outcome=EventOutcome.PENDING).exists()
    assert Payment.objects.filter(credits_reversed=pack.credits).count() == 5
    assert selectors.payments_audit() == []
    clean()


def test_concurrent_captures_crossing_the_threshold_send_one_email(pg, sandbox):
    from creditgate.billing import services

    user = make_user(credits=100)
    services.low_balance_alert_set(user=user, threshold=90)
    account = account_of(user)
    ops = [{"op": "capture", "account_id": account.pk, "amount": 5, "key": f"k{n}"} for n in range(12)]
    results = run(ops, sandbox.url)
    assert all(r["ok"] for r in results)
    assert account_of(user).available == 40
    assert len(sandbox.requests("resend.emails")) == 1
    clean()
