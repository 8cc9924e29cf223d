"""Rolling up closed periods for the usage and margin report (see reports.models)."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from creditgate.generation.models import Job, JobStatus
from creditgate.reports import selectors
from creditgate.reports.models import ClosedPeriod, PeriodGroup, UsageRollup

logger = logging.getLogger(__name__)

# A day is closed no sooner than this after it ended: a job stamped by a web process whose clock
# runs a little behind still lands in an open day.
CLOSE_GRACE = dt.timedelta(hours=1)


def usage_rollups_refresh(*, now: dt.datetime | None = None, max_days: int = 31) -> int:
    """Roll up the next closed days (at most `max_days`, oldest first), each with the week it
    ends on a Sunday; returns how many days. A day closes when it ended CLOSE_GRACE ago and every
    job asked for that day is final; the first day with an unfinished job stops the run, so the
    closed days stay a prefix. Safe to run concurrently: a day is rolled up once (the second run
    stops at the unique period)."""
    now = now or timezone.now()
    if (first_job := Job.objects.aggregate(first=Min("created_at"))["first"]) is None:
        return 0
    last = selectors.closed_days_through()
    day = last + selectors.ONE_DAY if last else first_job.astimezone(dt.UTC).date()
    unfinished = (Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
                  .aggregate(first=Min("created_at"))["first"])
    done = 0
    while done < max_days:
        ends = selectors.utc_midnight(day + selectors.ONE_DAY)
        if now < ends + CLOSE_GRACE or (unfinished is not None and unfinished < ends):
            break
        try:
            with transaction.atomic():
                _roll_up(PeriodGroup.DAY, day, day, now=now)
                if day.weekday() == 6:  # a Sunday closes its week
                    _roll_up(PeriodGroup.WEEK, day - dt.timedelta(days=6), day, now=now)
        except IntegrityError:
            logger.info("usage rollup: %s was rolled up by another run", day)
            break
        day += selectors.ONE_DAY
        done += 1
    if done:
        logger.info("usage rollup: %d day(s) rolled up, through %s", done, day - selectors.ONE_DAY)
    return done


def usage_rollups_clear() -> int:
    """Forget every rollup (the report computes everything live until the next refresh)."""
    with transaction.atomic():
        UsageRollup.objects.all().delete()
        deleted, _ = ClosedPeriod.objects.all().delete()
    return deleted


def _roll_up(group: str, first: dt.date, last: dt.date, *, now: dt.datetime) -> None:
    tally = selectors.live_tally(filter=selectors.ReportFilter(start=first, end=last, group=group),
                                 ranges=[(first, last)])
    rows = [UsageRollup(group=group, period=period, usage="", model_name="", **counts)
            for period, counts in tally.jobs.items()]
    rows.extend(UsageRollup(
        group=group, period=row["period"], usage=row["usage"], model_name=row["model"],
        **{name: row.get(name) or 0 for name in ("jobs", "refused", "failed", "images", "tokens", "credits",
                                                  "calls", "failed_calls", "cost_usd", "provider_units")},
        provider_cost_usd=row.get("provider_cost") or 0, p50_ms=row.get("p50_ms"), p95_ms=row.get("p95_ms"))
        for row in tally.rows.values())
    ClosedPeriod.objects.create(group=group, period=first, rolled_up_at=now)
    UsageRollup.objects.bulk_create(rows)
