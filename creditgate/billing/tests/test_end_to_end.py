"""Buying over real HTTP: the service under the live server, the sandbox's Stripe delivering its
signed events to the service's webhook URL itself, duplicated, reordered and late."""

from __future__ import annotations

import pytest
import requests
from rest_framework.authtoken.models import Token

from creditgate.billing.models import CreditPack, EventOutcome, StripeEvent
from creditgate.catalog.models import IntegrationProvider
from creditgate.credits import selectors as credits_selectors

from .conftest import account_of, make_user


@pytest.fixture
def live(transactional_db, sandbox, live_server, settings):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    IntegrationProvider.objects.get_or_create(provider_id="stripe")
    pack = CreditPack.objects.create(name="Live pack", credits=300, price_amount=900, currency="usd")
    user = make_user()
    http = requests.Session()
    http.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    yield live_server, sandbox.stripe, pack, user, http
    sandbox.stripe.wait_deliveries()


def start(live_server, http, pack) -> dict:
    response = http.post(f"{live_server.url}/api/v1/credits/checkout/", json={"pack": pack.pk}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def session_of(checkout: dict) -> str:
    return checkout["url"].rsplit("/", 1)[1]


def test_paying_with_five_concurrent_deliveries_grants_once(live, sandbox):
    live_server, stripe, pack, _user, http = live
    checkout = start(live_server, http, pack)
    stripe.configure(copies=5)
    stripe.pay(session_of(checkout))  # delivers before returning, as the page's redirect waits for it
    deliveries = sandbox.requests("stripe.webhooks")
    assert len(deliveries) == 5 and {d["status"] for d in deliveries} == {200}
    assert deliveries[0]["url"] == f"{live_server.url}/api/v1/webhooks/stripe/"
    assert http.get(f"{live_server.url}/api/v1/credits/balance/", timeout=30).json()["available"] == 300
    assert http.get(f"{live_server.url}/api/v1/credits/checkout/{checkout['id']}/",
                    timeout=30).json()["status"] == "paid"
    assert credits_selectors.ledger_check() == []


def test_a_refund_delivered_before_its_payment_over_http(live, sandbox):
    live_server, stripe, pack, user, http = live
    checkout = start(live_server, http, pack)
    stripe.configure(hold=True)
    session = stripe.pay(session_of(checkout))
    stripe.refund(session["payment_intent"], 300)  # a third: 100 credits
    assert stripe.deliver_held(order="reversed") == 2
    assert [d["type"] for d in sandbox.requests("stripe.webhooks")] == ["charge.refunded",
                                                                        "checkout.session.completed"]
    assert StripeEvent.objects.get(type="charge.refunded").outcome == EventOutcome.REVERSED
    assert account_of(user).available == 200


def test_a_late_webhook_leaves_the_checkout_open_until_it_arrives(live, sandbox):
    live_server, stripe, pack, user, http = live
    checkout = start(live_server, http, pack)
    stripe.configure(delay_ms=400)
    stripe.pay(session_of(checkout))
    assert http.get(f"{live_server.url}/api/v1/credits/checkout/{checkout['id']}/",
                    timeout=30).json()["status"] == "open"
    stripe.wait_deliveries()
    assert http.get(f"{live_server.url}/api/v1/credits/checkout/{checkout['id']}/",
                    timeout=30).json()["status"] == "paid"
    assert account_of(user).available == 300


def test_an_attacker_replaying_a_captured_delivery_later_mints_nothing(live, sandbox):
    live_server, stripe, pack, user, http = live
    checkout = start(live_server, http, pack)
    stripe.configure(hold=True)
    stripe.pay(session_of(checkout))
    (event,) = stripe.take_held()
    body, signature = stripe.signed(event)
    url = f"{live_server.url}/api/v1/webhooks/stripe/"
    first = requests.post(url, data=body, headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
                          timeout=30)
    assert first.json()["outcome"] == "fulfilled"
    # The same bytes again (within the tolerance), then re-signed 10 minutes old, then unsigned.
    again = requests.post(url, data=body, headers={"Stripe-Signature": signature}, timeout=30)
    assert again.json()["duplicate"] is True
    stripe.configure(timestamp_offset_s=600)
    old_body, old_signature = stripe.signed({**event, "id": "evt_replayed"})
    assert requests.post(url, data=old_body, headers={"Stripe-Signature": old_signature}, timeout=30).status_code == 400
    assert requests.post(url, data=old_body, timeout=30).status_code == 400
    assert account_of(user).available == 300
