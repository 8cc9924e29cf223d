"""The usage and margin report: what each tier and model earned and cost, per day or week.

Every figure is aggregated in the database; Python only merges the aggregated rows (at most
periods × models of them) and adds the derived columns. The number of queries is fixed (seven,
whatever the number of jobs or calls), and each reads jobs by `created_at` (index
`job_created_idx`), their images through the (job, index) key and their calls through the job
foreign key's index.

What the columns mean:
- A row is (period, usage, model): usage is an image tier or `text`, as in the user's usage API.
  Jobs count in the period they were asked for (UTC), and so do their calls and images, so a
  row's revenue and cost are those of the same jobs.
- jobs, refused, failed: the jobs routed to that model (an article counts once under its tier and
  once under text); refused = failed on a content refusal, failed = failed otherwise.
- images: images delivered by that model; tokens: the text's tokens as charged.
- credits: credits charged (an article's images at its per-image rate, its text the rest; the
  totals equal the ledger's captures for the same jobs).
- cost_usd: the provider calls' costs (each try; see `generation.costs` for where a cost comes
  from); revenue_usd: credits × the settings' USD per credit (empty while it is not set); margin.
- calls, failed_calls: provider requests (retries included) and those that failed or were lost.
- p50_ms, p95_ms: latency of the requests that delivered, nearest-rank percentiles computed with
  window functions (ROW_NUMBER and COUNT over the row's partition), which SQLite and PostgreSQL
  both run: one implementation for both databases.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    DecimalField,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber, TruncDate, TruncWeek

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, QualityTier
from creditgate.generation import costs
from creditgate.generation.models import CallStatus, CostSource, Job, JobImage, JobKind, JobStatus, ProviderCall

TEXT = "text"  # the usage key of text, as in the usage API
USAGES = [*QualityTier.values, TEXT]
USAGE_LABELS = {**dict(QualityTier.choices), TEXT: "Text"}
GROUPS = ("day", "week")
MAX_DAYS = 731
REFUSED_CODE = "content_refused"
CENTS = Decimal("0.01")
MICRO = Decimal("0.000001")
COST_DRIFT_DAYS = 30  # the window the AI models list checks for cost drift

METRICS = ["jobs", "refused", "failed", "images", "tokens", "credits", "cost_usd", "revenue_usd", "margin_usd",
           "margin_pct", "calls", "failed_calls", "p50_ms", "p95_ms"]
SUMMED = ["jobs", "refused", "failed", "images", "tokens", "credits", "cost_usd", "calls", "failed_calls"]


@dataclass(frozen=True)
class ReportFilter:
    start: dt.date
    end: dt.date           # included
    group: str = "day"     # day | week (weeks start on Monday)
    usage: str | None = None  # an image tier, "text", or None for all

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}")
        if self.usage is not None and self.usage not in USAGES:
            raise ValueError(f"usage must be one of {USAGES}")
        if self.start > self.end:
            raise ValueError("start must be on or before end")

    @property
    def since(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time.min, tzinfo=dt.UTC)

    @property
    def until(self) -> dt.datetime:
        return dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Report:
    filter: ReportFilter
    usd_per_credit: Decimal | None
    periods: list[dt.date]
    rows: list[dict]       # one per (period, usage, model) with any activity, in period, usage, model order
    totals: dict
    drift: list[dict]      # see cost_drift


def usage_report(*, filter: ReportFilter) -> Report:
    """The report for the filter: rows, totals and the cost drift of the models in it."""
    usd_per_credit = catalog_selectors.global_settings_get().usd_per_credit
    rows: dict[tuple, dict] = {}

    def merge(key: tuple, **values) -> None:
        row = rows.setdefault(key, {"period": key[0], "usage": key[1], "model": key[2]})
        for name, value in values.items():
            row[name] = row.get(name, 0) + (value or 0)

    jobs = _jobs(filter)
    if filter.usage != TEXT:
        for r in _image_jobs(jobs, filter):
            merge((r["period"], r["tier"], r["image_model_name"]), jobs=r["jobs"], refused=r["refused"],
                  failed=r["failed"])
        for r in _images(filter):
            merge((r["period"], r["tier"], r["model_name"]), images=r["images"], credits=r["credits"])
    if filter.usage in (None, TEXT):
        for r in _text_jobs(jobs, filter):
            merge((r["period"], TEXT, r["text_model_name"]), jobs=r["jobs"], refused=r["refused"], failed=r["failed"],
                  tokens=r["tokens"], credits=r["credits"])
    for r in _calls(filter):
        merge((r["period"], r["usage"], r["model_name"]), calls=r["calls"], failed_calls=r["failed_calls"],
              cost_usd=r["cost"])
    latencies = _latency_percentiles(filter)

    providers = dict(AIModelConfig.objects.values_list("model_name", "provider_id"))
    ordered = sorted(rows.values(), key=lambda row: (row["period"], _usage_order(row["usage"]), row["model"]))
    for row in ordered:
        for name in SUMMED:
            row.setdefault(name, 0)
        row["provider"] = providers.get(row["model"], "")
        row["p50_ms"], row["p95_ms"] = latencies.get((row["period"], row["usage"], row["model"]), (None, None))
        _derive_money(row, usd_per_credit)

    totals = {name: sum((row[name] for row in ordered), Decimal(0) if name == "cost_usd" else 0) for name in SUMMED}
    totals.update(_job_totals(jobs, filter))
    _derive_money(totals, usd_per_credit)
    return Report(filter=filter, usd_per_credit=usd_per_credit, periods=report_periods(filter), rows=ordered,
                  totals=totals, drift=cost_drift(since=filter.since, until=filter.until))


def report_periods(filter: ReportFilter) -> list[dt.date]:
    """Every period of the range (days, or the Mondays of its weeks), oldest first."""
    if filter.group == "day":
        return [filter.start + dt.timedelta(days=n) for n in range((filter.end - filter.start).days + 1)]
    first = filter.start - dt.timedelta(days=filter.start.weekday())
    return [first + dt.timedelta(weeks=n) for n in range((filter.end - first).days // 7 + 1)]


def chart_series(report: Report) -> dict:
    """What the charts draw, summed from the report's rows (no query): credits, cost and revenue
    per period; margin per usage; the failure rate of provider requests per provider and period."""
    index = {period: n for n, period in enumerate(report.periods)}
    width = len(report.periods)
    credits, cost, revenue = [0] * width, [Decimal(0)] * width, [Decimal(0)] * width
    by_usage: dict[str, dict] = {}
    calls: dict[str, list[int]] = {}
    failed: dict[str, list[int]] = {}
    for row in report.rows:
        n = index[row["period"]]
        credits[n] += row["credits"]
        cost[n] += row["cost_usd"]
        revenue[n] += row["revenue_usd"] or 0
        usage = by_usage.setdefault(row["usage"], {"credits": 0, "cost_usd": Decimal(0)})
        usage["credits"] += row["credits"]
        usage["cost_usd"] += row["cost_usd"]
        if row["calls"]:
            calls.setdefault(row["provider"] or "?", [0] * width)[n] += row["calls"]
            failed.setdefault(row["provider"] or "?", [0] * width)[n] += row["failed_calls"]
    for usage in by_usage.values():
        _derive_money(usage, report.usd_per_credit)
    return {
        "periods": [p.isoformat() for p in report.periods],
        "credits": credits,
        "cost_usd": [_usd(c) for c in cost],
        "revenue_usd": [_usd(r) for r in revenue] if report.usd_per_credit is not None else None,
        "margin_by_usage": [{"usage": u, "label": USAGE_LABELS.get(u, u), "margin_usd": _usd(v["margin_usd"]),
                             "margin_pct": v["margin_pct"], "cost_usd": _usd(v["cost_usd"]), "credits": v["credits"]}
                            for u, v in sorted(by_usage.items(), key=lambda item: _usage_order(item[0]))],
        "failure_rate_by_provider": {
            provider: [round(f / c, 4) if c else None for f, c in zip(failed[provider], counts)]
            for provider, counts in sorted(calls.items())},
    }


# --- Cost drift: the providers' figures against the catalog's prices ---------------------------


def cost_drift(*, since: dt.datetime, until: dt.datetime | None = None) -> list[dict]:
    """For every model with costs the provider reported itself between `since` and `until`: the
    recorded cost per unit (image) against the catalog's price, the drift in percent, and
    whether it is over CREDITGATE_COST_DRIFT_PERCENT (with at least COST_DRIFT_MIN_UNITS units
    behind it, so one odd call does not raise a flag). One query."""
    calls = ProviderCall.objects.filter(cost_source=CostSource.PROVIDER, units_delivered__gt=0,
                                        job__created_at__gte=since)
    if until is not None:
        calls = calls.filter(job__created_at__lt=until)
    recorded = (calls.order_by().values("model_name")
                .annotate(cost=Sum("cost_usd"), units=Sum("units_delivered")).order_by("model_name"))
    catalog = {m.model_name: m for m in AIModelConfig.objects.filter(model_name__in=[r["model_name"] for r in recorded])}
    threshold = Decimal(str(settings.CREDITGATE_COST_DRIFT_PERCENT))
    drift = []
    for r in recorded:  # one row per model
        model = catalog.get(r["model_name"])
        price = costs.catalog_usd_per_unit(model) if model else None
        per_unit = (r["cost"] / r["units"]).quantize(MICRO, ROUND_HALF_UP)
        pct = ((per_unit - price) / price * 100).quantize(Decimal("0.1"), ROUND_HALF_UP) if price else None
        drift.append({"model": r["model_name"], "display_name": str(model) if model else r["model_name"],
                      "units": r["units"], "recorded_usd_per_unit": per_unit, "catalog_usd_per_unit": price,
                      "drift_pct": pct,
                      "flagged": pct is not None and abs(pct) > threshold
                      and r["units"] >= settings.CREDITGATE_COST_DRIFT_MIN_UNITS})
    return drift


def models_cost_drifting(*, days: int = COST_DRIFT_DAYS) -> list[dict]:
    """The flagged entries of cost_drift over the last `days` days (the AI models list warns)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return [d for d in cost_drift(since=since) if d["flagged"]]


# --- The queries --------------------------------------------------------------------------------


def _period(field: str, filter: ReportFilter):
    if filter.group == "week":
        return TruncWeek(field, tzinfo=dt.UTC, output_field=DateField())
    return TruncDate(field, tzinfo=dt.UTC)


def _jobs(filter: ReportFilter) -> QuerySet[Job]:
    return Job.objects.filter(created_at__gte=filter.since, created_at__lt=filter.until).order_by()


_REFUSED = Q(status=JobStatus.FAILED, error_code=REFUSED_CODE)
_FAILED = Q(status=JobStatus.FAILED) & ~Q(error_code=REFUSED_CODE)


def _image_jobs(jobs: QuerySet[Job], filter: ReportFilter):
    jobs = jobs.exclude(image_model_name="")
    if filter.usage:
        jobs = jobs.filter(tier=filter.usage)
    return (jobs.annotate(period=_period("created_at", filter)).values("period", "tier", "image_model_name")
            .annotate(jobs=Count("pk"), refused=Count("pk", filter=_REFUSED), failed=Count("pk", filter=_FAILED)))


def _images(filter: ReportFilter):
    """Images by the model that made them, each at the per-image rate its job was held at."""
    images = JobImage.objects.filter(job__created_at__gte=filter.since, job__created_at__lt=filter.until).order_by()
    if filter.usage:
        images = images.filter(job__tier=filter.usage)
    return (images.annotate(period=_period("job__created_at", filter), tier=F("job__tier"))
            .values("period", "tier", "model_name")
            .annotate(images=Count("pk"), credits=Coalesce(Sum("job__credits_per_image"), 0)))


def _text_jobs(jobs: QuerySet[Job], filter: ReportFilter):
    """Text jobs and articles' texts: tokens, and credits = the job's charge less its images'."""
    delivered = Subquery(JobImage.objects.filter(job=OuterRef("pk")).order_by().values("job")
                         .annotate(n=Count("pk")).values("n"), output_field=IntegerField())
    text_credits = Case(
        When(kind=JobKind.TEXT, then=F("credits_charged")),
        default=F("credits_charged") - Coalesce(F("credits_per_image"), 0) * Coalesce(delivered, 0),
        output_field=IntegerField())
    return (jobs.exclude(text_model_name="").annotate(period=_period("created_at", filter))
            .values("period", "text_model_name")
            .annotate(jobs=Count("pk"), refused=Count("pk", filter=_REFUSED), failed=Count("pk", filter=_FAILED),
                      tokens=Coalesce(Sum("total_tokens"), 0), credits=Coalesce(Sum(text_credits), 0)))


def _job_totals(jobs: QuerySet[Job], filter: ReportFilter) -> dict:
    """Jobs counted once each (an article has a text row and an image row)."""
    if filter.usage == TEXT:
        jobs = jobs.exclude(text_model_name="")
    elif filter.usage:
        jobs = jobs.filter(tier=filter.usage).exclude(image_model_name="")
    return jobs.aggregate(jobs=Count("pk"), refused=Count("pk", filter=_REFUSED), failed=Count("pk", filter=_FAILED))


def _calls_in(filter: ReportFilter) -> QuerySet[ProviderCall]:
    usage = Case(When(kind=TEXT, then=Value(TEXT)), default=F("job__tier"), output_field=CharField())
    calls = (ProviderCall.objects.filter(job__created_at__gte=filter.since, job__created_at__lt=filter.until)
             .order_by().annotate(period=_period("job__created_at", filter), usage=usage))
    if filter.usage:
        calls = calls.filter(usage=filter.usage)
    return calls


def _calls(filter: ReportFilter):
    return (_calls_in(filter).values("period", "usage", "model_name")
            .annotate(calls=Count("pk"),
                      failed_calls=Count("pk", filter=Q(status__in=[CallStatus.FAILED, CallStatus.LOST])),
                      cost=Coalesce(Sum("cost_usd"), Value(Decimal(0)),
                                    output_field=DecimalField(max_digits=16, decimal_places=6))))


def _latency_percentiles(filter: ReportFilter) -> dict[tuple, tuple[int | None, int | None]]:
    """{(period, usage, model): (p50, p95)} of the latency of requests that delivered: the rows
    ranked 50% and 95% of the way (nearest rank: rank = ceil(p × n), in integer arithmetic) in
    each partition. At most two rows per partition come back."""
    partition = [F("period"), F("usage"), F("model_name")]
    ranked = (_calls_in(filter).filter(latency_ms__isnull=False, units_delivered__gt=0)
              .annotate(rank=Window(RowNumber(), partition_by=partition, order_by=F("latency_ms").asc()),
                        n=Window(Count("pk"), partition_by=partition)))
    picked = (ranked.filter(Q(rank=(F("n") * 50 + 99) / 100) | Q(rank=(F("n") * 95 + 99) / 100))
              .values("period", "usage", "model_name", "rank", "n", "latency_ms"))
    percentiles: dict[tuple, list] = {}
    for r in picked:  # at most two per (period, usage, model)
        key = (r["period"], r["usage"], r["model_name"])
        slot = percentiles.setdefault(key, [None, None])
        if r["rank"] == (r["n"] * 50 + 99) // 100:
            slot[0] = r["latency_ms"]
        if r["rank"] == (r["n"] * 95 + 99) // 100:
            slot[1] = r["latency_ms"]
    return {key: tuple(value) for key, value in percentiles.items()}


# --- Derived columns -------------------------------------------------------------------------------


def _derive_money(row: dict, usd_per_credit: Decimal | None) -> None:
    cost = Decimal(row.get("cost_usd") or 0)
    row["cost_usd"] = cost
    if usd_per_credit is None:
        row["revenue_usd"] = row["margin_usd"] = row["margin_pct"] = None
        return
    revenue = (row["credits"] * usd_per_credit).quantize(MICRO, ROUND_HALF_UP)
    margin = revenue - cost
    row["revenue_usd"], row["margin_usd"] = revenue, margin
    row["margin_pct"] = float((margin / revenue * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)) if revenue else None


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(MICRO, ROUND_HALF_UP))


def _usage_order(usage: str) -> int:
    return USAGES.index(usage) if usage in USAGES else len(USAGES)
