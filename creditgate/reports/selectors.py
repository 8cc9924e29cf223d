"""The usage and margin report: what each tier and model earned and cost, per day or week.

Every figure is aggregated in the database; Python only merges aggregated rows (at most
periods × models of them) and adds the derived columns. A report runs a fixed number of queries
(seven at most), whatever the number of jobs or calls.

Rollups keep a year fast: a period that is over and whose jobs are all final can no longer
change, so `reports.services.usage_rollups_refresh` stores what it adds up to (UsageRollup, the
same figures this module computes live, exact percentiles included). A report reads the rolled-up
periods of its range in one query and computes only the rest live (today, yesterday, and the
partial weeks at the ends of a weekly range). The live queries read jobs by `created_at` (index
`job_created_idx`), their calls through the job foreign key's index and their images through the
(job, index) key.

What the columns mean:
- A row is (period, usage, model): usage is an image tier or `text`, as in the user's usage API.
  Jobs count in the period they were asked for (UTC), and so do their calls and images, so a
  row's revenue and cost are those of the same jobs.
- jobs, refused, failed: the jobs priced with that model, the first of their tier when they were
  asked for (an article counts once under its tier and once under text; the totals count each job
  once); refused = failed on a content refusal, failed = failed otherwise. Images, calls and costs
  count under the model that served them, which after a failover is the tier's next model.
- images: images delivered by that model (each provider request's delivered units); tokens: the
  text's tokens as charged.
- credits: credits charged: images at the per-image rate their job was held at, a text the rest of
  its job's charge; the totals equal the ledger's captures for the same jobs.
- cost_usd: the provider requests' costs (each try; see `generation.costs` for where a cost comes
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
from typing import TYPE_CHECKING, Literal, TypedDict

from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    DecimalField,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate, TruncWeek

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, QualityTier
from creditgate.core import dates
from creditgate.generation import costs
from creditgate.generation.models import CallStatus, CostSource, Job, JobImage, JobKind, JobStatus, ProviderCall
from creditgate.generation.selectors import TEXT_USAGE
from creditgate.providers.base import ProviderContentRefused
from creditgate.reports.models import ClosedPeriod, PeriodGroup, UsageRollup

if TYPE_CHECKING:  # django-stubs-ext is a dev requirement
    from django_stubs_ext import WithAnnotations

TEXT = TEXT_USAGE  # the usage key of text, as in the user's usage API
USAGES = [*QualityTier.values, TEXT]
USAGE_LABELS = {**dict(QualityTier.choices), TEXT: "Text"}
GROUPS = tuple(PeriodGroup.values)
MAX_DAYS = 731
REFUSED_CODE = ProviderContentRefused.code
MICRO = Decimal("0.000001")
COST_DRIFT_DAYS = 30  # the window the AI models list checks for cost drift

METRICS = ["jobs", "refused", "failed", "images", "tokens", "credits", "cost_usd", "revenue_usd", "margin_usd",
           "margin_pct", "calls", "failed_calls", "p50_ms", "p95_ms"]
SUMMED = ["jobs", "refused", "failed", "images", "tokens", "credits", "cost_usd", "calls", "failed_calls"]
JOB_COUNTS: tuple[Literal["jobs", "refused", "failed"], ...] = ("jobs", "refused", "failed")
ONE_DAY = dt.timedelta(days=1)


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
        if self.start < dates.FIRST_DAY or self.end > dates.LAST_DAY:  # its weeks and next days must exist
            raise ValueError(dates.OUT_OF_RANGE)


@dataclass(frozen=True)
class Report:
    filter: ReportFilter
    usd_per_credit: Decimal | None
    periods: list[dt.date]
    rows: list[dict]       # one per (period, usage, model) with any activity, in period, usage, model order
    totals: dict
    drift: list[dict]      # see cost_drift
    closed_through: dt.date | None = None  # the rollups' last day, if any


def usage_report(*, filter: ReportFilter) -> Report:
    """The report for the filter: rows, totals and the cost drift of the models in it."""
    usd_per_credit = catalog_selectors.global_settings_get().usd_per_credit
    closed_through = closed_days_through()
    rolled, live = _split(filter, closed_through)
    tally = _Tally()
    if rolled:
        _add_rollups(tally, filter, rolled)
    if live:
        _add_live(tally, filter, live)
    catalog = {m.model_name: m for m in AIModelConfig.objects.all()}

    ordered = sorted(tally.rows.values(), key=lambda row: (row["period"], _usage_order(row["usage"]), row["model"]))
    recorded: dict[str, list] = {}
    for row in ordered:
        for name in (*SUMMED, "provider_cost", "provider_units"):
            row.setdefault(name, 0)
        row.setdefault("p50_ms", None)
        row.setdefault("p95_ms", None)
        row["provider"] = catalog[row["model"]].provider_id if row["model"] in catalog else ""
        if row["provider_units"]:
            model = recorded.setdefault(row["model"], [Decimal(0), 0])
            model[0] += row["provider_cost"]
            model[1] += row["provider_units"]
        _derive_money(row, usd_per_credit)

    totals = {name: sum((row[name] for row in ordered), Decimal(0) if name == "cost_usd" else 0) for name in SUMMED}
    for name in JOB_COUNTS:  # each job once (an article has an image row and a text row)
        totals[name] = sum(counts[name] for counts in tally.jobs.values())
    _derive_money(totals, usd_per_credit)
    return Report(filter=filter, usd_per_credit=usd_per_credit, periods=report_periods(filter), rows=ordered,
                  totals=totals, drift=_drift(recorded, catalog), closed_through=closed_through)


def closed_days_through() -> dt.date | None:
    """The last day rolled up: every day up to it is (closed days form a prefix)."""
    return ClosedPeriod.objects.filter(group=PeriodGroup.DAY).aggregate(last=Max("period"))["last"]


def live_tally(*, filter: ReportFilter, ranges: list[tuple[dt.date, dt.date]]) -> _Tally:
    """The report's figures computed from jobs and calls, for the days in `ranges` (first and
    last day, included) grouped by the filter's period: what the rollups store, too."""
    tally = _Tally()
    _add_live(tally, filter, ranges)
    return tally


class _Tally:
    """Rows being added up, keyed (period, usage, model), and each period's jobs counted once."""

    def __init__(self):
        self.rows: dict[tuple, dict] = {}
        self.jobs: dict[dt.date, dict] = {}

    def add(self, key: tuple, **values) -> None:
        row = self.rows.setdefault(key, {"period": key[0], "usage": key[1], "model": key[2]})
        for name, value in values.items():
            row[name] = row.get(name, 0) + (value or 0)

    def add_jobs(self, period: dt.date, **counts) -> None:
        totals = self.jobs.setdefault(period, dict.fromkeys(JOB_COUNTS, 0))
        for name in JOB_COUNTS:
            totals[name] += counts[name]


def _split(filter: ReportFilter, closed_through: dt.date | None
           ) -> tuple[tuple[dt.date, dt.date] | None, list[tuple[dt.date, dt.date]]]:
    """(the first and last rolled-up period of the range, or None; the days to compute live).
    Rolled up: closed days; for weeks, whole weeks of the range whose Sunday is closed."""
    start, end = filter.start, filter.end
    if closed_through is None or closed_through < start:
        return None, [(start, end)]
    last = min(end, closed_through)
    if filter.group == PeriodGroup.DAY:
        return (start, last), ([(last + ONE_DAY, end)] if last < end else [])
    first_monday = start + dt.timedelta(days=(7 - start.weekday()) % 7)
    last_monday = last - dt.timedelta(days=(last.weekday() - 6) % 7) - dt.timedelta(days=6)
    if last_monday < first_monday:
        return None, [(start, end)]
    live = [(start, first_monday - ONE_DAY)] if start < first_monday else []
    if last_monday + dt.timedelta(days=6) < end:
        live.append((last_monday + dt.timedelta(days=7), end))
    return (first_monday, last_monday), live


def _add_rollups(tally: _Tally, filter: ReportFilter, rolled: tuple[dt.date, dt.date]) -> None:
    rollups = UsageRollup.objects.filter(group=filter.group, period__gte=rolled[0], period__lte=rolled[1])
    rollups = rollups.filter(usage=filter.usage) if filter.usage else rollups
    for r in rollups.values():  # one per period and model: at most a few thousand in a year by day
        counts = {name: r[name] for name in JOB_COUNTS}
        if not r["usage"]:
            tally.add_jobs(r["period"], **counts)
            continue
        if filter.usage:
            tally.add_jobs(r["period"], **counts)
        tally.add((r["period"], r["usage"], r["model_name"]), **counts, images=r["images"], tokens=r["tokens"],
                  credits=r["credits"], calls=r["calls"], failed_calls=r["failed_calls"], cost_usd=r["cost_usd"],
                  provider_cost=r["provider_cost_usd"], provider_units=r["provider_units"])
        row = tally.rows[(r["period"], r["usage"], r["model_name"])]
        row["p50_ms"], row["p95_ms"] = r["p50_ms"], r["p95_ms"]


def _add_live(tally: _Tally, filter: ReportFilter, ranges: list[tuple[dt.date, dt.date]]) -> None:
    for r in _jobs(filter, ranges):  # one row per (period, kind, tier, image model, text model)
        counts = {name: r[name] for name in JOB_COUNTS}
        tally.add_jobs(r["period"], **counts)
        if r["image_model_name"] and filter.usage != TEXT:
            tally.add((r["period"], r["tier"], r["image_model_name"]), **counts)
        if r["text_model_name"] and filter.usage in (None, TEXT):
            tally.add((r["period"], TEXT, r["text_model_name"]), **counts, tokens=r["tokens"],
                      credits=r["text_credits"])
    for r in _calls(filter, ranges):  # one row per (period, usage, model)
        tally.add((r["period"], r["usage"], r["model_name"]), calls=r["calls"], failed_calls=r["failed_calls"],
                  cost_usd=r["cost"], images=r["delivered_images"], credits=r["image_credits"],
                  provider_cost=r["provider_cost"], provider_units=r["provider_units"])
    for key, (p50, p95) in _latency_percentiles(filter, ranges).items():
        row = tally.rows.setdefault(key, {"period": key[0], "usage": key[1], "model": key[2]})
        row["p50_ms"], row["p95_ms"] = p50, p95


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
            provider: [round(f / c, 4) if c else None for f, c in zip(failed[provider], counts, strict=True)]
            for provider, counts in sorted(calls.items())},
    }


# --- Cost drift: the providers' figures against the catalog's prices ---------------------------


def cost_drift(*, since: dt.datetime, until: dt.datetime | None = None) -> list[dict]:
    """For every model with costs the provider reported itself for jobs asked for between `since`
    and `until`: the recorded cost per unit (image) against the catalog's price, the drift in
    percent, and whether it is over CREDITGATE_COST_DRIFT_PERCENT (with at least
    CREDITGATE_COST_DRIFT_MIN_UNITS units behind it, so one odd call raises no flag)."""
    calls = ProviderCall.objects.filter(_PROVIDER_PRICED, job__created_at__gte=since)
    if until is not None:
        calls = calls.filter(job__created_at__lt=until)
    recorded = {r["model_name"]: [r["cost"], r["units"]] for r in calls.order_by().values("model_name")
                .annotate(cost=Sum("cost_usd"), units=Sum("units_delivered"))}
    return _drift(recorded, {m.model_name: m for m in AIModelConfig.objects.filter(model_name__in=list(recorded))})


def _drift(recorded: dict[str, list], catalog: dict[str, AIModelConfig]) -> list[dict]:
    threshold = Decimal(str(settings.CREDITGATE_COST_DRIFT_PERCENT))
    drift = []
    for name, (cost, units) in sorted(recorded.items()):  # one entry per model
        model = catalog.get(name)
        price = costs.catalog_usd_per_unit(model) if model else None
        per_unit = (cost / units).quantize(MICRO, ROUND_HALF_UP)
        pct = ((per_unit - price) / price * 100).quantize(Decimal("0.1"), ROUND_HALF_UP) if price else None
        drift.append({"model": name, "display_name": str(model) if model else name, "units": units,
                      "recorded_usd_per_unit": per_unit, "catalog_usd_per_unit": price, "drift_pct": pct,
                      "flagged": pct is not None and abs(pct) > threshold
                      and units >= settings.CREDITGATE_COST_DRIFT_MIN_UNITS})
    return drift


def models_cost_drifting(*, days: int = COST_DRIFT_DAYS) -> list[dict]:
    """The flagged entries of cost_drift over the last `days` days (the AI models list warns)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return [d for d in cost_drift(since=since) if d["flagged"]]


# --- The queries --------------------------------------------------------------------------------


class UTCDate(TruncDate):
    """The UTC day of a datetime. On SQLite, Django's TruncDate calls a Python function per row;
    Django stores aware datetimes there as UTC text, so SQLite's own date() gives the same day."""

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.lhs)
        return f"date({sql})", params


class UTCWeek(TruncWeek):
    """The Monday of a datetime's UTC week (as PostgreSQL's date_trunc('week')); natively on SQLite
    too: back six days, then forward to the next Monday (or stay on it)."""

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.lhs)
        return f"date({sql}, '-6 days', 'weekday 1')", params


def _period(field: str, filter: ReportFilter):
    if filter.group == "week":
        return UTCWeek(field, tzinfo=dt.UTC, output_field=DateField())
    return UTCDate(field, tzinfo=dt.UTC)


_REFUSED = Q(status=JobStatus.FAILED, error_code=REFUSED_CODE)
_FAILED = Q(status=JobStatus.FAILED) & ~Q(error_code=REFUSED_CODE)
_PROVIDER_PRICED = Q(cost_source=CostSource.PROVIDER, units_delivered__gt=0)


def _days(field: str, ranges: list[tuple[dt.date, dt.date]]) -> Q:
    """`field` within any of the ranges of UTC days (first and last day included)."""
    q = Q()
    for first, last in ranges:
        q |= Q(**{f"{field}__gte": utc_midnight(first), f"{field}__lt": utc_midnight(last + ONE_DAY)})
    return q


def utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _jobs(filter: ReportFilter, ranges: list[tuple[dt.date, dt.date]]):
    """Jobs grouped by period, kind, tier and their models: counts, and a text's tokens and
    credits (the job's charge less its images' at the rate it was held at)."""
    jobs = Job.objects.filter(_days("created_at", ranges)).order_by()
    if filter.usage == TEXT:
        jobs = jobs.exclude(text_model_name="")
    elif filter.usage:
        jobs = jobs.filter(tier=filter.usage).exclude(image_model_name="")
    delivered = Subquery(JobImage.objects.filter(job=OuterRef("pk")).order_by().values("job")
                         .annotate(n=Count("pk")).values("n"), output_field=IntegerField())
    text_credits = Case(
        When(text_model_name="", then=Value(0)),
        When(kind=JobKind.TEXT, then=F("credits_charged")),
        # An article (CASE evaluates this only for one): its images are counted where they are.
        default=F("credits_charged") - Coalesce(F("credits_per_image"), 0) * Coalesce(delivered, 0),
        output_field=IntegerField())
    return (jobs.annotate(period=_period("created_at", filter))
            .values("period", "kind", "tier", "image_model_name", "text_model_name")
            .annotate(jobs=Count("pk"), refused=Count("pk", filter=_REFUSED), failed=Count("pk", filter=_FAILED),
                      tokens=Coalesce(Sum("total_tokens"), 0), text_credits=Coalesce(Sum(text_credits), 0)))


class _CallGroup(TypedDict):
    period: dt.date
    usage: str


def _calls_in(filter: ReportFilter, ranges: list[tuple[dt.date, dt.date]]
              ) -> QuerySet[WithAnnotations[ProviderCall, _CallGroup]]:
    usage = Case(When(kind=TEXT, then=Value(TEXT)), default=F("job__tier"), output_field=CharField())
    calls = (ProviderCall.objects.filter(_days("job__created_at", ranges))
             .order_by().annotate(period=_period("job__created_at", filter), usage=usage))
    if filter.usage:
        calls = calls.filter(usage=filter.usage)
    return calls


def _calls(filter: ReportFilter, ranges: list[tuple[dt.date, dt.date]]):
    """Provider requests grouped by period, usage and model: counts, costs, and the images they
    delivered (a try's units are the images stored from it) at the per-image rate of their job."""
    usd = DecimalField(max_digits=16, decimal_places=6)
    image = Q(kind="image")
    return (_calls_in(filter, ranges).values("period", "usage", "model_name")
            .annotate(calls=Count("pk"),
                      failed_calls=Count("pk", filter=Q(status__in=[CallStatus.FAILED, CallStatus.LOST])),
                      cost=Coalesce(Sum("cost_usd"), Value(Decimal(0)), output_field=usd),
                      # not "images": ProviderCall.images is the reverse relation to the stored images
                      delivered_images=Coalesce(Sum("units_delivered", filter=image), 0),
                      image_credits=Coalesce(Sum(F("units_delivered") * F("job__credits_per_image"), filter=image), 0),
                      provider_cost=Coalesce(Sum("cost_usd", filter=_PROVIDER_PRICED), Value(Decimal(0)),
                                             output_field=usd),
                      provider_units=Coalesce(Sum("units_delivered", filter=_PROVIDER_PRICED), 0)))


def _latency_percentiles(filter: ReportFilter, ranges: list[tuple[dt.date, dt.date]]
                         ) -> dict[tuple, tuple[int | None, int | None]]:
    """{(period, usage, model): (p50, p95)} of the latency of the requests that delivered: the
    values ranked 50% and 95% of the way (nearest rank: rank = ceil(p × n), in integer
    arithmetic) in each group, one row per group.

    Window functions (ROW_NUMBER, COUNT OVER) run on SQLite and PostgreSQL alike, so this is one
    implementation for both; PostgreSQL's percentile_disc would be shorter but has no SQLite twin.
    The ORM selects and filters the calls (its SQL is embedded); the ranking around it is written
    out because the ORM cannot group over window functions.
    """
    inner = (_calls_in(filter, ranges).filter(latency_ms__isnull=False, units_delivered__gt=0)
             .values("period", "usage", "model_name", "latency_ms"))
    sql, params = inner.query.sql_with_params()
    ranked = ("SELECT period, usage, model_name, latency_ms, "
              "ROW_NUMBER() OVER (PARTITION BY period, usage, model_name ORDER BY latency_ms) AS rank, "
              "COUNT(*) OVER (PARTITION BY period, usage, model_name) AS n "
              f"FROM ({sql}) calls")
    query = ("SELECT period, usage, model_name, "
             "MAX(CASE WHEN rank = (n * 50 + 99) / 100 THEN latency_ms END), "
             "MAX(CASE WHEN rank = (n * 95 + 99) / 100 THEN latency_ms END) "
             f"FROM ({ranked}) ranked GROUP BY period, usage, model_name")
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()  # one per group
    return {(_as_date(period), usage, model): (p50, p95) for period, usage, model, p50, p95 in rows}


def _as_date(value) -> dt.date:
    """A period as the raw SQL returns it: text on SQLite, a date or a midnight timestamp on PostgreSQL."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


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
