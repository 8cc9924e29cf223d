"""Webhook endpoints an account registers, and the deliveries made to them.

A delivery is an outbox row: it is written in the transaction that makes a job final
(generation.services' settlement calls webhooks.services.job_events_record), so a final job's
event can never be lost, whatever happens to the process or the broker afterwards. A worker then
claims it, POSTs it, and records each attempt; a failed one is tried again with backoff until
CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS after the event, always with the same event id.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class WebhookEndpoint(models.Model):
    """A URL of the account's that receives signed events."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("credits.Account", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    # The signing secret ("whsec_..."), encrypted at rest like provider keys (catalog.crypto): it
    # must be read back to sign, so it cannot be hashed. Shown once, when the endpoint is made.
    secret_encrypted = models.TextField(editable=False)
    all_jobs = models.BooleanField(
        default=True, help_text="Receives every job of the account; off: only the jobs whose request names it.")
    is_active = models.BooleanField(default=True, help_text="Off: nothing more is sent to it.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "webhook endpoint"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url


class EventType(models.TextChoices):
    JOB_FINISHED = "job.finished", "A job finished"
    TEST = "webhook.test", "Test event"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event for one endpoint, until the endpoint accepted it or the retry period ran out.

    (An integer id: a job's deliveries are inserted by one INSERT ... SELECT over the account's
    endpoints, with nothing to generate per row; every read is scoped to the account.)"""

    event_id = models.CharField(max_length=64, help_text="The webhook-id header: the same on every attempt.")
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    job = models.ForeignKey("generation.Job", on_delete=models.CASCADE, null=True, blank=True,
                            related_name="webhook_deliveries")
    # The exact body, frozen at the first attempt, so every retry sends the same bytes.
    payload = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True,
                                           help_text="A pending delivery is tried at this time; empty once final.")
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx"),
                   models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint_idx")]
        constraints = [
            # One delivery per event and endpoint: recording a job's event twice is harmless.
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once_per_event"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status_valid"),
            models.CheckConstraint(
                condition=(Q(status=DeliveryStatus.PENDING, next_attempt_at__isnull=False, finished_at__isnull=True)
                           | (~Q(status=DeliveryStatus.PENDING) & Q(next_attempt_at__isnull=True,
                                                                   finished_at__isnull=False))),
                name="webhook_delivery_pending_iff_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery and how the endpoint answered (or why it could not)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    ok = models.BooleanField()
    error = models.CharField(max_length=500, blank=True, default="")
    response_excerpt = models.CharField(max_length=500, blank=True, default="",
                                        help_text="The start of the endpoint's answer, for debugging.")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique")]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} attempt {self.number}"
