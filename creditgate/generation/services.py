"""The charge path, top to bottom: price → hold → call → capture what was delivered → release the rest.

Creating a job prices the request with `credits.pricing` and places a hold for the most it can
cost, in the same short transaction that creates the job row; nothing is held across a provider
call. Running a job calls the provider outside any transaction, stores what arrived in our own
media storage, then captures the price of what was delivered (never more than the hold); the
rest is released. A failure at any point releases the hold; a job whose worker died keeps its
hold only until the reaper expires it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, ModelType, QualityTier
from creditgate.core.errors import IdempotencyConflict, InvalidRequest, RateLimited
from creditgate.credits import pricing
from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.generation import dispatch
from creditgate.generation.models import FINAL_STATUSES, Job, JobImage, JobKind, JobStatus
from creditgate.providers.base import ImageOutcome, ProviderError, TextResult
from creditgate.providers.registry import adapter_for

logger = logging.getLogger(__name__)

# Runware documents positivePrompt up to 2000 characters, the tightest of our providers; the
# style we append must fit too.
IMAGE_PROMPT_MAX_CHARS = 1800
TEXT_PROMPT_MAX_CHARS = 20000
IDEMPOTENCY_KEY_MAX_CHARS = 255

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


# --- Creating a job: validate, price, hold -------------------------------------------------


def job_create_images(*, user, prompt: str, tier: str, count: int, idempotency_key: str | None = None
                      ) -> tuple[Job, bool]:
    routing = catalog_selectors.routing_get()
    prompt = _clean_prompt(prompt, limit=IMAGE_PROMPT_MAX_CHARS)
    model, price = credits_selectors.quote_images(tier=tier, count=count, routing=routing)
    return _job_create(
        user=user, idempotency_key=idempotency_key, price=price,
        request={"kind": JobKind.IMAGE, "prompt": prompt, "tier": tier, "count": count},
        fields=dict(kind=JobKind.IMAGE, prompt=prompt, tier=tier, image_count=count,
                    **_image_snapshot(model, style=routing.settings.image_style)),
    )


def job_create_text(*, user, prompt: str, max_tokens: int | None = None, idempotency_key: str | None = None
                    ) -> tuple[Job, bool]:
    routing = catalog_selectors.routing_get()
    prompt = _clean_prompt(prompt, limit=TEXT_PROMPT_MAX_CHARS)
    model, price, max_tokens = credits_selectors.quote_text(prompt=prompt, max_tokens=max_tokens, routing=routing)
    return _job_create(
        user=user, idempotency_key=idempotency_key, price=price,
        request={"kind": JobKind.TEXT, "prompt": prompt, "max_tokens": max_tokens},
        fields=dict(kind=JobKind.TEXT, prompt=prompt, max_tokens=max_tokens,
                    **_text_snapshot(model, temperature=routing.settings.temperature)),
    )


def job_create_article(*, user, prompt: str, tier: str, image_count: int | None = None,
                       max_tokens: int | None = None, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """An article: a text plus up to `max_in_article_images` images of a tier in the global style."""
    routing = catalog_selectors.routing_get()
    gs = routing.settings
    limit = gs.max_in_article_images
    prompt = _clean_prompt(prompt, limit=IMAGE_PROMPT_MAX_CHARS)
    image_count = limit if image_count is None else image_count
    text_model, text_price, max_tokens = credits_selectors.quote_text(prompt=prompt, max_tokens=max_tokens,
                                                                      routing=routing)
    parts, image_fields = [text_price], {}
    if image_count != 0 or tier not in QualityTier.values:  # an unknown tier is a 400 even with no images
        image_model, image_price = credits_selectors.quote_images(tier=tier, count=image_count,
                                                                  field="image_count", low=0, high=limit,
                                                                  routing=routing)
        parts.append(image_price)
        image_fields = _image_snapshot(image_model, style=gs.image_style)
    price = pricing.price_total(*parts)
    return _job_create(
        user=user, idempotency_key=idempotency_key, price=price,
        request={"kind": JobKind.ARTICLE, "prompt": prompt, "tier": tier, "image_count": image_count,
                 "max_tokens": max_tokens},
        fields=dict(kind=JobKind.ARTICLE, prompt=prompt, tier=tier, image_count=image_count, max_tokens=max_tokens,
                    **_text_snapshot(text_model, temperature=gs.temperature), **image_fields),
    )


def _job_create(*, user, idempotency_key: str | None, price: pricing.Price, request: dict, fields: dict
                ) -> tuple[Job, bool]:
    """Hold the job's price and create the job in one transaction; a replayed key returns the
    first job, charged once."""
    account = credits_services.account_for_user(user=user)
    key = _check_idempotency_key(idempotency_key)
    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
    _check_rate(account)
    job = Job(account=account, user=user, idempotency_key=key, request_fingerprint=fingerprint,
              credits_held=price.credits, **fields)
    try:
        with transaction.atomic():
            # The hold first, keyed by the job's key: a replay is recognised by the hold's unique
            # key (after the first request committed, if they raced), with no read before the
            # write; a new job is then inserted once, already pointing at its hold.
            hold, created = credits_services.hold_place(
                account=account, amount=price.credits, idempotency_key=f"job:{key}",
                fingerprint=fingerprint, reference=f"job:{job.id}", rate=price.rate)
            if created:
                job.hold = hold
                job.save(force_insert=True)
                transaction.on_commit(lambda: dispatch.enqueue(job.id))
    except IntegrityError:  # the job's own unique key: a job whose hold had another key
        if not Job.objects.filter(account=account, idempotency_key=key).exists():
            raise
        created = False
    if created:
        return job, True
    existing = Job.objects.get(account=account, idempotency_key=key)
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict()
    return existing, False


def _check_rate(account) -> None:
    """At most CREDITGATE_GENERATION_RATE jobs per account and period: a 429 saying when the
    next one may start. Counted from the jobs themselves, so every process agrees and a refused
    or replayed request does not count."""
    limit, seconds = settings.CREDITGATE_GENERATION_RATE
    now = timezone.now()
    nth_newest = (Job.objects.filter(account=account, created_at__gt=now - dt.timedelta(seconds=seconds))
                  .order_by("-created_at").values_list("created_at", flat=True)[limit - 1:limit].first())
    if nth_newest is not None:
        wait = (nth_newest + dt.timedelta(seconds=seconds) - now).total_seconds()
        raise RateLimited(retry_after=max(1, math.ceil(wait)))


# --- Running a job: call, store, capture ---------------------------------------------------


@dataclass
class _Delivery:
    images: list[ImageOutcome] = field(default_factory=list)
    text: TextResult | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (code, safe message)


def job_run(*, job_id) -> None:
    """Run a queued job once. Safe to call twice: only the call that claims the job runs it."""
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now())
    if not claimed:
        return
    job = Job.objects.get(pk=job_id)
    try:
        delivery = _call_providers(job)
        _store_and_charge(job, delivery)
    except Exception:  # noqa: BLE001 - whatever broke, the user must not pay for it
        logger.exception("job %s failed unexpectedly", job_id)
        job_fail(job_id=job_id, code="internal_error", message="Something went wrong on our side.")


def _call_providers(job: Job) -> _Delivery:
    """Call the providers with no transaction open. Catalog reads happen here, before any
    thread starts, so the threads only talk HTTP."""
    delivery = _Delivery()
    calls = []
    if job.text_model_name:
        calls.append(_prepare(job, ModelType.TEXT, delivery))
    if job.image_count:
        calls.append(_prepare(job, ModelType.IMAGE, delivery))
    calls = [c for c in calls if c]
    if len(calls) == 1:
        calls[0]()
    elif calls:  # an article: text and images are independent, so ask for both at once
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()
    return delivery


def _prepare(job: Job, model_type: str, delivery: _Delivery):
    """Resolve model and adapter now; return the provider call to make, or None if it cannot be made."""
    is_text = model_type == ModelType.TEXT
    try:
        model = _model_snapshot(job, model_type)
        adapter = adapter_for(provider_id=job.text_provider_id if is_text else job.image_provider_id)
    except ProviderError as exc:
        _record_failure(job, delivery, is_text=is_text, code=exc.code, message=exc.message)
        return None

    def call_text():
        try:
            delivery.text = adapter.generate_text(
                model=model, prompt=job.prompt, max_tokens=job.max_tokens,
                temperature=float(job.temperature) if job.temperature is not None else None)
        except ProviderError as exc:
            delivery.errors.append((exc.code, exc.message))

    def call_images():
        try:
            delivery.images = adapter.generate_images(
                model=model, prompt=styled_prompt(job.prompt, job.image_style), count=job.image_count)
        except ProviderError as exc:
            _record_failure(job, delivery, is_text=False, code=exc.code, message=exc.message)
            return
        delivery.errors.extend((o.error_code or "provider_error", o.error_message or "An image could not be made.")
                               for o in delivery.images if not o.ok)

    return call_text if is_text else call_images


def _record_failure(job: Job, delivery: _Delivery, *, is_text: bool, code: str, message: str) -> None:
    delivery.errors.append((code, message))
    if not is_text:
        delivery.images = [ImageOutcome(ok=False, error_code=code, error_message=message)] * job.image_count


def styled_prompt(prompt: str, style: str) -> str:
    """Neither provider has a style parameter, so the global style goes into the prompt."""
    return f"{prompt.rstrip(' .')}, in a {style} style" if style else prompt


def _store_and_charge(job: Job, delivery: _Delivery) -> None:
    delivered = [o for o in delivery.images if o.ok and o.data]
    stored = [_store_image(job, index, outcome) for index, outcome in enumerate(delivered)]

    parts = []
    if delivered:
        parts.append(pricing.price_images(model=_model_snapshot(job, ModelType.IMAGE), count=len(delivered)))
    if delivery.text is not None:
        parts.append(pricing.price_text_tokens(model=_model_snapshot(job, ModelType.TEXT),
                                               total_tokens=delivery.text.total_tokens))
    price = pricing.price_total(*parts) if parts else None
    charge = min(price.credits, job.credits_held) if price else 0

    with transaction.atomic():
        JobImage.objects.bulk_create(stored)
        if delivery.errors:
            job.error_code, job.error_message = delivery.errors[0]
            job.save(update_fields=["error_code", "error_message"])
        if delivery.text is not None:
            job.text = delivery.text.content
            job.prompt_tokens = delivery.text.prompt_tokens
            job.completion_tokens = delivery.text.completion_tokens
            job.total_tokens = delivery.text.total_tokens
            job.save(update_fields=["text", "prompt_tokens", "completion_tokens", "total_tokens"])

    if charge:
        settled = credits_services.hold_capture(hold_id=job.hold_id, amount=charge, rate=price.rate)
    else:
        settled = credits_services.hold_release(hold_id=job.hold_id, reason="nothing was delivered")
    if not settled:
        logger.warning("job %s: its hold was already settled (expired?); nothing was charged", job.id)
    _finalize(job)


def _store_image(job: Job, index: int, outcome: ImageOutcome) -> JobImage:
    content_type = outcome.content_type or "image/png"
    width = height = None
    try:
        with Image.open(io.BytesIO(outcome.data)) as img:
            width, height = img.size
            content_type = Image.MIME.get(img.format, content_type)
    except Exception:  # noqa: BLE001 - keep the bytes even if Pillow cannot read the header
        logger.warning("job %s: image %s is not readable by Pillow", job.id, index)
    image = JobImage(job=job, index=index, content_type=content_type, width=width, height=height,
                     provider_image_id=outcome.provider_image_id or "", seed=outcome.seed,
                     cost_usd=outcome.cost_usd)
    name = f"{index}-{uuid.uuid4().hex[:8]}.{_EXTENSIONS.get(content_type, 'bin')}"
    image.file.save(name, ContentFile(outcome.data), save=False)
    return image


def _finalize(job: Job) -> None:
    """Set the job's final state from what is stored and what its hold captured.

    Derived, not remembered, so the reaper can finish a job whose worker died at any point.
    """
    job.refresh_from_db()
    hold = job.hold
    charged = hold.captured_amount if hold and hold.state == "captured" else 0
    delivered_images = job.images.count()
    delivered_text = bool(job.total_tokens is not None)
    wanted_text = bool(job.text_model_name)
    complete = delivered_images == job.image_count and (delivered_text or not wanted_text)
    anything = delivered_images > 0 or delivered_text

    if complete:
        status, code, message = JobStatus.SUCCEEDED, "", ""
    elif anything:
        status, code = JobStatus.PARTIAL, "partial"
        message = _partial_message(job, delivered_images, delivered_text, charged)
    else:
        status = JobStatus.FAILED
        code = job.error_code or "generation_failed"
        reason = job.error_message or "The provider could not make this."
        message = f"{reason} No credits were charged." if not charged else reason
    Job.objects.filter(pk=job.pk).exclude(status__in=FINAL_STATUSES).update(
        status=status, credits_charged=charged, error_code=code, error_message=message,
        finished_at=timezone.now())


def _partial_message(job: Job, images: int, text: bool, charged: int) -> str:
    parts = []
    if job.image_count:
        parts.append(f"Delivered {images} of {job.image_count} images")
    if job.text_model_name and not text:
        parts.append("the text could not be written")
    return "; ".join(parts) + f"; charged {charged} credits."


def job_fail(*, job_id, code: str, message: str) -> None:
    """The end of a job that could not run: release its hold, keep the reason for the user."""
    job = Job.objects.get(pk=job_id)
    if job.is_final:
        return
    if job.hold_id:
        credits_services.hold_release(hold_id=job.hold_id, reason=message)
    Job.objects.filter(pk=job_id).exclude(status__in=FINAL_STATUSES).update(error_code=code, error_message=message)
    _finalize(job)


@dataclass(frozen=True)
class Reaped:
    holds_expired: int
    jobs_finished: int


def jobs_reap_stale(*, now=None) -> Reaped:
    """The reaper: expire stale holds, then finish every unfinished job whose hold is settled."""
    holds_expired = credits_services.holds_release_stale(now=now)
    stale = Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).filter(
        Q(hold__isnull=True) | ~Q(hold__state="active"))
    count = 0
    for job in stale:
        if not job.error_message:
            Job.objects.filter(pk=job.pk).update(
                error_code="job_expired",
                error_message="The job did not finish in time.")
        _finalize(job)
        count += 1
    return Reaped(holds_expired=holds_expired, jobs_finished=count)


# --- Input rules -------------------------------------------------------------------------


def _clean_prompt(prompt, *, limit: int) -> str:
    if not isinstance(prompt, str):
        raise InvalidRequest("The prompt must be text.", details={"prompt": ["Must be a string."]})
    prompt = prompt.strip()
    if not prompt:
        raise InvalidRequest("The prompt is empty.", details={"prompt": ["This field may not be blank."]})
    if len(prompt) > limit:
        raise InvalidRequest(f"The prompt is longer than {limit} characters.",
                             details={"prompt": [f"Ensure this field has no more than {limit} characters."]})
    return prompt


def _check_idempotency_key(key: str | None) -> str:
    if key is None:
        return f"auto-{uuid.uuid4()}"  # no key given: no replay protection was asked for
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX_CHARS) or not key.isprintable() or key.startswith("auto-"):
        raise InvalidRequest("The Idempotency-Key header must be 1 to 255 printable characters.",
                             details={"Idempotency-Key": ["Invalid idempotency key."]})
    return key


def _image_snapshot(model: AIModelConfig, *, style: str) -> dict:
    return dict(image_model_name=model.model_name, image_provider_id=model.provider_id,
                credits_per_image=model.credits_per_image, image_style=style)


def _text_snapshot(model: AIModelConfig, *, temperature) -> dict:
    return dict(text_model_name=model.model_name, text_provider_id=model.provider_id,
                tokens_per_credit=model.tokens_per_credit,
                temperature=temperature if model.accepts("temperature") else None)


def _model_snapshot(job: Job, model_type: str) -> AIModelConfig:
    """The catalog row that served the job, carrying the rates that were held.

    The row supplies what a provider call needs (sizes, parameters); the prices come from the
    job so a price changed after the hold never changes what this job costs.
    """
    name = job.text_model_name if model_type == ModelType.TEXT else job.image_model_name
    model = AIModelConfig.objects.select_related("provider").get(model_name=name)
    if model_type == ModelType.TEXT:
        model.tokens_per_credit = job.tokens_per_credit
    else:
        model.credits_per_image = job.credits_per_image
    return model
