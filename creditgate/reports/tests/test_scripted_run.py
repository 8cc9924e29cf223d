"""A scripted run across the three tiers and text against the sandbox, with provider failures and
retries: every request the providers saw is a recorded call (count, outcome, request id, as the
sandbox logged them), each cost comes from the provider's figure where it gave one and from the
catalog otherwise, and the report's totals equal the ledger's captures and the calls' costs."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db.models import F, Sum

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings
from creditgate.core import reconciliation, runtime
from creditgate.credits import selectors as credits_selectors
from creditgate.credits.models import EntryKind, LedgerEntry
from creditgate.generation import intake
from creditgate.generation.models import CallStatus, CostSource, Job, JobImage, ProviderCall
from creditgate.generation.tests.conftest import make_user
from creditgate.providers import runware
from creditgate.reports import selectors as report_selectors
from creditgate.reports.selectors import ReportFilter

MILLION = Decimal(1_000_000)


@pytest.fixture
def env(transactional_db, seeded_catalog, sandbox, settings):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 2
    # Catalog prices that differ from what the sandbox bills, so a cost's source shows in its value.
    AIModelConfig.objects.filter(model_type="image").update(usd_per_image=F("usd_per_image") + Decimal("0.0010"))
    GlobalIntegrationSettings.objects.update_or_create(id=1, defaults={"usd_per_credit": Decimal("0.012")})
    yield sandbox
    runtime.wait_idle()


def run(sandbox, make, *, fail=None, **knobs) -> Job:
    """One job, alone, so the sandbox's scripted failures hit its requests and no other's."""
    if knobs:
        sandbox.configure(**knobs)
    if fail:
        sandbox.fail_next(*fail)
    job, _ = make()
    runtime.wait_idle(timeout=60)
    job.refresh_from_db()
    assert job.is_final, job.status
    return job


def tries(job: Job) -> list[tuple]:
    return [(c.kind, c.try_number, c.status, c.error_class, c.provider_status)
            for c in job.calls.order_by("kind", "started_at", "try_number")]


def test_a_scripted_run_is_recorded_try_by_try_and_adds_up(env):
    sandbox = env
    user = make_user(credits=2000)
    images = lambda tier, n: lambda: intake.job_create_images(user=user, prompt=f"{tier} foxes", tier=tier,  # noqa: E731
                                                                count=n)
    text = lambda: intake.job_create_text(user=user, prompt="Write about ledgers.", max_tokens=200)  # noqa: E731

    # --- Scripted failures, one job at a time --------------------------------------------------
    basic = run(sandbox, images("basic", 2), fail=(2, "server_error"))
    assert tries(basic) == [("image", 1, "failed", "ProviderServerError", 500),
                            ("image", 2, "failed", "ProviderServerError", 500),
                            ("image", 3, "succeeded", "", None)]
    quality = run(sandbox, images("quality", 2), fail=(1, "rate_limit"))
    assert tries(quality) == [("image", 1, "failed", "ProviderRateLimited", 429), ("image", 2, "succeeded", "", None)]
    premium_failed = run(sandbox, images("premium", 1), fail=(3, "server_error"))  # retries exhausted
    assert premium_failed.status == "failed" and premium_failed.credits_charged == 0
    assert [t[2] for t in tries(premium_failed)] == ["failed"] * 3
    text_retried = run(sandbox, text, fail=(1, "server_error"))
    assert tries(text_retried) == [("text", 1, "failed", "ProviderServerError", 500),
                                   ("text", 2, "succeeded", "", None)]
    refused = run(sandbox, text, fail=(1, "content_refusal"))  # a refusal is never retried
    assert refused.error_code == "content_refused"
    assert tries(refused) == [("text", 1, "failed", "ProviderContentRefused", 400)]
    quota = run(sandbox, images("quality", 1), fail=(1, "quota"))  # nor is an exhausted quota: the tier's backup serves
    backup = catalog_selectors.routing_get().image_models_ordered["quality"][1]
    assert tries(quota) == [("image", 1, "failed", "ProviderQuotaExhausted", 429), ("image", 1, "succeeded", "", None)]
    assert quota.calls.get(status="succeeded").model_name == backup.model_name and quota.status == "succeeded"
    no_cost = run(sandbox, images("basic", 1), runware_cost=False)  # Runware without its cost: the catalog's
    sandbox.configure(runware_cost=True)
    article = run(sandbox, lambda: intake.job_create_article(user=user, prompt="Foxes", tier="premium",
                                                             image_count=2, max_tokens=150))
    assert article.status == "succeeded"

    # --- Random failures ---------------------------------------------------------------------
    random.seed(16)
    for kind in ("server_error", "rate_limit"):
        sandbox.configure(error_rate=0.4, error_kind=kind)
        for make in (images("basic", 1), images("quality", 1), images("premium", 1), text, images("basic", 3)):
            run(sandbox, make)
    sandbox.configure(error_rate=0.0)
    random.seed()

    calls = ProviderCall.objects.select_related("job")
    assert not calls.filter(status=CallStatus.SENT).exists()
    assert calls.filter(try_number__gt=1).count() >= 8  # retries happened, each a row of its own
    assert calls.filter(status=CallStatus.FAILED).count() >= 10

    # --- The recorded calls are the requests the sandbox saw -------------------------------------
    stats = sandbox.stats
    openai_images = calls.filter(provider_id="openai", kind="image")
    openai_text = calls.filter(provider_id="openai", kind="text")
    runware_images = calls.filter(provider_id="runware")
    assert openai_images.count() == stats["openai.images.generations"]
    assert openai_text.count() == stats["openai.chat.completions"]
    assert runware_images.count() == stats["runware.imageInference"] == stats["runware"]
    assert "runware.getResponse" not in stats  # nothing was lost, nothing looked up

    def recorded(rows) -> Counter:
        return Counter((c.provider_request_id, c.provider_status or 200) for c in rows)

    for route, rows in (("openai.images.generations", openai_images), ("openai.chat.completions", openai_text)):
        answers = sandbox.answers(route)
        assert all(a["request_id"] for a in answers)
        assert recorded(rows) == Counter((a["request_id"], a["status"]) for a in answers), route
    tasks = sandbox.requests("runware.imageInference")
    assert recorded(runware_images) == Counter(
        (task["taskUUID"], answer["status"]) for task, answer in zip(tasks, sandbox.answers("runware"), strict=True))
    for call in runware_images:  # what a later run would look the tries up by
        first = call.first_try or call
        assert first.task_id == str(first.pk)
        assert call.task_id == runware._task_uuids(first.task_id, 2)[call.try_number - 1] == call.provider_request_id
    for call in calls:
        assert (call.status == CallStatus.FAILED) == bool(call.error_code) == bool(call.error_class)
        assert call.latency_ms is not None and call.finished_at is not None
        if call.first_try:  # retries in the order they were sent, after the first try
            assert call.first_try.started_at < call.started_at
            assert call.try_number == 2 + call.first_try.retries.filter(started_at__lt=call.started_at).count()
        else:
            assert call.try_number == 1

    # --- Costs: the provider's figure where it gave one, the catalog's otherwise -------------------
    prices = {m.model_name: m for m in AIModelConfig.objects.all()}
    for call in calls:
        model = prices[call.model_name]
        if call.units_delivered == 0:
            assert (call.cost_usd, call.cost_source) == (0, CostSource.NONE), call.pk
        elif call.provider_id == "runware" and call.job_id != no_cost.pk:
            assert model.usd_per_image is not None
            billed = sum(Decimal(str(item["cost"])) for item in sandbox.state.task(call.task_id)["data"])
            assert (call.cost_usd, call.cost_source) == (billed, CostSource.PROVIDER)
            assert billed != model.usd_per_image * call.units_delivered
        elif call.kind == "image":
            assert model.usd_per_image is not None
            assert (call.cost_usd, call.cost_source) == (model.usd_per_image * call.units_delivered,
                                                         CostSource.CATALOG)
        else:  # OpenAI reports tokens: priced at the catalog's per-1M prices
            assert call.prompt_tokens is not None and call.completion_tokens is not None
            assert model.input_usd_per_1m_tokens is not None and model.output_usd_per_1m_tokens is not None
            usd = (call.prompt_tokens * model.input_usd_per_1m_tokens
                   + call.completion_tokens * model.output_usd_per_1m_tokens) / MILLION
            assert call.cost_source == CostSource.USAGE
            assert call.cost_usd == usd.quantize(Decimal("0.000001"), ROUND_HALF_UP)
            assert call.finish_reason
    assert no_cost.calls.get().cost_source == CostSource.CATALOG

    # --- The report's totals equal the ledger's captures and the calls' costs -----------------------
    assert credits_selectors.ledger_check() == [] and reconciliation.reconciliation_audit() == []
    today = dt.datetime.now(dt.UTC).date()
    report = report_selectors.usage_report(filter=ReportFilter(start=today, end=today))
    captured = -LedgerEntry.objects.filter(kind=EntryKind.CAPTURE).aggregate(s=Sum("amount"))["s"]
    assert report.totals["credits"] == captured == Job.objects.aggregate(s=Sum("credits_charged"))["s"] > 0
    assert report.totals["cost_usd"] == ProviderCall.objects.aggregate(s=Sum("cost_usd"))["s"] > 0
    assert report.totals["revenue_usd"] == captured * Decimal("0.012")
    assert report.totals["jobs"] == Job.objects.count()
    assert report.totals["refused"] == 1
    assert report.totals["calls"] == ProviderCall.objects.count() == sum(
        stats[route] for route in ("openai.images.generations", "openai.chat.completions", "runware"))
    assert report.totals["failed_calls"] == ProviderCall.objects.filter(status=CallStatus.FAILED).count()
    for tier in ("basic", "quality", "premium"):
        assert sum(r["images"] for r in report.rows if r["usage"] == tier) == JobImage.objects.filter(
            job__tier=tier).count()
    assert sum(r["tokens"] for r in report.rows) == Job.objects.aggregate(s=Sum("total_tokens"))["s"]
