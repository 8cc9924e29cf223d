"""Usage and margin report benchmark: a year of synthetic traffic (about 200,000 provider calls,
178,000 jobs and 380,000 images), and the report's time against baselines measured in the same run
on the same tables:

- COUNT: `SELECT COUNT(*)` over the provider calls (what the issue suggests as the floor);
- one pass: the cheapest aggregate a live report over the year must make at least, the provider
  cost per day (calls joined to their jobs, grouped by the job's day).

Each report shape (a year by day, a year by week, the last 30 days, a year of one tier) is timed
twice: computed live from the jobs (no rollups, as on a fresh install), and as deployed, with the
closed days rolled up (`manage.py roll_up_usage`, which it also times), so only today is live. It
prints the median of a few rounds, the ratios, and the number of SQL queries (fixed: the report
aggregates in the database).

    .venv/bin/python bench/bench_report.py [--calls 200000] [--rounds 3] [--database sqlite|postgres]

SQLite: a fresh database in a temporary directory. PostgreSQL: DATABASE_URL, or
postgres://postgres@127.0.0.1:5432/cg_bench_report, which it drops and creates afresh (so never
point it at a database you keep), then ANALYZEs after seeding, as autovacuum would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/cg_bench_report"
SEED = 16


def setup(database: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    os.environ.setdefault("CREDITGATE_ENCRYPTION_KEYS", "Zm9yLWJlbmNobWFya3Mtb25seS0zMi1ieXRlcy1rZXk=")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DEBUG"] = "False"  # as deployed: DEBUG keeps every query in memory
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["CREDITGATE_VAR_DIR"] = tempfile.mkdtemp(prefix="creditgate-bench-report-")
    if database == "postgres":
        url = os.environ.get("DATABASE_URL") or DEFAULT_PG_URL
        fresh_database(url)
        os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fresh_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- A year of synthetic traffic -----------------------------------------------------------------

# (share of jobs, kind, tier, image counts to pick from, typical latency ms) - bench data, not code.
MIX = [(0.42, "image", "basic", [1, 1, 2, 4, 8], 3000), (0.22, "image", "quality", [1, 2, 4], 12000),
       (0.10, "image", "premium", [1, 1, 2], 20000), (0.20, "text", "", [0], 4000),
       (0.06, "article", "basic", [2, 4], 3000)]
TEXT_LATENCY = 4000


def seed(*, calls: int, days: int = 365, end: dt.date | None = None, users: int = 20, seed: int = SEED,
         progress=print) -> dict:
    """Jobs, their images and provider calls over `days` days up to `end` (default yesterday),
    about `calls` calls in all, as settled jobs leave them (with retries, refusals, failures and
    partial deliveries). Written with bulk inserts a few days at a time. Returns counts."""
    from django.contrib.auth import get_user_model

    from creditgate.catalog.models import AIModelConfig
    from creditgate.credits import services as credits_services
    from creditgate.generation.models import CostSource, Job, JobImage, ProviderCall

    rng = random.Random(seed)
    end = end or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    # The catalog's tiers and default text model (servable or not: no provider is called here).
    # By tier name (quality_tier_id): keyed by the ImageTier rows, models.get("basic") found nothing.
    models = {m.quality_tier_id: m for m in AIModelConfig.objects.filter(model_type="image", is_active=True,
                                                                          quality_tier__isnull=False)}
    text_model = AIModelConfig.objects.get(model_type="text", is_default=True)
    text_rate = text_model.tokens_per_credit
    assert text_rate is not None, "the default text model has a price"
    owners = []
    for n in range(users):
        user = get_user_model().objects.create_user(username=f"bench-{seed}-{n}")
        owners.append((user, credits_services.account_for_user(user=user)))
    calls_per_job = 1.12
    per_day = calls / days / calls_per_job
    totals = {"jobs": 0, "calls": 0, "images": 0}
    batch: dict[str, list] = {"jobs": [], "calls": [], "images": []}

    def call(job, kind, model, n, *, ok, try_number, first, delivered, latency, cost, source, at, error=""):
        row = ProviderCall(id=uuid.uuid4(), job_id=job.id, attempt=1, first_try_id=first, try_number=try_number,
                           kind=kind, provider_id=model.provider_id, model_name=model.model_name, units_requested=n,
                           units_delivered=delivered, status="succeeded" if ok else "failed",
                           error_code=error, error_class="ProviderServerError" if error else "",
                           latency_ms=latency, cost_usd=cost, cost_source=source, started_at=at, finished_at=at)
        batch["calls"].append(row)
        return row

    def image_calls(job, model, n, outcome, base_latency, at):
        """The tries of one image call: maybe a failed first try, then the answer."""
        first = None
        tries = 3 if outcome == "failed" else (2 if rng.random() < 0.07 else 1)
        for t in range(1, tries + 1):
            last = t == tries and outcome != "failed"
            if not last:
                row = call(job, "image", model, n, ok=False, try_number=t, first=first, delivered=0,
                           latency=rng.randint(80, 600), cost=Decimal(0), source=CostSource.NONE, at=at,
                           error="content_refused" if outcome == "refused" else "provider_unavailable")
                if outcome == "refused":
                    return row, 0
            else:
                delivered = n if outcome == "succeeded" else n // 2
                provider_cost = model.provider_id == "runware"
                cost = (model.usd_per_image or Decimal(0)) * delivered
                row = call(job, "image", model, n, ok=True, try_number=t, first=first, delivered=delivered,
                           latency=int(rng.lognormvariate(math.log(base_latency), 0.35)),
                           cost=cost, source=CostSource.PROVIDER if provider_cost else CostSource.CATALOG, at=at)
                return row, delivered
            first = first or row.id
        return None, 0

    def text_call(job, tokens, at):
        prompt = tokens * 3 // 10
        cost = ((prompt * text_model.input_usd_per_1m_tokens
                 + (tokens - prompt) * text_model.output_usd_per_1m_tokens) / 1_000_000).quantize(Decimal("0.000001"))
        call(job, "text", text_model, 1, ok=True, try_number=1, first=None, delivered=1,
             latency=int(rng.lognormvariate(math.log(TEXT_LATENCY), 0.4)), cost=cost, source=CostSource.USAGE, at=at)

    def flush():
        Job.objects.bulk_create(batch["jobs"], batch_size=2000)
        ProviderCall.objects.bulk_create(sorted(batch["calls"], key=lambda c: c.try_number), batch_size=2000)
        JobImage.objects.bulk_create(batch["images"], batch_size=2000)
        for key in batch:
            totals[key] += len(batch[key])
            batch[key].clear()

    for day_index in range(days):
        day = end - dt.timedelta(days=days - 1 - day_index)
        growth = 0.6 + 0.8 * day_index / days          # traffic grows over the year
        weekday = 0.75 if day.weekday() >= 5 else 1.1  # quieter weekends
        for _ in range(max(1, int(rng.gauss(per_day * growth * weekday, per_day * 0.05)))):
            _share, kind, tier, counts, latency = rng.choices(MIX, weights=[m[0] for m in MIX])[0]
            at = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(86400))
            user, account = rng.choice(owners)
            roll = rng.random()
            outcome = ("refused" if roll < 0.01 else "failed" if roll < 0.02 else "partial" if roll < 0.03
                       else "succeeded")
            n = rng.choice(counts)
            model = models.get(tier)
            tokens = rng.randint(200, 3000) if kind in ("text", "article") else None
            job = Job(id=uuid.uuid4(), account=account, user=user, kind=kind, prompt="synthetic", tier=tier,
                      image_count=n, idempotency_key=uuid.uuid4().hex, request_fingerprint="bench",
                      image_model_name=model.model_name if model else "",
                      image_provider_id=model.provider_id if model else "",
                      credits_per_image=model.credits_per_image if model else None,
                      text_model_name=text_model.model_name if tokens else "",
                      text_provider_id=text_model.provider_id if tokens else "",
                      tokens_per_credit=text_model.tokens_per_credit if tokens else None,
                      created_at=at, run_after=at, started_at=at, finished_at=at + dt.timedelta(seconds=20))
            delivered, delivering = 0, None
            if model:
                delivering, delivered = image_calls(job, model, n, outcome if kind == "image" else "succeeded",
                                                    latency, at)
            text_tokens = None
            if tokens and not (kind == "text" and outcome in ("refused", "failed")):
                text_call(job, tokens, at)
                text_tokens = tokens
            elif tokens:
                call(job, "text", text_model, 1, ok=False, try_number=1, first=None, delivered=0, latency=150,
                     cost=Decimal(0), source=CostSource.NONE, at=at,
                     error="content_refused" if outcome == "refused" else "provider_unavailable")
            charge = delivered * (job.credits_per_image or 0) + (-(-text_tokens // text_rate)
                                                                 if text_tokens else 0)
            wanted = n if model else 0
            job.total_tokens = text_tokens
            job.credits_held = max(charge, 1) + 50
            job.credits_charged = charge
            complete = delivered >= wanted and (text_tokens is not None or not tokens)
            job.status = "succeeded" if complete else ("partial" if delivered or text_tokens else "failed")
            job.error_code = ("" if complete else "partial" if job.status == "partial" else
                              "content_refused" if outcome == "refused" else "provider_unavailable")
            batch["jobs"].append(job)
            for index in range(delivered):
                assert model is not None and delivering is not None  # only a job with a model delivers
                batch["images"].append(JobImage(job_id=job.id, call_id=delivering.id, model_name=model.model_name,
                                                index=index, file=f"jobs/{job.id}/{index}.png"))
        if day_index % 10 == 9 or day_index == days - 1:
            flush()
            if progress and day_index % 60 == 59:
                progress(f"  seeded {day_index + 1} days: {totals['calls']:,} calls")
    return totals


# --- The measurement -------------------------------------------------------------------------------


def timed(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    setup(args.database)
    from django.db import connection
    from django.db.models import Sum
    from django.test.utils import CaptureQueriesContext

    from creditgate.catalog.models import GlobalIntegrationSettings
    from creditgate.generation.models import ProviderCall
    from creditgate.reports.selectors import ReportFilter, UTCDate, chart_series, usage_report
    from creditgate.reports.services import usage_rollups_refresh

    GlobalIntegrationSettings.objects.update_or_create(id=1, defaults={"usd_per_credit": Decimal("0.01")})
    started = time.perf_counter()
    print(f"database: {connection.vendor}; seeding a year of traffic (about {args.calls:,} provider calls) ...")
    counts = seed(calls=args.calls)
    print(f"seeded {counts['jobs']:,} jobs, {counts['calls']:,} calls, {counts['images']:,} images "
          f"in {time.perf_counter() - started:.0f}s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    year_start = end - dt.timedelta(days=364)
    since = dt.datetime.combine(year_start, dt.time(), tzinfo=dt.UTC)

    def count():
        return ProviderCall.objects.count()

    def one_pass():
        return list(ProviderCall.objects.filter(job__created_at__gte=since).order_by()
                    .values(day=UTCDate("job__created_at", tzinfo=dt.UTC)).annotate(cost=Sum("cost_usd")))

    base_count = timed(count, args.rounds + 2)
    base_pass = timed(one_pass, args.rounds)
    print(f"baselines: COUNT(*) over the calls {base_count * 1000:.1f} ms; "
          f"one pass (cost per day over the year) {base_pass * 1000:.0f} ms")
    today = end + dt.timedelta(days=1)
    shapes = [("a year by day", ReportFilter(start=year_start, end=end)),
              ("a year by week", ReportFilter(start=year_start, end=end, group="week")),
              ("the last 30 days by day", ReportFilter(start=end - dt.timedelta(days=29), end=end)),
              ("a year of premium by week", ReportFilter(start=year_start, end=end, group="week", usage="premium")),
              ("a year to today by week", ReportFilter(start=year_start, end=today, group="week"))]

    def measure(title: str) -> None:
        print(f"{title}\n{'report':<28} {'median':>9} {'x COUNT':>9} {'x one pass':>11} {'queries':>8}")
        for name, report_filter in shapes:
            def run(report_filter=report_filter):
                chart_series(usage_report(filter=report_filter))

            with CaptureQueriesContext(connection) as queries:
                run()
            seconds = timed(run, args.rounds)
            print(f"{name:<28} {seconds * 1000:>7.0f}ms {seconds / base_count:>9.1f} {seconds / base_pass:>11.2f} "
                  f"{len(queries.captured_queries):>8}")

    measure("live (no rollups):")
    started = time.perf_counter()
    days = 0
    while done := usage_rollups_refresh(max_days=31):
        days += done
    rollup_seconds = time.perf_counter() - started
    print(f"rolled up {days} days in {rollup_seconds:.1f}s ({rollup_seconds / max(days, 1) * 1000:.0f} ms a day, "
          f"{rollup_seconds / max(days, 1) / base_pass:.2f} x one pass)")
    measure("with the closed days rolled up (only today live):")


if __name__ == "__main__":
    main()
