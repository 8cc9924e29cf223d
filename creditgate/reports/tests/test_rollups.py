"""Rollups of closed periods: the report reads them instead of the jobs and gives the same answer."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from creditgate.generation.models import Job, JobStatus
from creditgate.reports import selectors, services
from creditgate.reports.models import ClosedPeriod, UsageRollup
from creditgate.reports.selectors import ReportFilter
from creditgate.reports.tests.test_report import D1, jobs  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

LATER = dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC)
FILTERS = [
    ReportFilter(start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 10)),
    ReportFilter(start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 10), group="week"),   # a partial last week
    ReportFilter(start=dt.date(2026, 3, 3), end=dt.date(2026, 3, 15), group="week"),   # a partial first week
    ReportFilter(start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 25)),                 # days not closed yet
    ReportFilter(start=dt.date(2026, 2, 23), end=dt.date(2026, 3, 29), group="week"),
    ReportFilter(start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 15), usage="basic"),
    ReportFilter(start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 15), group="week", usage="text"),
    ReportFilter(start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 15), group="week", usage="premium"),
]


def everything(report) -> tuple:
    return report.rows, report.totals, report.drift, report.periods


def test_a_report_from_rollups_equals_the_report_from_jobs(jobs):  # noqa: F811
    live = [everything(selectors.usage_report(filter=f)) for f in FILTERS]
    assert services.usage_rollups_refresh(now=LATER, max_days=100) == 18  # March 2 to 19
    assert selectors.closed_days_through() == dt.date(2026, 3, 19)
    assert set(ClosedPeriod.objects.filter(group="week").values_list("period", flat=True)) == {
        dt.date(2026, 3, 2), dt.date(2026, 3, 9)}
    assert UsageRollup.objects.filter(group="day").exclude(usage="").count() == 7  # the rows of the live report
    rolled = [everything(selectors.usage_report(filter=f)) for f in FILTERS]
    for f, before, after in zip(FILTERS, live, rolled, strict=True):
        assert after == before, f


def test_a_year_of_rollups_is_read_in_one_query(jobs, django_assert_max_num_queries):  # noqa: F811
    services.usage_rollups_refresh(now=LATER, max_days=100)
    report_filter = ReportFilter(start=dt.date(2025, 3, 20), end=dt.date(2026, 3, 19))
    with CaptureQueriesContext(connection) as queries:
        selectors.usage_report(filter=report_filter)
    assert not any("generation_job" in q["sql"] for q in queries.captured_queries)  # nothing left to compute live
    assert len(queries.captured_queries) <= 4  # settings, closed days, rollups, catalog


def test_a_day_closes_an_hour_after_it_ends_and_only_once_its_jobs_are_final(jobs):  # noqa: F811
    monday_night = dt.datetime(2026, 3, 3, 0, 30, tzinfo=dt.UTC)
    assert services.usage_rollups_refresh(now=monday_night) == 0  # Monday ended half an hour ago
    assert services.usage_rollups_refresh(now=monday_night + dt.timedelta(hours=1)) == 1
    stuck = Job.objects.filter(created_at__date=dt.date(2026, 3, 3)).first()
    assert stuck is not None
    Job.objects.filter(pk=stuck.pk).update(status=JobStatus.QUEUED, finished_at=None)
    assert services.usage_rollups_refresh(now=LATER) == 0  # Tuesday has a job still queued: nothing after it
    assert selectors.closed_days_through() == dt.date(2026, 3, 2)
    Job.objects.filter(pk=stuck.pk).update(status=JobStatus.FAILED, finished_at=LATER)
    assert services.usage_rollups_refresh(now=LATER, max_days=5) == 5  # then on, a few days per run
    assert selectors.closed_days_through() == dt.date(2026, 3, 7)


def test_the_command_rolls_up_everything_or_starts_over(jobs, capsys):  # noqa: F811
    call_command("roll_up_usage", "--all")
    assert "Rolled up" in capsys.readouterr().out and selectors.closed_days_through() is not None
    call_command("roll_up_usage", "--clear")
    out = capsys.readouterr().out
    assert "Cleared" in out and selectors.closed_days_through() is not None  # cleared, then rolled up again
    services.usage_rollups_clear()
    assert not UsageRollup.objects.exists() and selectors.closed_days_through() is None
    assert selectors.usage_report(filter=FILTERS[0]).totals["jobs"] == 6  # live again
    assert D1.date() == FILTERS[0].start
