"""Issue 22, item 1: payments are never sandboxed in production, and no constant secret signs for
the sandbox. The production cases set CREDITGATE_SANDBOX_PAYMENTS off, which is what DEBUG=false
does as a process starts (creditgate/web/tests/test_production.py tries the same against gunicorn
with DEBUG=false)."""

from __future__ import annotations

import json
import time

import pytest
import requests
from rest_framework.test import APIClient

from creditgate.billing import selectors
from creditgate.billing.models import CheckoutSession, StripeEvent
from creditgate.providers import email as emails
from creditgate.providers.sandbox.stripe_api import sign

from .conftest import WEBHOOK, account_of, books, buy, client_for, make_user

pytestmark = pytest.mark.django_db

# The secret every copy of creditgate's sandbox signed with before: public, in the repository.
PUBLISHED_SECRET = "whsec_sandbox"


def forged(session_id: str, checkout_id, *, amount: int = 1200, currency: str = "usd",
           secret: str = PUBLISHED_SECRET) -> tuple[bytes, str]:
    """A `checkout.session.completed` for the session, paid, signed now with `secret`: what an
    attacker who read the repository would send."""
    event = {"id": f"evt_forged_{session_id}", "object": "event", "type": "checkout.session.completed",
             "created": int(time.time()),
             "data": {"object": {"id": session_id, "object": "checkout.session", "status": "complete",
                                 "payment_status": "paid", "amount_total": amount, "currency": currency,
                                 "client_reference_id": str(checkout_id), "payment_intent": "pi_forged",
                                 "metadata": {"creditgate_checkout": str(checkout_id)}}}}
    payload = json.dumps(event)
    return payload.encode(), sign(payload, secret, int(time.time()))


def post_webhook(body: bytes, signature: str):
    return APIClient().post(WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


def test_the_sandboxs_signing_secret_is_this_installations_not_a_constant(settings, stripe, pack):
    """Development: the sandbox signs with the secret generated for this installation (the file in
    the var dir that the web process reads too); the published one opens nothing."""
    secret = settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET
    assert secret.startswith("whsec_") and len(secret) > 30 and secret != PUBLISHED_SECRET
    assert (settings.VAR_DIR / "sandbox-stripe-webhook.secret").read_text().strip() == secret
    assert stripe.knobs.webhook_secret == secret
    user = make_user(credits=5)
    checkout, event = buy(client_for(user), stripe, pack)
    before, events = books(user), StripeEvent.objects.count()

    response = post_webhook(*forged(event["data"]["object"]["id"], checkout["id"]))

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"
    assert books(user) == before and StripeEvent.objects.count() == events
    # The sandbox's own delivery, signed with the installation's secret, still works.
    assert post_webhook(*forged(event["data"]["object"]["id"], checkout["id"], amount=1200,
                                secret=secret)).json()["outcome"] == "fulfilled"
    assert account_of(user).available == 5 + 250


def test_the_sandbox_never_shows_its_signing_secret(stripe, sandbox):
    """Its config route answers with its knobs, the secret masked (only a test in this process may
    read it, as the service's settings do)."""
    response = requests.post(f"{sandbox.url}/_sandbox/stripe/config", json={"copies": 1}, timeout=10)
    assert response.status_code == 200
    assert response.json()["knobs"]["webhook_secret"] == "(set)"
    assert stripe.knobs.webhook_secret not in response.text


@pytest.fixture
def production(settings, sandbox):
    """DEBUG=false with CREDITGATE_SANDBOX=true (the README's old advice): the sandbox runs and
    serves OpenAI and Runware, and no key is stored for Stripe or Resend."""
    settings.CREDITGATE_SANDBOX_PAYMENTS = False
    return sandbox


def test_in_production_a_checkout_without_a_stripe_key_is_a_503_and_no_pack_is_offered(production, pack):
    user = make_user()
    assert client_for(user).get("/api/v1/credits/packs/").json() == []
    response = client_for(user).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "payments_unavailable" and set(error) == {"code", "message", "details"}
    assert production.stripe.sessions == {}  # the sandbox was never asked
    assert not selectors.payments_available()


@pytest.mark.parametrize("secret", ["published", "the sandbox's"])
def test_in_production_an_event_signed_as_the_sandbox_signs_grants_nothing(settings, stripe, pack, secret):
    """The issue's reproduction: a checkout started while the sandbox served Stripe, then a
    `checkout.session.completed` for its cs_… id signed with the sandbox's secret, delivered to a
    DEBUG=false service: refused, no credits, nothing recorded."""
    user = make_user(credits=5)
    checkout = client_for(user).post("/api/v1/credits/checkout/", {"pack": pack.pk}, format="json").json()
    session_id = checkout["url"].rsplit("/", 1)[1]
    assert session_id.startswith("cs_")
    settings.CREDITGATE_SANDBOX_PAYMENTS = False  # now as in production
    before, events = books(user), StripeEvent.objects.count()

    key = PUBLISHED_SECRET if secret == "published" else stripe.knobs.webhook_secret
    response = post_webhook(*forged(session_id, checkout["id"], secret=key))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "payments_unavailable"
    assert books(user) == before and StripeEvent.objects.count() == events
    assert CheckoutSession.objects.get(pk=checkout["id"]).status == "open"


def test_in_production_no_email_goes_to_the_sandbox(production):
    with pytest.raises(emails.EmailNotSent):
        emails.email_send(to="owner@example.com", subject="Low balance", body="Your balance is low.")
    assert production.requests("resend.emails") == []


def test_in_development_the_sandbox_still_serves_stripe_and_resend(sandbox):
    """The other side of the rule: the demo and the tests keep their sandboxed payments."""
    assert selectors.payments_available()
    emails.email_send(to="owner@example.com", subject="Low balance", body="Your balance is low.")
    assert [e["subject"] for e in sandbox.requests("resend.emails")] == ["Low balance"]
