"""Billing's test helpers: the sandbox serving Stripe and Resend, users with an email, and
delivering the sandbox's signed events to the webhook the way Stripe would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from creditgate.billing.models import CreditPack
from creditgate.credits import services as credits_services
from creditgate.credits.models import Account, LedgerEntry
from creditgate.credits.tests.factories import make_user  # noqa: F401  (the tests import it from here)
from creditgate.providers.sandbox.stripe_api import sign

WEBHOOK = "/api/v1/webhooks/stripe/"




def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def account_of(user) -> Account:
    account = credits_services.account_for_user(user=user)
    account.refresh_from_db()
    return account


def books(user) -> tuple:
    """What a refused or repeated delivery must leave unchanged: the counters and the ledger length."""
    account = account_of(user)
    return account.available, account.held, account.shortfall, LedgerEntry.objects.count()


@pytest.fixture
def stripe(sandbox):
    """The sandbox's Stripe, keeping its events for the test to deliver (`deliver`)."""
    sandbox.stripe.configure(hold=True)
    return sandbox.stripe


@pytest.fixture
def pack(db):
    return CreditPack.objects.create(name="Test pack", credits=250, price_amount=1200, currency="usd")


def deliver(event: dict, stripe, *, signature: str | None = None, headers: dict | None = None):
    """POST `event` to the webhook as Stripe would (signed now with the sandbox's secret)."""
    body, signed = stripe.signed(event)
    extra: dict[str, Any] = {} if signature == "" else {"HTTP_STRIPE_SIGNATURE": signature or signed}
    return APIClient().post(WEBHOOK, data=body, content_type="application/json", **extra, **(headers or {}))


def deliver_all(stripe) -> list:
    return [deliver(event, stripe) for event in stripe.take_held()]


def resigned(event: dict, secret: str, timestamp: int) -> tuple[bytes, str]:
    payload = json.dumps(event)
    return payload.encode(), sign(payload, secret, timestamp)


def buy(client, stripe, pack) -> tuple[dict, dict]:
    """Start a checkout for `pack` and pay it on the sandbox: the checkout and the held
    `checkout.session.completed` event."""
    response = client.post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json")
    assert response.status_code == 201, response.content
    checkout = response.json()
    session_id = checkout["url"].rsplit("/", 1)[1]
    stripe.pay(session_id)
    (event,) = stripe.take_held()
    assert event["type"] == "checkout.session.completed"
    return checkout, event
