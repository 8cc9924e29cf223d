"""Reads of jobs, and the jobs' part of the reconciliation audit (core.reconciliation runs it
with the other apps' checks)."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce, Least, TruncDate
from django.utils import timezone

from creditgate.core.errors import NotFound
from creditgate.credits import services as credits_services
from creditgate.credits.models import Hold, HoldState
from creditgate.generation import charging
from creditgate.generation.models import FINAL_STATUSES, Job, JobImage, JobKind, JobStatus

logger = logging.getLogger(__name__)


def _jobs_visible(*, user) -> QuerySet[Job]:
    """The jobs `user` may see, with who ran each: an owner the account's, a member only their own."""
    member = credits_services.member_for_user(user=user)
    jobs = Job.objects.filter(account_id=member.account_id)
    if not member.is_owner:
        jobs = jobs.filter(user_id=member.user_id)
    return jobs.select_related("user")


def job_list(*, user) -> QuerySet[Job]:
    """The jobs `user` may see, newest first, with their images."""
    return _jobs_visible(user=user).prefetch_related("images").order_by("-created_at")


def job_get(*, user, job_id) -> Job:
    """A job the user may see; anyone else's, another member's included, is indistinguishable
    from a missing one. One query, a second for an image or article job's images (read after every
    wait: no ordering, no prefetch a text job would not use)."""
    try:
        job = _jobs_visible(user=user).get(pk=job_id)
    except Job.DoesNotExist:
        raise NotFound("No such job.") from None
    if job.kind != JobKind.TEXT:  # a text job has no images
        prefetch_related_objects([job], "images")
    return job


def job_image_get(*, user, job_id, index: int) -> JobImage:
    image = JobImage.objects.filter(job=job_get(user=user, job_id=job_id), index=index).first()
    if image is None:
        raise NotFound("No such image.")
    return image


# --- The reconciliation audit: the ledger against the work delivered ---------------------------


def jobs_audit(*, now: dt.datetime | None = None, full: bool = True) -> list[str]:
    """Every break of the jobs' money invariants; empty == clean.

    Quick checks (the sweep runs them every time; each reads an index):
    - no final job has an active hold;
    - no active hold of a job (holds without expiry) lacks an unfinished job;
    - no running job's lease lapsed longer ago than the sweep should have taken it;
    - no queued job has been owed its hand-off to the queue that long.
    Full (`manage.py check_ledger`, the hourly audit): every final job's charge equals what it
    delivered (stored images, the text's tokens) at the rates it was held at, capped at its hold,
    and equals what its hold captured.
    """
    now = now or timezone.now()
    problems: list[str] = []
    unfinished = [JobStatus.QUEUED, JobStatus.RUNNING]
    for job_id, hold_id in (Job.objects.filter(status__in=FINAL_STATUSES, hold__state=HoldState.ACTIVE)
                            .values_list("pk", "hold_id")[:100]):
        problems.append(f"job {job_id} is final but its hold {hold_id} is still active")
    for hold_id, amount in (Hold.objects.filter(state=HoldState.ACTIVE, expires_at__isnull=True)
                            .exclude(job__status__in=unfinished).values_list("pk", "amount")[:100]):
        problems.append(f"hold {hold_id} ({amount} credits) is active but has no unfinished job")
    overdue = now - dt.timedelta(seconds=2 * max(settings.CREDITGATE_JOB_SWEEP_SECONDS, 15))
    for job_id, lapsed in (Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=overdue)
                           .values_list("pk", "lease_expires_at")[:100]):
        problems.append(f"job {job_id} is running but its lease lapsed at {lapsed:%Y-%m-%d %H:%M:%S} "
                        f"and no sweep took it over")
    for job_id, due in (Job.objects.filter(status=JobStatus.QUEUED, dispatched_at__isnull=True, run_after__lt=overdue)
                        .values_list("pk", "run_after")[:100]):
        problems.append(f"job {job_id} has been owed its hand-off to the queue since {due:%Y-%m-%d %H:%M:%S}")
    if full:
        problems.extend(charging.charges_audit())
    return problems


# --- Usage: what an account spent, by day and tier ------------------------------------------

TEXT_USAGE = "text"  # the usage key of text (a job's text or an article's text part); tiers are image tiers


def usage_visible(*, user, start: dt.date, end: dt.date, by_day: bool) -> dict[tuple, int]:
    """The usage `user` may see (usage_credits): an owner the account's, a member their own jobs'."""
    member = credits_services.member_for_user(user=user)
    return usage_credits(account=member.account_id, start=start, end=end, by_day=by_day,
                         user=None if member.is_owner else member.user_id)


def usage_credits(*, account, start: dt.date, end: dt.date, by_day: bool, user=None) -> dict[tuple, int]:
    """Credits charged for the account's jobs (only `user`'s, when given) asked for from `start`
    to `end` (both included, UTC days), keyed by (day, usage) when `by_day`, else by (usage,). A
    usage is an image tier or `TEXT_USAGE`; keys with nothing charged are left out.

    Aggregated in the database (one query, served by the job table's (account, created_at) or
    (account, user, created_at) index), so the cost does not grow with the number of jobs in Python. An article is split
    into its images, at the per-image rate its job held, and its text, the rest of its charge.
    """
    delivered = Subquery(JobImage.objects.filter(job=OuterRef("pk")).order_by().values("job")
                         .annotate(n=Count("pk")).values("n"), output_field=IntegerField())
    image_part = Case(
        When(kind=JobKind.IMAGE, then=F("credits_charged")),
        When(kind=JobKind.ARTICLE, then=Least(F("credits_charged"),
                                              Coalesce(F("credits_per_image"), 0) * Coalesce(delivered, 0))),
        default=Value(0), output_field=IntegerField())
    keys = ["day", "tier"] if by_day else ["tier"]
    jobs = Job.objects.filter(account=account) if user is None else Job.objects.filter(account=account, user=user)
    rows = (jobs
            .filter(credits_charged__gt=0,
                    created_at__gte=dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC),
                    created_at__lt=dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC))
            .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
            .values(*keys).order_by(*keys)
            .annotate(charged=Sum("credits_charged"), images=Sum(image_part)))
    usage: dict[tuple, int] = {}
    for row in rows:  # at most (days x tiers) aggregated rows, not jobs
        day = (row["day"],) if by_day else ()
        if row["images"] and row["tier"]:
            usage[(*day, row["tier"])] = usage.get((*day, row["tier"]), 0) + row["images"]
        if row["charged"] - row["images"]:
            usage[(*day, TEXT_USAGE)] = usage.get((*day, TEXT_USAGE), 0) + row["charged"] - row["images"]
    return usage
