"""Webhooks: the endpoints owners register, the outbox of events, and their delivery.

- Endpoints: an owner registers a URL (checked against the SSRF rules of webhooks.egress) and gets
  its signing secret once; any member may name an active endpoint in a generation request.
- The outbox: `job_events_record` runs inside the transaction that makes a job final (the
  settlement in generation.services), writing one delivery per endpoint that should hear of it: the
  account's endpoints that receive every job, and the one the request named. Committed with the
  job, so no final job's event can be lost; handed to the runner after the commit.
- Delivery (webhooks.delivery): claimed, POSTed, signed, logged per attempt, retried with backoff
  until CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS after the event; `deliveries_sweep` (Celery beat,
  or the in-process sweeper) hands over whatever is due and was not handed over.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from creditgate.catalog import crypto
from creditgate.core import runtime
from creditgate.core.errors import InvalidRequest, NotFound
from creditgate.credits import services as credits_services
from creditgate.webhooks import egress
from creditgate.webhooks.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint

DELIVER = "creditgate.webhooks.tasks.deliver"
SWEEP_DELIVERIES = "creditgate.webhooks.tasks.sweep_deliveries"
SECRET_PREFIX = "whsec_"  # Standard Webhooks' format: whsec_ + base64 of the key's bytes
_EVENT_NAMESPACE = uuid.UUID("6f1c3a52-9d1e-4d0b-8f5e-5b9a3c0e7a11")
_UNCHANGED = object()


# --- Endpoints ------------------------------------------------------------------------------


def endpoint_create(*, actor, url: str, description: str = "", all_jobs: bool = True
                    ) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for the owner's account: (the endpoint, its signing secret). The
    secret is returned only here."""
    member = credits_services.owner_check(user=actor, what="register webhook endpoints")
    url = egress.url_clean(url)
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    endpoint = WebhookEndpoint.objects.create(
        account_id=member.account_id, url=url, description=_description_clean(description),
        all_jobs=_bool_clean(all_jobs, "all_jobs"), secret_encrypted=crypto.encrypt(secret), created_by=actor)
    return endpoint, secret


def endpoint_update(*, actor, endpoint: WebhookEndpoint, url=_UNCHANGED, description=_UNCHANGED,
                    all_jobs=_UNCHANGED, is_active=_UNCHANGED) -> WebhookEndpoint:
    credits_services.owner_check(user=actor, what="change webhook endpoints")
    changes: dict[str, str | bool] = {}
    if url is not _UNCHANGED:
        changes["url"] = egress.url_clean(url)
    if description is not _UNCHANGED:
        changes["description"] = _description_clean(description)
    if all_jobs is not _UNCHANGED:
        changes["all_jobs"] = _bool_clean(all_jobs, "all_jobs")
    if is_active is not _UNCHANGED:
        changes["is_active"] = _bool_clean(is_active, "is_active")
    for name, value in changes.items():
        setattr(endpoint, name, value)
    if changes:
        endpoint.save(update_fields=list(changes))
    return endpoint


def endpoint_delete(*, actor, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and its delivery log; nothing more is sent to it."""
    credits_services.owner_check(user=actor, what="remove webhook endpoints")
    endpoint.delete()


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return crypto.decrypt(endpoint.secret_encrypted)


ENDPOINT_ID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"


def _no_such_endpoint() -> InvalidRequest:
    return InvalidRequest("Webhook-Endpoint must be the id of one of the account's active webhook endpoints.",
                          details={"Webhook-Endpoint": ["No such active endpoint in this account."]})


def endpoint_id_check(endpoint_id: str | None) -> None:
    """The Webhook-Endpoint header's shape (an id, as the schema declares it), checked before
    anything else, a replay included: a malformed request is refused whatever it repeats (empty
    is malformed, not absent). Whether it names an active endpoint is endpoint_for_request's."""
    if endpoint_id is not None and re.fullmatch(ENDPOINT_ID_PATTERN, endpoint_id) is None:
        raise _no_such_endpoint()


def endpoint_for_request(*, account, endpoint_id) -> WebhookEndpoint:
    """The endpoint a generation request names (the Webhook-Endpoint header): one of the account's
    active endpoints, else a 400 (nothing is held)."""
    try:
        pk = uuid.UUID(str(endpoint_id))
    except ValueError:
        pk = None
    endpoint = WebhookEndpoint.objects.filter(pk=pk, account=account, is_active=True).first() if pk else None
    if endpoint is None:
        raise _no_such_endpoint()
    return endpoint


def _description_clean(value) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidRequest("The description must be text of at most 200 characters.",
                             details={"description": ["At most 200 characters."]})
    return value.strip()


def _bool_clean(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{field} must be true or false.", details={field: ["Must be a boolean."]})
    return value


# --- The outbox -----------------------------------------------------------------------------


# The job's public representation (what GET /api/v1/jobs/{id}/ shows, image URLs absolute), by job
# id: the generation app hands it over from its ready() (job_representation_set), so webhooks
# deliver a job's payload without knowing jobs. Read at the first attempt, outside the settlement's
# transaction: building it there would cost every settlement a re-read of the final job and its
# images, endpoints or not.
_job_representation: Callable[[Any], dict] | None = None


def job_representation_set(represent: Callable[[Any], dict]) -> None:
    global _job_representation
    _job_representation = represent


def job_representation(job_id) -> dict:
    if _job_representation is None:
        raise RuntimeError("No job representation is registered (the generation app registers it in its ready()).")
    return _job_representation(job_id)


def job_event_id(job_id) -> str:
    """A final job's event id, derived from the job: recording it twice makes one delivery."""
    return f"evt_{uuid.uuid5(_EVENT_NAMESPACE, f'job.finished:{job_id}').hex}"


_JOB_KEY = WebhookDelivery._meta.get_field("job").target_field
# One statement, whether the account has endpoints or not: a final job's settlement pays one
# INSERT ... SELECT for its webhooks (a replayed settlement inserts nothing: the unique event id).
# One constant, the tables' names written out (test_webhooks checks them against the models).
_JOB_EVENTS_SQL = (
    "INSERT INTO webhooks_webhookdelivery (event_id, event_type, endpoint_id, job_id, payload, status, attempts, "
    "next_attempt_at, created_at, finished_at, last_status_code, last_error) "
    "SELECT %s, %s, id, %s, '', %s, 0, %s, %s, NULL, NULL, '' FROM webhooks_webhookendpoint "
    "WHERE account_id = %s AND is_active AND (all_jobs OR id = %s) "
    "ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING id")


def job_events_record(*, job_id, account_id: int, endpoint_id) -> int:
    """In the transaction that makes a job final: one delivery per endpoint that hears of it (the
    account's active endpoints that receive every job, and `endpoint_id`, the one its request
    named), handed to the runner once that transaction commits. How many were recorded."""
    now = _db_value(WebhookDelivery._meta.get_field("created_at"), timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_JOB_EVENTS_SQL, [
            job_event_id(job_id), EventType.JOB_FINISHED, _db_value(_JOB_KEY, job_id), DeliveryStatus.PENDING,
            now, now, account_id, _db_value(WebhookEndpoint._meta.pk, endpoint_id)])
        ids = [str(row[0]) for row in cursor.fetchall()]
    if ids:
        transaction.on_commit(lambda: _hand_over(ids))
    return len(ids)


def _db_value(field, value):
    return None if value is None else field.get_db_prep_value(value, connection)


def test_event_send(*, actor, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event to one endpoint, delivered (and retried, and logged) like any other."""
    member = credits_services.owner_check(user=actor, what="send test events")
    if endpoint.account_id != member.account_id:
        raise NotFound("No such webhook endpoint.")
    now = timezone.now()
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = json.dumps({"id": event_id, "type": EventType.TEST, "created_at": now,
                          "data": {"endpoint": endpoint.pk, "message": "A test event from creditgate."}},
                         cls=DjangoJSONEncoder, separators=(",", ":"))
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(event_id=event_id, event_type=EventType.TEST, endpoint=endpoint,
                                                  payload=payload, created_at=now, next_attempt_at=now)
        transaction.on_commit(lambda: _hand_over([str(delivery.pk)]))
    return delivery


def _hand_over(ids: list[str]) -> None:
    # A hand-off that fails (the broker is down) is not lost: the delivery is due, and the sweep
    # hands it over later.
    for pk in ids:
        if not runtime.send(DELIVER, pk):
            break


def deliveries_sweep(*, now=None, limit: int = 1000) -> int:
    """Hand over the deliveries that are due (new ones whose hand-off failed, retries whose
    message was lost, attempts whose worker died). A delivery is claimed before it is sent, so one
    handed over twice is still sent once."""
    now = now or timezone.now()
    due = list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    sent = 0
    for pk in due:
        if not runtime.send(DELIVER, str(pk)):
            break
        sent += 1
    return sent
