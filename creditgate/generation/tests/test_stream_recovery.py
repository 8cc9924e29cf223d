"""A streamed job whose process died (generation.streams): the sweep settles it from its last
checkpoint, never runs it again, and charges no more than what was produced until then."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.utils import timezone

from creditgate.core import reconciliation
from creditgate.generation import charging, intake, services
from creditgate.generation.models import Job, JobStatus
from creditgate.generation.tests.conftest import START_CREDITS, balance, make_user

MESSAGES = [{"role": "user", "content": "Tell me about lighthouses."}]


@pytest.fixture
def streamed(db, seeded_catalog):
    user = make_user()
    job, created = intake.job_create_chat(
        user=user, body={"model": "default", "messages": MESSAGES, "stream": True},
        checked={"messages": MESSAGES, "prompt": "Tell me about lighthouses.", "max_tokens": 200, "stream": True,
                 "temperature": None})
    assert created and job.status == JobStatus.RUNNING and job.streamed
    return user, job


def _process_died(job: Job, **checkpoint) -> None:
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1), **checkpoint)


def test_the_sweep_charges_a_dead_stream_for_its_last_checkpoint(streamed):
    user, job = streamed
    _process_died(job, stream_tokens=130, prompt_tokens=12, text="Lighthouses stand where")
    assert services.jobs_sweep().settled == 1
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.PARTIAL, "stream_interrupted")
    assert (job.total_tokens, job.completion_tokens, job.text) == (130, 118, "Lighthouses stand where")
    assert job.credits_charged == math.ceil(130 / job.tokens_per_credit) > 0
    assert job.attempts == 1  # never run again: its caller is gone
    assert balance(user) == {"balance": START_CREDITS - job.credits_charged, "held": 0,
                             "available": START_CREDITS - job.credits_charged}
    assert charging.charges_audit() == [] and reconciliation.reconciliation_audit() == []


def test_a_stream_that_died_before_its_first_token_costs_nothing(streamed):
    user, job = streamed
    _process_died(job)
    services.jobs_sweep()
    job.refresh_from_db()
    assert (job.status, job.credits_charged, job.total_tokens) == (JobStatus.FAILED, 0, None)
    assert balance(user) == {"balance": START_CREDITS, "held": 0, "available": START_CREDITS}
    assert charging.charges_audit() == []


def test_a_live_stream_is_left_alone(streamed):
    _, job = streamed
    assert services.jobs_sweep().settled == 0
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
