"""The usage and margin report's figures, from jobs, images and calls made by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum

from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings
from creditgate.generation.models import CallStatus, CostSource, Job, JobKind, JobStatus, ProviderCall
from creditgate.reports import selectors
from creditgate.reports.selectors import ReportFilter
from creditgate.reports.tests.factories import job, owner

pytestmark = pytest.mark.django_db

OK, FAILED = CallStatus.SUCCEEDED, CallStatus.FAILED
PROVIDER, USAGE, NONE = CostSource.PROVIDER, CostSource.USAGE, CostSource.NONE
D1 = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)   # a Monday
D2 = dt.datetime(2026, 3, 3, 23, 59, tzinfo=dt.UTC)
D3 = dt.datetime(2026, 3, 10, 0, 0, tzinfo=dt.UTC)  # the next week
BASIC, QUALITY, PREMIUM, TEXT = "runware:97@1", "gpt-image-2", "google:4@2", "gpt-5.1"


@pytest.fixture
def jobs():
    """Six jobs over two weeks: images with a retry, a refusal, a text with a retry, an article,
    a premium image, and a job whose calls all failed; one job outside the range."""
    who = owner()
    GlobalIntegrationSettings.objects.update_or_create(id=1, defaults={"usd_per_credit": Decimal("0.01")})
    job(who, at=D1, images=2, calls=[("image", FAILED, 0, "0", 50, NONE), ("image", OK, 2, "0.018", 400, PROVIDER)])
    job(who, at=D1, tier="quality", model=QUALITY, provider="openai", rate=5, asked=1, status=JobStatus.FAILED,
        error_code="content_refused", calls=[("image", FAILED, 0, "0", 30, NONE)])
    job(who, at=D1, kind=JobKind.TEXT, text_model=TEXT, tokens=1500, tokens_per_credit=1000, credits=2,
        calls=[("text", FAILED, 0, "0", 20, NONE), ("text", OK, 1, "0.003", 900, USAGE)])
    job(who, at=D2, kind=JobKind.ARTICLE, images=1, text_model=TEXT, tokens=800, tokens_per_credit=1000, credits=2,
        calls=[("image", OK, 1, "0.009", 300, PROVIDER), ("text", OK, 1, "0.002", 700, USAGE)])
    job(who, at=D3, tier="premium", model=PREMIUM, rate=15, images=1, calls=[("image", OK, 1, "0.138", 5000, PROVIDER)])
    job(who, at=D2, asked=1, status=JobStatus.FAILED, error_code="provider_unavailable",
        calls=[("image", FAILED, 0, "0", 10, NONE)] * 3)
    job(who, at=D3 + dt.timedelta(days=1), images=4, calls=[("image", OK, 4, "0.036", 100, PROVIDER)])


def report(**kwargs):
    kwargs.setdefault("start", D1.date())
    kwargs.setdefault("end", D3.date())
    return selectors.usage_report(filter=ReportFilter(**kwargs))


def by_key(rows):
    return {(r["period"], r["usage"], r["model"]): r for r in rows}


def pick(row, *names):
    return tuple(row[name] for name in names)


def test_daily_rows_per_tier_and_model(jobs):
    rows = by_key(report().rows)
    d1, d2, d3 = D1.date(), D2.date(), D3.date()
    assert list(rows) == [(d1, "basic", BASIC), (d1, "quality", QUALITY), (d1, "text", TEXT), (d2, "basic", BASIC),
                          (d2, "text", TEXT), (d3, "premium", PREMIUM)]
    names = ("jobs", "refused", "failed", "images", "tokens", "credits", "calls", "failed_calls", "p50_ms", "p95_ms")
    assert pick(rows[(d1, "basic", BASIC)], *names) == (1, 0, 0, 2, 0, 2, 2, 1, 400, 400)
    assert pick(rows[(d1, "quality", QUALITY)], *names) == (1, 1, 0, 0, 0, 0, 1, 1, None, None)
    assert pick(rows[(d1, "text", TEXT)], *names) == (1, 0, 0, 0, 1500, 2, 2, 1, 900, 900)
    # The article's image under its tier, its text (the charge less the image) under text.
    assert pick(rows[(d2, "basic", BASIC)], *names) == (2, 0, 1, 1, 0, 1, 4, 3, 300, 300)
    assert pick(rows[(d2, "text", TEXT)], *names) == (1, 0, 0, 0, 800, 1, 1, 0, 700, 700)
    assert pick(rows[(d3, "premium", PREMIUM)], *names) == (1, 0, 0, 1, 0, 15, 1, 0, 5000, 5000)
    assert rows[(d1, "basic", BASIC)]["provider"] == "runware"


def test_money_columns(jobs):
    rows = by_key(report().rows)
    basic = rows[(D1.date(), "basic", BASIC)]
    assert (basic["cost_usd"], basic["revenue_usd"], basic["margin_usd"], basic["margin_pct"]) == (
        Decimal("0.018"), Decimal("0.02"), Decimal("0.002"), 10.0)
    refused = rows[(D1.date(), "quality", QUALITY)]
    assert (refused["cost_usd"], refused["revenue_usd"], refused["margin_pct"]) == (0, 0, None)
    premium = rows[(D3.date(), "premium", PREMIUM)]
    assert (premium["revenue_usd"], premium["margin_usd"]) == (Decimal("0.15"), Decimal("0.012"))


def test_totals_equal_the_jobs_charges_and_the_calls_costs(jobs):
    r = report()
    in_range = Job.objects.filter(created_at__lt=D3 + dt.timedelta(days=1))
    assert r.totals["credits"] == in_range.aggregate(s=Sum("credits_charged"))["s"] == 21
    assert r.totals["cost_usd"] == ProviderCall.objects.filter(job__in=in_range).aggregate(
        s=Sum("cost_usd"))["s"] == Decimal("0.170")
    # Each job once (the article has two rows), refusals apart from other failures.
    assert pick(r.totals, "jobs", "refused", "failed", "calls", "failed_calls") == (6, 1, 1, 11, 6)
    assert (r.totals["revenue_usd"], r.totals["margin_usd"], r.totals["margin_pct"]) == (
        Decimal("0.21"), Decimal("0.04"), 19.0)


def test_weeks_merge_days_and_their_percentiles(jobs):
    rows = by_key(report(group="week").rows)
    week1, week2 = dt.date(2026, 3, 2), dt.date(2026, 3, 9)
    assert list(rows) == [(week1, "basic", BASIC), (week1, "quality", QUALITY), (week1, "text", TEXT),
                          (week2, "premium", PREMIUM)]
    assert pick(rows[(week1, "basic", BASIC)], "jobs", "images", "credits", "calls", "p50_ms", "p95_ms") == (
        3, 3, 3, 6, 300, 400)
    assert pick(rows[(week1, "text", TEXT)], "jobs", "tokens", "credits", "p50_ms", "p95_ms") == (2, 2300, 3, 700, 900)
    assert report(group="week").periods == [week1, week2]


def test_the_tier_filter_keeps_its_rows_and_counts_its_jobs(jobs):
    basic = report(usage="basic")
    assert {row["usage"] for row in basic.rows} == {"basic"}
    assert pick(basic.totals, "jobs", "credits", "images") == (3, 3, 3)
    text = report(usage="text")
    assert {row["usage"] for row in text.rows} == {"text"}
    assert pick(text.totals, "jobs", "credits", "tokens") == (2, 3, 2300)


def test_no_credit_value_means_no_revenue_or_margin(jobs):
    GlobalIntegrationSettings.objects.filter(id=1).update(usd_per_credit=None)
    r = report()
    assert (r.totals["revenue_usd"], r.totals["margin_usd"], r.totals["margin_pct"]) == (None, None, None)
    assert selectors.chart_series(r)["revenue_usd"] is None


def test_latency_percentiles_are_nearest_rank():
    who = owner()
    job(who, at=D1, images=1, calls=[("image", OK, 1, "0.009", ms, PROVIDER) for ms in range(20, 0, -1)])
    row = report().rows[0]
    assert (row["p50_ms"], row["p95_ms"]) == (10, 19)  # ranks ceil(0.5 × 20) and ceil(0.95 × 20)


def test_chart_series(jobs):
    s = selectors.chart_series(report())
    assert s["periods"][:2] == ["2026-03-02", "2026-03-03"] and len(s["periods"]) == 9  # every day, gaps included
    assert s["credits"][:3] == [4, 2, 0] and s["credits"][8] == 15
    assert s["cost_usd"][:2] == [0.021, 0.011]
    assert [m["usage"] for m in s["margin_by_usage"]] == ["basic", "quality", "premium", "text"]
    # Failure rate of provider requests: openai on day one = 2 failed of 3 (the refusal, the text's first try).
    assert s["failure_rate_by_provider"]["openai"][0] == round(2 / 3, 4)
    assert s["failure_rate_by_provider"]["runware"][:3] == [0.5, 0.75, None]


def test_the_number_of_queries_does_not_grow_with_rows(jobs):
    def queries_for_report() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            r = report()
            selectors.chart_series(r)
        return len(ctx.captured_queries)

    few = queries_for_report()
    who = owner()
    for day in range(9):
        at = D1 + dt.timedelta(days=day, hours=1)
        for tier, model, provider, rate in [("basic", BASIC, "runware", 1), ("quality", QUALITY, "openai", 5),
                                            ("premium", PREMIUM, "runware", 15)]:
            job(who, at=at, tier=tier, model=model, provider=provider, rate=rate, images=2,
                calls=[("image", FAILED, 0, "0", 10, NONE), ("image", OK, 2, "0.1", 500 + day, PROVIDER)])
        job(who, at=at, kind=JobKind.TEXT, text_model=TEXT, tokens=900, tokens_per_credit=1000, credits=1,
            calls=[("text", OK, 1, "0.001", 800, USAGE)])
    assert Job.objects.count() > 40 and ProviderCall.objects.count() > 70
    assert queries_for_report() == few <= 10


def test_cost_drift_flags_models_priced_off_their_catalog_price(jobs, settings):
    settings.CREDITGATE_COST_DRIFT_PERCENT = 20
    settings.CREDITGATE_COST_DRIFT_MIN_UNITS = 2
    AIModelConfig.objects.filter(model_name=BASIC).update(usd_per_image=Decimal("0.007"))
    drift = {d["model"]: d for d in report().drift}
    assert set(drift) == {BASIC, PREMIUM}  # only provider-reported costs can drift
    basic = drift[BASIC]
    assert (basic["units"], basic["recorded_usd_per_unit"], basic["catalog_usd_per_unit"]) == (
        3, Decimal("0.009"), Decimal("0.007"))
    assert (basic["drift_pct"], basic["flagged"]) == (Decimal("28.6"), True)
    assert (drift[PREMIUM]["drift_pct"], drift[PREMIUM]["flagged"]) == (Decimal("0.0"), False)
    # One image is not enough evidence at a minimum of two.
    assert (drift[PREMIUM]["units"]) == 1
    AIModelConfig.objects.filter(model_name=PREMIUM).update(usd_per_image=Decimal("0.1"))
    assert {d["model"]: d["flagged"] for d in report().drift}[PREMIUM] is False
    settings.CREDITGATE_COST_DRIFT_MIN_UNITS = 1
    assert {d["model"]: d["flagged"] for d in report().drift}[PREMIUM] is True
