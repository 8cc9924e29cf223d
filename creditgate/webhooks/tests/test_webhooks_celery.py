"""Webhooks on a real Celery worker (PostgreSQL + Redis, as .ci/run provides): the delivery and its
retries with backoff are Celery tasks (countdowns), with the same event id on every attempt."""

from __future__ import annotations

import time

import pytest

from creditgate.generation import intake
from creditgate.generation.tests.test_crash_points import CeleryWorker, celery_env  # noqa: F401 - a fixture
from creditgate.webhooks import services
from creditgate.webhooks.models import DeliveryStatus, WebhookDelivery

from .conftest import member_of, readme_verify

pytestmark = [pytest.mark.postgres, pytest.mark.celery]


def test_a_celery_worker_delivers_and_retries_with_the_same_event_id(celery_env, sandbox, receiver, owner,  # noqa: F811
                                                                      settings, monkeypatch, tmp_path):
    # The worker process reads its settings from the environment.
    monkeypatch.setenv("CREDITGATE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("CREDITGATE_WEBHOOK_RETRY_BASE_SECONDS", "0.3")
    settings.CREDITGATE_JOBS_BACKEND = "celery"
    worker = CeleryWorker(sandbox, tmp_path / "worker.log")
    celery_env.append(worker)
    endpoint, secret = services.endpoint_create(actor=owner, url=receiver.url)
    receiver.plan = [500, 502, 500]
    job, _ = intake.job_create_images(user=member_of(owner, "writer"), prompt="foxes", tier="basic",
                                                   count=1)
    requests = receiver.wait_for(4, timeout=60)
    deadline = time.monotonic() + 20
    while WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() < 1:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.1)
    assert {r["headers"]["webhook-id"] for r in requests} == {services.job_event_id(job.pk)}
    verify = readme_verify()
    assert all(verify(secret, r["headers"], r["body"]) for r in requests)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.endpoint_id) == (4, endpoint.pk)
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500, 502, 500, 200]
