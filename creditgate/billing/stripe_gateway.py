"""Stripe, through its official SDK: the one module that knows Stripe's API.

Its key comes from the IntegrationProvider row `stripe` (and, without a key while
CREDITGATE_SANDBOX is on in development, the sandbox serves it: providers.registry.provider_endpoint;
never with DEBUG off). Stripe's errors become PaymentsUnavailable with the cause chained, and no key
or secret ever reaches a message or a log line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import stripe
from django.conf import settings
from stripe.params.checkout import SessionCreateParams

from creditgate.billing.errors import PaymentsUnavailable, WebhookSignatureInvalid
from creditgate.providers.base import ProviderNotConfigured
from creditgate.providers.registry import Endpoint, provider_endpoint

logger = logging.getLogger(__name__)

PROVIDER_ID = "stripe"
SANDBOX_PATH = "stripe"
# Stripe's own default: an event signed longer ago than this is refused, so a captured delivery
# cannot be replayed later (within it, the event's id and the payment's unique row make a replay
# harmless).
WEBHOOK_TOLERANCE_SECONDS = 300
TIMEOUT_SECONDS = 20
NETWORK_RETRIES = 2  # the SDK retries connection errors and 5xx, with an idempotency key


@dataclass(frozen=True)
class CreatedSession:
    id: str
    url: str
    expires_at: dt.datetime | None


def endpoint_get() -> Endpoint:
    """Where Stripe is called; PaymentsUnavailable when it cannot be (no key with the sandbox off,
    the row switched off or missing)."""
    try:
        return provider_endpoint(provider_id=PROVIDER_ID, sandbox_path=SANDBOX_PATH, kind="payment provider")
    except ProviderNotConfigured as exc:
        raise PaymentsUnavailable("Buying credits is not available right now.") from exc


def _client(endpoint: Endpoint) -> stripe.StripeClient:
    return stripe.StripeClient(
        endpoint.api_key, base_addresses={"api": endpoint.base_url} if endpoint.base_url else None,
        max_network_retries=NETWORK_RETRIES, http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS))


def checkout_session_create(*, checkout_id: str, pack_name: str, credits: int, amount: int, currency: str,
                            success_url: str, cancel_url: str, customer_email: str = "",
                            metadata: dict[str, str]) -> CreatedSession:
    """A Checkout Session in payment mode for one pack. `checkout_id` keys Stripe's idempotency,
    so a retried request creates one session."""
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": currency, "unit_amount": amount,
            "product_data": {"name": pack_name, "description": f"{credits:,} creditgate credits"}}}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": checkout_id,
        "metadata": metadata,
        # Refunds and disputes name the payment intent; its metadata says which checkout it paid.
        "payment_intent_data": {"metadata": metadata},
    }
    if customer_email:
        params["customer_email"] = customer_email
    try:
        session = _client(endpoint_get()).v1.checkout.sessions.create(
            params, {"idempotency_key": f"creditgate-checkout-{checkout_id}"})
    except stripe.StripeError as exc:
        # The SDK's message names no key; the request id lets Stripe's support find the call.
        logger.warning("stripe: creating the checkout session of %s failed: %s (%s, request %s)", checkout_id,
                       type(exc).__name__, exc.http_status, exc.request_id)
        raise PaymentsUnavailable("Stripe could not open the payment page; nothing was charged. "
                                  "Try again in a moment.") from exc
    expires_at = getattr(session, "expires_at", None)
    expires = dt.datetime.fromtimestamp(expires_at, tz=dt.UTC) if expires_at else None
    # A session in the default (hosted) UI mode always has the payment page's URL while it is open.
    assert session.url is not None
    return CreatedSession(id=session.id, url=session.url, expires_at=expires)


def event_verify(*, payload: bytes, signature: str | None) -> dict:
    """The event a webhook delivered, once its Stripe-Signature proves Stripe sent it (HMAC-SHA256
    of `timestamp.body` under the endpoint's signing secret) less than WEBHOOK_TOLERANCE_SECONDS
    ago. WebhookSignatureInvalid otherwise; PaymentsUnavailable if no signing secret is configured."""
    try:
        endpoint = endpoint_get()
    except PaymentsUnavailable as exc:
        logger.error("stripe: a webhook arrived but Stripe is not configured (%s); it was refused",
                     exc.__cause__.message if isinstance(exc.__cause__, ProviderNotConfigured) else exc.message)
        raise
    # While the sandbox serves Stripe (development only), what it signs with: this installation's
    # generated secret (settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET), never a constant.
    secret = (settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET if endpoint.sandboxed
              else endpoint.provider.get_signing_secret())
    if not secret:
        logger.error("stripe: a webhook arrived but the provider 'stripe' has no signing secret; it was refused")
        raise PaymentsUnavailable("Stripe's webhook signing secret is not configured.")
    if not signature:
        raise WebhookSignatureInvalid("The Stripe-Signature header is missing.")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, WEBHOOK_TOLERANCE_SECONDS)
    except UnicodeDecodeError:
        raise WebhookSignatureInvalid("The body is not UTF-8 text, so it cannot be a Stripe event.") from None
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in str(exc):
            raise WebhookSignatureInvalid(f"The event was signed more than {WEBHOOK_TOLERANCE_SECONDS} seconds "
                                          "ago; an old delivery is not accepted again.") from None
        raise WebhookSignatureInvalid("The Stripe-Signature does not match the body.") from None
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if (not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str)
            or not isinstance((event.get("data") or {}).get("object"), dict)):
        # Signed by Stripe yet not an event: nothing to act on, and nothing Stripe should retry.
        raise WebhookSignatureInvalid("The signed body is not a Stripe event.")
    return event
