"""The business metrics are counted where the money moves, so after a run with provider failures
they equal what the ledger, the jobs and the provider calls tables say."""

import pytest
from django.db.models import Count, Sum

from creditgate.core import metrics, runtime
from creditgate.core.errors import InsufficientCredits
from creditgate.credits.models import EntryKind, Hold, LedgerEntry
from creditgate.generation import intake
from creditgate.generation.models import Job, ProviderCall
from creditgate.generation.tests.conftest import make_user

pytestmark = pytest.mark.usefixtures("gen_env")


def counter_values() -> dict:
    """Every sample of the business counters, by (metric, labels)."""
    values = {}
    for metric in (metrics.holds, metrics.credits_charged, metrics.provider_calls, metrics.jobs_finished):
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def delta(before: dict, after: dict, name: str, **labels) -> float:
    """The change of `name` summed over the samples whose labels include `labels`."""
    total = 0.0
    for (sample, sample_labels), value in after.items():
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            total += value - before.get((sample, sample_labels), 0.0)
    return total


def test_counters_equal_the_ledger_and_the_jobs_after_a_run_with_failures(sandbox, settings):
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    before = counter_values()
    user = make_user(credits=300)
    sandbox.fail_next(2, "server_error", provider="openai")  # the first two OpenAI calls fail
    sandbox.fail_next(1, "content_refusal", provider="runware", after=1)
    for tier, count in [("basic", 2), ("quality", 2), ("premium", 1), ("basic", 3), ("quality", 1)]:
        intake.job_create_images(user=user, prompt=f"{tier} fox", tier=tier, count=count)
    intake.job_create_text(user=user, prompt="Write about ledgers.", max_tokens=100)
    with pytest.raises(InsufficientCredits):  # a refused hold is counted too
        intake.job_create_images(user=make_user("bob", credits=10), prompt="too much", tier="premium", count=1)
    runtime.wait_idle()
    after = counter_values()

    captured = -(LedgerEntry.objects.filter(kind=EntryKind.CAPTURE).aggregate(s=Sum("amount"))["s"] or 0)
    assert delta(before, after, "creditgate_credits_charged_total") == captured > 0
    for tier in ("basic", "quality", "premium"):
        charged = Job.objects.filter(tier=tier).aggregate(s=Sum("credits_charged"))["s"] or 0
        assert delta(before, after, "creditgate_credits_charged_total", tier=tier) == charged
    assert delta(before, after, "creditgate_holds_total", outcome="placed") == Hold.objects.count()
    assert delta(before, after, "creditgate_holds_total", outcome="refused") == 1
    for state in ("captured", "released"):
        assert delta(before, after, "creditgate_holds_total", outcome=state) == Hold.objects.filter(state=state).count()
    for row in Job.objects.values("kind", "status").annotate(n=Count("pk")):
        finished = delta(before, after, "creditgate_jobs_finished_total", kind=row["kind"], outcome=row["status"])
        assert finished == row["n"]
    assert delta(before, after, "creditgate_provider_calls_total") == ProviderCall.objects.count()
    assert delta(before, after, "creditgate_provider_calls_total", outcome="ok") == (
        ProviderCall.objects.filter(status__in=["succeeded", "partial"]).count())
    assert delta(before, after, "creditgate_provider_calls_total", outcome="refused") == 1
    assert delta(before, after, "creditgate_provider_calls_total", provider="openai", outcome="server_error") == 2
