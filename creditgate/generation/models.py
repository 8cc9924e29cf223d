"""Generation jobs, the provider calls made for them and the images they produced.

A job is durable: once its row and its hold are committed it is always run to a final state.
`queued` jobs wait for a worker (the outbox: `dispatched_at` says when the job was last handed
to the queue, empty when the hand-off is still owed); a `running` job holds a lease
(`lease_token`, `lease_expires_at`) that its worker renews while it waits on providers; a job
whose lease lapsed is recovered (generation.services.jobs_sweep). What was delivered is stored as
it arrives, so a second run resumes instead of asking a provider again.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


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
IN_FLIGHT_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


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
    # A chat (the OpenAI-compatible /v1): its messages as sent; `prompt` is then their text, for people.
    messages = models.JSONField(null=True, blank=True)
    image_size = models.CharField(max_length=20, blank=True, default="",
                                  help_text="The size asked for (/v1); empty: the model's first.")
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
    # The API key the request came with (empty: the page's session or a legacy token): its jobs in
    # flight count against its own limit (charging.in_flight_admit), besides the account's.
    api_key = models.ForeignKey("credits.ApiKey", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="+")
    # The webhook endpoint the request named (Webhook-Endpoint); it hears of the job when it is final.
    webhook_endpoint = models.ForeignKey("webhooks.WebhookEndpoint", on_delete=models.SET_NULL, null=True,
                                         blank=True, related_name="+")

    # Results.
    text = models.TextField(blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=50, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    # Durability: the outbox, the lease, the attempts.
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Runs started (claims by a worker).")
    run_after = models.DateTimeField(default=timezone.now, help_text="A queued job is not run before this.")
    dispatched_at = models.DateTimeField(null=True, blank=True,
                                         help_text="Last hand-off to the queue; empty: the hand-off is owed.")
    lease_token = models.UUIDField(null=True, blank=True, help_text="The running attempt's claim.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A streamed run (generation.streams): run by the request that streams it, never queued again.
    # Its checkpoint: the tokens counted (prompt and completion) and the text, at most
    # CREDITGATE_STREAM_CHECKPOINT_SECONDS old, which recovery settles from if that process died.
    streamed = models.BooleanField(default=False)
    stream_tokens = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            # A member's own jobs (members see only theirs), newest first.
            models.Index(fields=["account", "user", "-created_at"], name="job_account_user_newest_idx"),
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["status", "lease_expires_at"], name="job_status_lease_idx"),
            models.Index(fields=["status", "run_after"], name="job_status_run_after_idx"),
            # The usage and margin report reads jobs by the time they were asked for.
            models.Index(fields=["created_at"], name="job_created_idx"),
            # Fair shares: an account's and an API key's jobs in flight, counted under the account's
            # lock on every new job (charging.in_flight_admit); only unfinished jobs are in them.
            models.Index(fields=["account"], condition=Q(status__in=IN_FLIGHT_STATUSES),
                         name="job_in_flight_account_idx"),
            models.Index(fields=["api_key"], condition=Q(status__in=IN_FLIGHT_STATUSES),
                         name="job_in_flight_api_key_idx"),
        ]
        constraints = [
            # An Idempotency-Key is the member's own: two members of an account using the same key
            # start two jobs, and neither ever receives the other's.
            models.UniqueConstraint(fields=["account", "user", "idempotency_key"],
                                    name="job_idempotency_key_per_member"),
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=Q(credits_charged__lte=F("credits_held")),
                                   name="job_charged_at_most_held"),
            # A running job always has a live claim; no other state has one.
            models.CheckConstraint(
                condition=(Q(status=JobStatus.RUNNING, lease_token__isnull=False, lease_expires_at__isnull=False)
                           | (~Q(status=JobStatus.RUNNING) & Q(lease_token__isnull=True))),
                name="job_running_iff_leased"),
            # A final job has its finish time; an unfinished one has not.
            models.CheckConstraint(
                condition=(Q(status__in=[JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED],
                             finished_at__isnull=False)
                           | (Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]) & Q(finished_at__isnull=True))),
                name="job_final_iff_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class CallStatus(models.TextChoices):
    SENT = "sent", "Sent, no answer yet"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partly delivered"
    FAILED = "failed", "Failed"
    LOST = "lost", "Sent, answer lost"


class CostSource(models.TextChoices):
    """Where a provider call's USD cost comes from (generation.costs decides)."""

    PROVIDER = "provider", "Provider's figure"
    USAGE = "usage", "Reported tokens × catalog price"
    CATALOG = "catalog", "Catalog price × images"
    NONE = "none", "Nothing delivered"
    UNKNOWN = "unknown", "No price known"


class ProviderCall(models.Model):
    """One request to a provider made for a job: a try of a text completion or of one batch of
    images. A retry is a row of its own (`try_number` 2, 3, ..., `first_try` pointing at the
    call's first request), so every request a provider saw, and may bill, is here.

    A call to a provider that lets us look a request up afterwards (Runware's task UUID) has its
    first try recorded as `sent` BEFORE it goes out, so a run that dies waiting can be resumed by
    fetching the answer instead of paying for the work twice (the retries' task ids derive from
    it); every other try is recorded when the call ends, in the transaction that stores what it
    delivered (or settles the job). Never the key; the prompt only through the job.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="calls")
    attempt = models.PositiveSmallIntegerField(help_text="The job's run that made this call.")
    first_try = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="retries",
                                  help_text="The call's first try; empty on the first try itself.")
    try_number = models.PositiveSmallIntegerField(default=1, help_text="1 for the first request, 2 for its first "
                                                                       "retry, ...")
    kind = models.CharField(max_length=10, choices=[("text", "Text"), ("image", "Images")])
    provider_id = models.CharField(max_length=32)
    model_name = models.CharField(max_length=100)
    units_requested = models.PositiveSmallIntegerField(help_text="Images asked for; 1 for a text.")
    size = models.CharField(max_length=20, blank=True, default="", help_text="Image size asked for (WxH).")
    units_delivered = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=CallStatus.choices)
    task_id = models.CharField(max_length=100, blank=True, default="",
                               help_text="Our id of the provider's task, to look it up after a lost answer.")
    provider_request_id = models.CharField(max_length=200, blank=True, default="")
    error_class = models.CharField(max_length=50, blank=True, default="", help_text="Our error type.")
    error_code = models.CharField(max_length=50, blank=True, default="")
    provider_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The provider's HTTP status.")
    provider_error_code = models.CharField(max_length=100, blank=True, default="",
                                           help_text="The provider's own error code.")
    finish_reason = models.CharField(max_length=30, blank=True, default="")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cost_source = models.CharField(max_length=10, choices=CostSource.choices, blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "try_number"]
        indexes = [models.Index(fields=["job", "status"], name="call_job_status_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=CallStatus.values), name="call_status_valid"),
            models.CheckConstraint(condition=Q(units_delivered__lte=F("units_requested")),
                                   name="call_delivered_at_most_requested"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} call to {self.provider_id}/{self.model_name} ({self.status})"


def _image_path(instance: JobImage, filename: str) -> str:
    return f"jobs/{instance.job_id}/{filename}"


class JobImage(models.Model):
    """An image copied into our own storage (provider URLs expire)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="images")
    call = models.ForeignKey(ProviderCall, on_delete=models.PROTECT, null=True, blank=True, related_name="images")
    model_name = models.CharField(max_length=100, blank=True, default="", help_text="The model that made it.")
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

    def __str__(self) -> str:
        return f"job {self.job_id} image {self.index}"
