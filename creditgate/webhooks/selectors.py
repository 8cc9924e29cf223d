"""Reads of an account's webhook endpoints and deliveries (every member of the account sees them)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from creditgate.core.errors import InvalidRequest, NotFound
from creditgate.webhooks.models import WebhookDelivery, WebhookEndpoint


def endpoints_list(*, account) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(account=account).order_by("created_at", "pk")


def endpoint_get(*, account, endpoint_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(account=account, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def deliveries_list(*, account, endpoint_id: str | None = None, job_id: str | None = None
                    ) -> QuerySet[WebhookDelivery]:
    """The account's deliveries, newest first, optionally of one endpoint or one job."""
    deliveries = WebhookDelivery.objects.filter(endpoint__account=account).order_by("-created_at", "-pk")
    for field, value in (("endpoint_id", endpoint_id), ("job_id", job_id)):
        if value:
            try:
                deliveries = deliveries.filter(**{field: uuid.UUID(value)})
            except ValueError:
                name = field.removesuffix("_id")
                raise InvalidRequest(f"{name} must be an id.", details={name: ["Must be a UUID."]}) from None
    return deliveries


def delivery_get(*, account, delivery_id) -> WebhookDelivery:
    delivery = (WebhookDelivery.objects.filter(endpoint__account=account, pk=delivery_id)
                .prefetch_related("attempt_log").first())
    if delivery is None:
        raise NotFound("No such webhook delivery.")
    return delivery
