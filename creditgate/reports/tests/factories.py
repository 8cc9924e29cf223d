"""Jobs, images and provider calls made by hand (as settled jobs leave them), for report tests."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model

from creditgate.credits import services as credits_services
from creditgate.generation.models import Job, JobImage, JobKind, JobStatus, ProviderCall

_counter = itertools.count()


def owner():
    user = get_user_model().objects.create_user(username=f"owner{next(_counter)}", password="pw-123456789")
    return user, credits_services.account_for_user(user=user)


def job(account_user, *, at: dt.datetime, kind=JobKind.IMAGE, tier="basic", model="runware:97@1", provider="runware",
        rate=1, images=0, asked=None, text_model="", tokens=None, tokens_per_credit=None, credits=None,
        status=JobStatus.SUCCEEDED, error_code="", calls=()) -> Job:
    """A final job that delivered `images` images (and `tokens` tokens of text) with its provider
    calls: `calls` are (kind, status, units, cost, latency_ms, cost_source) tuples, made in order
    (the tries of one call each: a call's retries follow it)."""
    user, account = account_user
    asked = images if asked is None else asked
    if kind == JobKind.TEXT:
        tier, model, provider, rate = "", "", "", None
    charged = credits if credits is not None else (images * (rate or 0))
    j = Job.objects.create(
        account=account, user=user, kind=kind, status=status, prompt="p", tier=tier, image_count=asked,
        idempotency_key=f"k{next(_counter)}", request_fingerprint="f", image_model_name=model,
        image_provider_id=provider, credits_per_image=rate, text_model_name=text_model,
        text_provider_id="openai" if text_model else "", tokens_per_credit=tokens_per_credit,
        total_tokens=tokens, credits_held=max(charged, 1) + 100, credits_charged=charged, error_code=error_code,
        created_at=at, run_after=at, started_at=at, finished_at=at + dt.timedelta(seconds=5))
    for call_kind, status_, units, cost, latency, source in calls:
        text_call = call_kind == "text"
        ProviderCall.objects.create(
            job=j, attempt=1, kind=call_kind, provider_id="openai" if text_call else provider,
            model_name=text_model if text_call else model, units_requested=1 if text_call else max(asked, 1),
            units_delivered=units, status=status_, latency_ms=latency,
            cost_usd=Decimal(cost) if cost is not None else None, cost_source=source, started_at=at, finished_at=at)
    delivering = j.calls.filter(kind="image", units_delivered__gt=0).first()
    JobImage.objects.bulk_create([JobImage(job=j, call=delivering, model_name=model, index=i, file=f"x/{i}.png")
                                  for i in range(images)])
    return j

