"""With providers failing 30% of the time, every credit is still accounted for."""

import math

import pytest

from creditgate.catalog.models import AIModelConfig
from creditgate.core import runtime
from creditgate.credits import selectors as credits_selectors
from creditgate.generation import intake
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user

pytestmark = pytest.mark.usefixtures("gen_env")


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "content_refusal", "quota", "partial"])
def test_thirty_percent_errors_never_break_the_ledger(sandbox, kind):
    sandbox.configure(error_rate=0.3, error_kind=kind)
    user = make_user(credits=1000)
    requests = [("basic", 8), ("quality", 8), ("premium", 3), ("basic", 1), ("quality", 2), ("premium", 1)]
    for tier, count in requests:
        intake.job_create_images(user=user, prompt=f"{tier} {count}", tier=tier, count=count)
    intake.job_create_text(user=user, prompt="Write about ledgers.", max_tokens=300)
    intake.job_create_article(user=user, prompt="Foxes", tier="basic", image_count=2, max_tokens=200)
    runtime.wait_idle(timeout=120)

    assert credits_selectors.ledger_check() == []
    jobs = list(Job.objects.all())
    assert all(job.is_final for job in jobs), [(j.kind, j.status) for j in jobs]
    text_rate = AIModelConfig.objects.get(model_type="text", is_default=True).tokens_per_credit
    assert text_rate is not None
    for job in jobs:
        expected = job.images.count() * (job.credits_per_image or 0)
        if job.total_tokens is not None:
            expected += math.ceil(job.total_tokens / text_rate)
        assert job.credits_charged == expected, (job.kind, job.status, job.error_message)
        if job.status == "failed":
            assert job.credits_charged == 0
    spent = sum(job.credits_charged for job in jobs)
    assert balance(user) == {"balance": 1000 - spent, "held": 0, "available": 1000 - spent}
