"""Sending one delivery: claim it, build (once) and sign its body, POST it, log the attempt, and
either finish it or schedule the next try.

The signature follows the Standard Webhooks specification (a scheme like Stripe's; the
`standardwebhooks` package signs it here, and receivers can verify with that package in most
languages or with the few lines in the README): headers `webhook-id` (the event id, the same on
every retry), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
(`v1,` + base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}" with the endpoint's secret).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from creditgate.core import runtime
from creditgate.webhooks import egress, services
from creditgate.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

USER_AGENT = "creditgate-webhooks/1"
_EXCERPT_BYTES = 500


def retry_delay(attempt: int) -> float:
    """Seconds before the try after attempt number `attempt` (1-based): doubling from the base, capped."""
    base = settings.CREDITGATE_WEBHOOK_RETRY_BASE_SECONDS
    return min(base * 2 ** (attempt - 1), settings.CREDITGATE_WEBHOOK_RETRY_MAX_SECONDS)


def delivery_attempt(*, delivery_id) -> str | None:
    """Make the next attempt of a due delivery; its status afterwards, or None if it was not due
    (already delivered, given up, scheduled later, or being sent by another worker)."""
    now = timezone.now()
    # The claim: pushing the due time past this attempt's longest possible duration makes every
    # other worker (a second message, the sweep) see it as not due; if this worker dies, the
    # delivery is due again once that time has passed.
    lease = dt.timedelta(seconds=2 * settings.CREDITGATE_WEBHOOK_TIMEOUT_SECONDS + 30)
    if not WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING,
                                          next_attempt_at__lte=now).update(next_attempt_at=now + lease):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None:  # its endpoint was removed meanwhile (with its deliveries)
        return None
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        _finish(delivery, status=DeliveryStatus.FAILED, error="The endpoint was disabled.")
        return DeliveryStatus.FAILED
    if not delivery.payload:
        delivery.payload = _job_payload(delivery)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(payload=delivery.payload)

    started, clock = timezone.now(), time.monotonic()
    status_code, excerpt, error = None, "", ""
    try:
        status_code, excerpt = _post(endpoint.url, delivery, services.endpoint_secret(endpoint), at=started)
        if not 200 <= status_code < 300:
            error = (f"The endpoint answered {status_code} (redirects are not followed)." if 300 <= status_code < 400
                     else f"The endpoint answered {status_code}.")
    except requests.RequestException as exc:
        reason = egress.refusal_reason(exc)
        error = f"Refused: {reason}." if reason else _network_error(exc)
    except Exception as exc:  # e.g. an undecryptable secret: logged, retried like any failure
        logger.exception("webhook delivery %s: the attempt failed", delivery.pk)
        error = f"Could not send: {type(exc).__name__}."
    duration_ms = int((time.monotonic() - clock) * 1000)
    return _record(delivery, started=started, duration_ms=duration_ms, status_code=status_code,
                   excerpt=excerpt, error=error)


def _post(url: str, delivery: WebhookDelivery, secret: str, *, at: dt.datetime) -> tuple[int, str]:
    body = delivery.payload
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=delivery.event_id, timestamp=at, data=body),
    }
    timeout = settings.CREDITGATE_WEBHOOK_TIMEOUT_SECONDS
    with egress.session() as session:
        response = session.post(url, data=body.encode(), headers=headers, timeout=(timeout, timeout),
                                allow_redirects=False, stream=True)
        try:
            excerpt = response.raw.read(_EXCERPT_BYTES, decode_content=True) or b""
        except Exception:  # noqa: BLE001 - the status is what counts; the excerpt is a courtesy
            excerpt = b""
        finally:
            response.close()
    return response.status_code, excerpt.decode("utf-8", "replace")


def _network_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "The endpoint did not answer in time."
    if isinstance(exc, requests.exceptions.SSLError):
        return "The TLS connection failed (certificate or protocol)."
    if isinstance(exc, requests.ConnectionError):
        return "Could not connect to the endpoint."
    return f"The request failed ({type(exc).__name__})."


def _record(delivery: WebhookDelivery, *, started, duration_ms: int, status_code: int | None, excerpt: str,
            error: str) -> str:
    ok = not error
    number = delivery.attempts + 1
    now = timezone.now()
    give_up_at = delivery.created_at + dt.timedelta(seconds=settings.CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS)
    delay = retry_delay(number)
    if ok:
        status, next_at = DeliveryStatus.SUCCEEDED, None
    elif now + dt.timedelta(seconds=delay) > give_up_at:
        status, next_at = DeliveryStatus.FAILED, None
    else:
        status, next_at = DeliveryStatus.PENDING, now + dt.timedelta(seconds=delay)
    with transaction.atomic():
        WebhookAttempt.objects.create(delivery=delivery, number=number, started_at=started, duration_ms=duration_ms,
                                      status_code=status_code, ok=ok, error=error[:500],
                                      response_excerpt=excerpt[:500])
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            attempts=number, status=status, next_attempt_at=next_at,
            finished_at=None if status == DeliveryStatus.PENDING else now,
            last_status_code=status_code, last_error=error[:500])
        if status == DeliveryStatus.PENDING:
            transaction.on_commit(lambda: runtime.send(services.DELIVER, str(delivery.pk), countdown=delay))
    if not ok:
        logger.warning("webhook delivery %s (event %s) attempt %d failed: %s%s", delivery.pk, delivery.event_id,
                       number, error, "" if status == DeliveryStatus.PENDING else "; giving up")
    return status


def _finish(delivery: WebhookDelivery, *, status: str, error: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        status=status, next_attempt_at=None, finished_at=timezone.now(), last_error=error)


def _job_payload(delivery: WebhookDelivery) -> str:
    """The event's body: {"id", "type", "created_at", "data"}, `data` being the final job exactly
    as GET /api/v1/jobs/{id}/ shows it (image URLs made absolute with CREDITGATE_PUBLIC_URL)."""
    # Only a job's event is written without its body (a test event carries it from the start).
    assert delivery.job_id is not None
    data = services.job_representation(delivery.job_id)
    return json.dumps({"id": delivery.event_id, "type": delivery.event_type, "created_at": delivery.created_at,
                       "data": data}, cls=DjangoJSONEncoder, separators=(",", ":"))
