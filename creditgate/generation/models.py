"""Generation jobs and the images they produced."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class JobKind(models.TextChoices):
    IMAGE = "image", "Images"
    TEXT = "text", "Text"
    ARTICLE = "article", "Article"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"


FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED)


class Job(models.Model):
    """One generation request: what was asked, what served it (a snapshot), what it cost."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("credits.Account", on_delete=models.PROTECT, related_name="jobs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generation_jobs")
    kind = models.CharField(max_length=10, choices=JobKind.choices)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)

    # What was asked.
    prompt = models.TextField()
    tier = models.CharField(max_length=10, blank=True, default="")
    image_count = models.PositiveSmallIntegerField(default=0)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)

    # What served it, as it was when the job was created (the catalog may change meanwhile).
    image_model_name = models.CharField(max_length=100, blank=True, default="")
    image_provider_id = models.CharField(max_length=32, blank=True, default="")
    text_model_name = models.CharField(max_length=100, blank=True, default="")
    text_provider_id = models.CharField(max_length=32, blank=True, default="")
    image_style = models.CharField(max_length=200, blank=True, default="")
    temperature = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    # The rates held, so capture charges what the user was quoted even if an admin changes a price.
    credits_per_image = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_credit = models.PositiveIntegerField(null=True, blank=True)

    # Money.
    hold = models.OneToOneField("credits.Hold", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="job")
    credits_held = models.PositiveIntegerField(default=0)
    credits_charged = models.PositiveIntegerField(default=0)

    # Results.
    text = models.TextField(blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=50, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"]), models.Index(fields=["status", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="job_idempotency_key_per_account"),
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=Q(credits_charged__lte=F("credits_held")),
                                   name="job_charged_at_most_held"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


def _image_path(instance: "JobImage", filename: str) -> str:
    return f"jobs/{instance.job_id}/{filename}"


class JobImage(models.Model):
    """An image copied into our own storage (provider URLs expire)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()
    file = models.FileField(upload_to=_image_path, max_length=255)
    content_type = models.CharField(max_length=50, default="image/png")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    provider_image_id = models.CharField(max_length=100, blank=True, default="")
    seed = models.BigIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="job_image_index_unique")]
