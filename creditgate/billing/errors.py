"""Billing's errors, in the application's one error shape (core.errors)."""

from creditgate.core.errors import ApplicationError


class PaymentsUnavailable(ApplicationError):
    """Stripe cannot be used right now: not configured, or it failed to answer. Nothing was charged."""

    status_code = 503
    code = "payments_unavailable"


class WebhookSignatureInvalid(ApplicationError):
    """A webhook whose Stripe-Signature is missing, wrong or too old: refused, nothing written."""

    status_code = 400
    code = "invalid_signature"
