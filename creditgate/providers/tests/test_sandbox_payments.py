"""The sandbox's Stripe and Resend as their clients see them: the official stripe SDK and
django-anymail's Resend backend against the local far end, with each vendor's errors."""

from __future__ import annotations

import json
import time

import pytest
import requests
import stripe as stripe_sdk
from anymail.exceptions import AnymailRequestsAPIError
from django.core.mail import EmailMessage, get_connection
from stripe.params.checkout import SessionCreateParams, SessionCreateParamsLineItem

from creditgate.providers.sandbox.stripe_api import parse_form, sign


def client(sandbox, key="sandbox") -> stripe_sdk.StripeClient:
    return stripe_sdk.StripeClient(key, base_addresses={"api": f"{sandbox.url}/stripe"})


def session_params(*, line_items: list[SessionCreateParamsLineItem] | None = None) -> SessionCreateParams:
    if line_items is None:
        line_items = [{"quantity": 1, "price_data": {"currency": "eur", "unit_amount": 700,
                                                     "product_data": {"name": "Pack"}}}]
    return {"mode": "payment", "success_url": "http://shop.test/?ok", "cancel_url": "http://shop.test/?no",
            "line_items": line_items, "metadata": {"ours": "42"}}


def test_the_sdk_creates_and_retrieves_a_session(sandbox):
    session = client(sandbox).v1.checkout.sessions.create(session_params())
    assert session.id.startswith("cs_test_") and session.amount_total == 700 and session.currency == "eur"
    assert session.url == f"{sandbox.url}/stripe/pay/{session.id}"
    assert session.metadata is not None and session.metadata["ours"] == "42"
    again = client(sandbox).v1.checkout.sessions.retrieve(session.id)
    assert (again.status, again.payment_status) == ("open", "unpaid")


def test_a_wrong_key_and_a_bad_request_get_stripes_errors(sandbox):
    with pytest.raises(stripe_sdk.AuthenticationError):
        client(sandbox, key="sk_test_wrongwrongwrong").v1.checkout.sessions.create(session_params())
    with pytest.raises(stripe_sdk.InvalidRequestError) as caught:
        client(sandbox).v1.checkout.sessions.create(session_params(line_items=[]))
    assert caught.value.param == "line_items"
    with pytest.raises(stripe_sdk.InvalidRequestError):
        client(sandbox).v1.checkout.sessions.retrieve("cs_test_missing")


def test_an_idempotency_key_creates_one_session(sandbox):
    first = client(sandbox).v1.checkout.sessions.create(session_params(), {"idempotency_key": "same"})
    second = client(sandbox).v1.checkout.sessions.create(session_params(), {"idempotency_key": "same"})
    assert first.id == second.id


def test_the_form_encoding_round_trips():
    raw = b"a[0][b][c]=1&a[0][d]=x&a[1][b][c]=2&m[k]=v&plain=p"
    assert parse_form(raw) == {"a": [{"b": {"c": "1"}, "d": "x"}, {"b": {"c": "2"}}], "m": {"k": "v"}, "plain": "p"}


def test_its_signatures_pass_the_sdks_own_check_and_fail_with_another_secret():
    payload = json.dumps({"id": "evt_1"})
    header = sign(payload, "whsec_x", int(time.time()))
    assert stripe_sdk.WebhookSignature.verify_header(payload, header, "whsec_x", 300)
    with pytest.raises(stripe_sdk.SignatureVerificationError):
        stripe_sdk.WebhookSignature.verify_header(payload, header, "whsec_y", 300)


def test_the_checkout_page_pays_and_sends_the_user_back(sandbox):
    sandbox.stripe.configure(hold=True)
    session = client(sandbox).v1.checkout.sessions.create(session_params())
    assert session.url is not None  # a hosted checkout has a page
    page = requests.get(session.url, timeout=10)
    assert page.status_code == 200 and "Pay 7.00 EUR" in page.text
    paid = requests.post(session.url, allow_redirects=False, timeout=10)
    assert (paid.status_code, paid.headers["Location"]) == (303, "http://shop.test/?ok")
    (event,) = sandbox.stripe.take_held()
    completed = event["data"]["object"]
    assert (event["type"], completed["payment_status"], completed["amount_total"]) == (
        "checkout.session.completed", "paid", 700)
    assert completed["payment_intent"].startswith("pi_test_")
    assert requests.post(session.url, allow_redirects=False, timeout=10).status_code == 409  # paid once
    assert "This checkout is complete" in requests.get(session.url, timeout=10).text


def test_knobs_are_checked(sandbox):
    with pytest.raises(ValueError):
        sandbox.stripe.configure(copies=0)
    with pytest.raises(ValueError):
        sandbox.stripe.configure(colour="red")
    answer = requests.post(f"{sandbox.url}/_sandbox/stripe/config", json={"copies": 3}, timeout=10)
    assert answer.json()["knobs"]["copies"] == 3
    assert requests.post(f"{sandbox.url}/_sandbox/stripe/refund", json={"payment_intent": "pi_x", "amount": 1},
                         timeout=10).status_code == 400
    sandbox.reset()
    assert sandbox.stripe.knobs.copies == 1


def resend(sandbox, key="sandbox"):
    return get_connection("anymail.backends.resend.EmailBackend", api_key=key, api_url=f"{sandbox.url}/resend/")


def test_anymails_resend_backend_sends_to_it_and_it_records_the_email(sandbox):
    message = EmailMessage("Hi", "Body text", "from@example.com", ["to@example.com"], connection=resend(sandbox))
    assert message.send() == 1
    (recorded,) = sandbox.requests("resend.emails")
    assert (recorded["to"], recorded["subject"], recorded["text"]) == (["to@example.com"], "Hi", "Body text")
    # anymail's backend sets anymail_status on the message it sends: not an attribute of Django's class
    assert message.anymail_status.message_id == recorded["id"]  # type: ignore[attr-defined]


def test_resends_errors_reach_the_backend(sandbox):
    with pytest.raises(AnymailRequestsAPIError) as caught:
        EmailMessage("Hi", "x", "f@example.com", ["t@example.com"], connection=resend(sandbox, "re_wrong")).send()
    assert caught.value.status_code == 403
    sandbox.resend.fail_next = 1
    with pytest.raises(AnymailRequestsAPIError) as caught:
        EmailMessage("Hi", "x", "f@example.com", ["t@example.com"], connection=resend(sandbox)).send()
    assert caught.value.status_code == 500
    assert sandbox.requests("resend.emails") == []
