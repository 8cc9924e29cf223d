"""Email through Resend (a provider like the others), with Django's email API and django-anymail's
Resend backend. Billing's low-balance emails and the accounts' emails (providers.mail) go through it.

Resend's key comes from the IntegrationProvider row `resend`; without a key while
CREDITGATE_SANDBOX is on in development, the sandbox receives the email
(providers.registry.provider_endpoint); with DEBUG off, no key means no email.
The connection is built per send from the row, so a key entered in the admin is used at once.
"""

from __future__ import annotations

import logging

from anymail.exceptions import AnymailError
from anymail.message import AnymailMessage
from django.conf import settings
from django.core.mail import get_connection

from creditgate.core.errors import EmailNotSent
from creditgate.providers.base import ProviderNotConfigured
from creditgate.providers.registry import provider_endpoint

logger = logging.getLogger(__name__)

__all__ = ["PROVIDER_ID", "EmailNotSent", "email_send"]  # EmailNotSent lives in core.errors

PROVIDER_ID = "resend"
SANDBOX_PATH = "resend/"
BACKEND = "anymail.backends.resend.EmailBackend"
TIMEOUT_SECONDS = 20


def email_send(*, to: str, subject: str, body: str) -> str:
    """Send a plain-text email; Resend's id for it."""
    try:
        endpoint = provider_endpoint(provider_id=PROVIDER_ID, sandbox_path=SANDBOX_PATH, kind="email provider")
    except ProviderNotConfigured as exc:
        raise EmailNotSent(exc.message) from exc
    options = {"api_key": endpoint.api_key, "timeout": TIMEOUT_SECONDS}
    if endpoint.base_url:
        options["api_url"] = endpoint.base_url
    connection = get_connection(BACKEND, fail_silently=False, **options)
    # Anymail's EmailMessage subclass: it declares the anymail_status the backend fills in on send.
    message = AnymailMessage(subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[to],
                             connection=connection)
    try:
        message.send()
    except AnymailError as exc:
        # Anymail's text describes the failed request and response, never the key.
        raise EmailNotSent(f"Resend did not accept the email: {type(exc).__name__}.") from exc
    status = message.anymail_status
    return status.message_id or ""
