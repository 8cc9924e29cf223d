"""Buying a pack through the sandbox's Stripe with the real SDK: the packs for sale, the checkout,
and the webhook that grants the credits once, whatever is delivered and in which order."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from creditgate.billing import selectors
from creditgate.billing.models import CheckoutSession, CreditPack, EventOutcome, Payment, StripeEvent
from creditgate.catalog import services as catalog_services
from creditgate.catalog.models import IntegrationProvider
from creditgate.credits import selectors as credits_selectors
from creditgate.credits.models import LedgerEntry

from .conftest import WEBHOOK, account_of, books, buy, client_for, deliver, make_user, resigned

pytestmark = pytest.mark.django_db


def test_the_active_packs_are_for_sale_cheapest_first(sandbox):
    CreditPack.objects.all().delete()  # the seeded ones
    big = CreditPack.objects.create(name="Big", credits=1000, price_amount=4000, currency="usd")
    small = CreditPack.objects.create(name="Small", credits=100, price_amount=500, currency="usd")
    CreditPack.objects.create(name="Retired", credits=10, price_amount=100, currency="usd", is_active=False)
    response = client_for(make_user()).get("/api/v1/credits/packs/")
    assert response.status_code == 200
    assert response.json() == [
        {"id": small.pk, "name": "Small", "credits": 100, "amount": 500, "currency": "usd", "price": "5.00 USD"},
        {"id": big.pk, "name": "Big", "credits": 1000, "amount": 4000, "currency": "usd", "price": "40.00 USD"},
    ]


def test_no_pack_is_offered_while_payments_cannot_be_taken(settings, pack):
    settings.CREDITGATE_SANDBOX = False  # and no Stripe key
    assert client_for(make_user()).get("/api/v1/credits/packs/").json() == []
    response = client_for(make_user("bob")).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "payments_unavailable"


def test_a_checkout_is_a_stripe_session_for_the_packs_price_and_grants_nothing_yet(sandbox, stripe, pack):
    user = make_user(credits=5)
    before = books(user)
    response = client_for(user).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "open" and body["credits"] == 250 and body["price"] == "12.00 USD"
    assert body["url"].startswith(f"{sandbox.url}/stripe/pay/cs_test_")
    sent = sandbox.last_request("stripe.checkout.sessions.create")
    assert sent["mode"] == "payment" and sent["customer_email"] == "alice@example.com"
    assert sent["line_items"] == [{"quantity": "1", "price_data": {
        "currency": "usd", "unit_amount": "1200",
        "product_data": {"name": "Test pack", "description": "250 creditgate credits"}}}]
    assert sent["metadata"]["creditgate_checkout"] == body["id"]
    assert sent["success_url"] == f"http://testserver/?checkout={body['id']}"
    checkout = CheckoutSession.objects.get(pk=body["id"])
    assert checkout.stripe_session_id == body["url"].rsplit("/", 1)[1]
    assert books(user) == before  # the return to the page proves nothing: the webhook grants


def test_a_pack_that_is_not_for_sale_is_refused_and_nothing_is_written(stripe, pack):
    client = client_for(make_user())
    pack.is_active = False
    pack.save()
    for body in ({"pack": pack.pk}, {"pack": 999999}, {"pack": "1"}, {}):
        response = client.post("/api/v1/credits/checkout/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid_request"
        assert "pack" in response.json()["error"]["details"]
    assert CheckoutSession.objects.count() == 0


def test_stripe_failing_answers_503_and_keeps_the_checkout_as_failed(sandbox, stripe, pack):
    stripe.configure(fail_creates=3)  # the SDK retries twice
    user = make_user(credits=5)
    before = books(user)
    response = client_for(user).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "payments_unavailable"
    assert "nothing was charged" in response.json()["error"]["message"]
    assert CheckoutSession.objects.get().status == "failed"
    assert books(user) == before
    # Retries carried the same idempotency key: one session would have been created.
    assert sandbox.stats["stripe.checkout.sessions.create"] == 3


def test_paying_grants_the_pack_once_through_the_ledger(stripe, pack):
    user = make_user(credits=5)
    client = client_for(user)
    checkout, event = buy(client, stripe, pack)
    response = deliver(event, stripe)
    assert response.status_code == 200
    assert response.json() == {"received": True, "event": event["id"], "type": "checkout.session.completed",
                               "outcome": "fulfilled", "duplicate": False}
    assert client.get("/api/v1/credits/balance/").json() == {"balance": 255, "held": 0, "available": 255}
    session_id = event["data"]["object"]["id"]
    grant = LedgerEntry.objects.get(kind="grant", reference=f"stripe:{session_id}")
    assert (grant.amount, grant.reason) == (250, "Bought Test pack")
    assert client.get(f"/api/v1/credits/checkout/{checkout['id']}/").json()["status"] == "paid"
    payment = Payment.objects.get()
    assert payment.stripe_payment_intent_id == event["data"]["object"]["payment_intent"]
    assert credits_selectors.ledger_check() == [] and selectors.payments_audit() == []


def test_the_same_event_delivered_five_times_grants_once(stripe, pack):
    user = make_user()
    _, event = buy(client_for(user), stripe, pack)
    answers = [deliver(event, stripe).json() for _ in range(5)]
    assert [a["outcome"] for a in answers] == ["fulfilled"] * 5  # the event's outcome, every time
    assert [a["duplicate"] for a in answers] == [False, True, True, True, True]
    assert account_of(user).available == 250
    assert StripeEvent.objects.get().deliveries == 5
    assert LedgerEntry.objects.filter(kind="grant", account=account_of(user)).count() == 1


def test_other_events_for_the_same_session_grant_nothing_more(stripe, pack):
    """Stripe may send `completed` and `async_payment_succeeded` for one session; an attacker may
    replay a signed event under a new id. The payment's unique row refuses every second grant."""
    user = make_user()
    _, event = buy(client_for(user), stripe, pack)
    assert deliver(event, stripe).json()["outcome"] == "fulfilled"
    for n, kind in enumerate(["checkout.session.completed", "checkout.session.async_payment_succeeded"]):
        again = {**event, "id": f"evt_again_{n}", "type": kind}
        assert deliver(again, stripe).json()["outcome"] == "already_fulfilled"
    assert account_of(user).available == 250
    assert Payment.objects.count() == 1 and selectors.payments_audit() == []


@pytest.mark.parametrize("case", ["no signature", "wrong secret", "tampered body", "stale", "garbage header"])
def test_an_unsigned_wrongly_signed_or_stale_event_is_refused_and_nothing_is_written(stripe, pack, case):
    user = make_user(credits=5)
    _, event = buy(client_for(user), stripe, pack)
    before, events = books(user), StripeEvent.objects.count()
    now = int(time.time())
    signature: str | None
    body, signature = resigned(event, stripe.knobs.webhook_secret, now)
    if case == "no signature":
        signature = None
    elif case == "wrong secret":
        body, signature = resigned(event, "whsec_attacker", now)
    elif case == "tampered body":
        body = body.replace(b'"amount_total": 1200', b'"amount_total": 1')
    elif case == "stale":
        body, signature = resigned(event, stripe.knobs.webhook_secret, now - 301)
    elif case == "garbage header":
        signature = "v1=deadbeef"
    extra: dict[str, Any] = {"HTTP_STRIPE_SIGNATURE": signature} if signature else {}
    response = APIClient().post(WEBHOOK, data=body, content_type="application/json", **extra)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    if case == "stale":
        assert "more than 300 seconds ago" in error["message"]
    assert books(user) == before and StripeEvent.objects.count() == events


def test_the_sandboxs_stale_knob_is_refused_too(stripe, pack):
    user = make_user()
    _, event = buy(client_for(user), stripe, pack)
    stripe.configure(timestamp_offset_s=3600)
    assert deliver(event, stripe).status_code == 400
    assert account_of(user).available == 0


@pytest.mark.parametrize("change, problem", [
    ({"amount_total": 100}, "amount_mismatch"),
    ({"currency": "eur"}, "currency_mismatch"),
    ({"payment_status": "unpaid"}, "unpaid"),
    ({"id": "cs_test_not_ours", "metadata": {}}, "unknown_session"),
])
def test_an_event_that_does_not_match_grants_nothing_and_is_reported(stripe, pack, change, problem, caplog):
    user = make_user(credits=5)
    _, event = buy(client_for(user), stripe, pack)
    before = books(user)
    event["data"]["object"].update(change)
    response = deliver(event, stripe)
    assert response.status_code == 200  # signed by Stripe: answered, so it stops retrying
    assert response.json()["outcome"] == "reported"
    assert books(user) == before and Payment.objects.count() == 0
    record = StripeEvent.objects.get()
    assert (record.outcome, record.problem) == (EventOutcome.REPORTED, problem)
    assert "nothing was granted" in record.message or problem == "unpaid"
    assert any(problem in message for message in caplog.messages)


def test_a_session_known_only_by_its_metadata_is_still_paid_for(stripe, pack):
    """The process stopped after Stripe created the session and before we stored its id."""
    user = make_user()
    checkout, event = buy(client_for(user), stripe, pack)
    CheckoutSession.objects.filter(pk=checkout["id"]).update(stripe_session_id=None)
    assert deliver(event, stripe).json()["outcome"] == "fulfilled"
    assert account_of(user).available == 250
    assert CheckoutSession.objects.get(pk=checkout["id"]).stripe_session_id == event["data"]["object"]["id"]


def test_an_expired_session_is_closed_and_grants_nothing(stripe, pack):
    user = make_user()
    response = client_for(user).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json")
    stripe.expire(response.json()["url"].rsplit("/", 1)[1])
    (event,) = stripe.take_held()
    assert deliver(event, stripe).json()["outcome"] == "closed"
    assert client_for(user).get(f"/api/v1/credits/checkout/{response.json()['id']}/").json()["status"] == "expired"
    assert account_of(user).available == 0


def test_another_users_checkout_is_not_found(stripe, pack):
    checkout = client_for(make_user()).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json").json()
    response = client_for(make_user("mallory")).get(f"/api/v1/credits/checkout/{checkout['id']}/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_with_a_real_key_the_configured_signing_secret_is_the_one_checked(settings, stripe, pack):
    user = make_user()
    _, event = buy(client_for(user), stripe, pack)
    provider = IntegrationProvider.objects.get(provider_id="stripe")
    catalog_services.provider_update_secrets(provider=provider, api_key="sk_live_0123456789abcdef")
    # A real key and no signing secret: every webhook is refused (and logged), nothing written.
    response = deliver(event, stripe)
    assert response.status_code == 503 and response.json()["error"]["code"] == "payments_unavailable"
    catalog_services.provider_update_secrets(provider=provider, signing_secret="whsec_live_secret_123")
    assert deliver(event, stripe).status_code == 400  # the sandbox's secret no longer opens the door
    body, signature = resigned(event, "whsec_live_secret_123", int(time.time()))
    response = APIClient().post(WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 200 and response.json()["outcome"] == "fulfilled"
    assert account_of(user).available == 250
