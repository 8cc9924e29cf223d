"""The charge path of a job, top to bottom: every money decision of a job is in this file.

1. Quote: what a request holds, the most it can cost (`quote`): the tier's price per image, the
   text model's rate for its prompt plus max_tokens, an article's sum; the rates are snapshot on
   the job, so a catalog change never reprices a job in flight. (The arithmetic is
   credits.pricing; what a request may say is intake.)
2. Hold: the quote is held, and the job created, in one short transaction (`job_hold`): a job
   committed is always run; a replayed Idempotency-Key finds the first job and holds nothing.
   Under the account row's lock the hold takes, fair shares (`in_flight_admit`): the account, and
   the API key the request came with, may have only so many jobs in flight.
3. Run: the run (services._Run) calls the providers outside any transaction and decides no
   money: it records what was delivered. A failed image costs nothing; an image a backup model
   made costs the tier's one price, held at the start.
4. Settle: the final state and what it costs (`settlement`), booked in the same transaction
   as the job's final row (`Settlement.settle_hold`: capture the charge, release the rest, and
   the job's webhook outbox). The three ways a job ends call it: the run (services._Run.settle),
   the sweep's recovery (services._job_recover) and the queue timeout (`job_expire`).
5. The final charge: `job_charge`, what was delivered at the rates held, capped at the hold;
   the audit (`charges_audit`) checks every final job against it.

Money transactions are small functions of their own (`job_hold`, `Settlement.settle_hold`,
`job_expire`), apart from the calling code, so a run can call providers however it likes
(threads now, coroutines later) and hand them only plain values.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Count, Q
from django.utils import timezone

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, QualityTier
from creditgate.core import metrics
from creditgate.core.errors import (
    IdempotencyConflict,
    InvalidRequest,
    TierUnavailable,
    TooManyJobsInFlight,
    credits_words,
)
from creditgate.credits import pricing
from creditgate.credits import services as credits_services
from creditgate.credits.models import ApiKey, Hold
from creditgate.generation import waiting
from creditgate.generation.models import (
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
    Job,
    JobImage,
    JobKind,
    JobStatus,
)
from creditgate.webhooks import services as webhook_services

logger = logging.getLogger(__name__)


# --- 1. Quote ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    kind: str
    price: pricing.Price  # what the job holds: the most it can cost
    request: dict  # the checked input with its defaults filled in (max_tokens, image_count)
    job_fields: dict  # the job's columns: the input and the snapshot of the models it is priced by
    image_model: AIModelConfig | None = None
    text_model: AIModelConfig | None = None


def quote(kind: str, data: dict, *, routing: catalog_selectors.Routing) -> Quote:
    """Price checked input (`request_check`): the models that serve it and what it holds. A tier
    (or text) that nothing can serve right now is a 422."""
    gs = routing.settings
    if kind == JobKind.IMAGE:
        model = _image_model(routing, data["tier"])
        request = {"prompt": data.get("prompt", ""), "tier": data["tier"], "count": data["count"]}
        size = {}
        if data.get("size"):  # one the model serves (its first by default)
            if data["size"] not in (model.sizes or []):
                raise InvalidRequest(f"The {QualityTier(data['tier']).label} quality serves the sizes "
                                     f"{', '.join(model.sizes or []) or 'of its model only'}.",
                                     details={"size": [f"Must be one of {', '.join(model.sizes or [])}."]})
            size = {"image_size": data["size"]}
        return Quote(kind, pricing.price_images(model=model, count=data["count"]), request,
                     dict(kind=kind, prompt=request["prompt"], tier=data["tier"], image_count=data["count"],
                          **_image_snapshot(model, style=gs.image_style), **size), image_model=model)
    text_model = routing.text_model
    if text_model is None:
        raise TierUnavailable("Text generation is not available right now.", details={"kind": "text"})
    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        max_tokens = min(gs.default_max_tokens, text_model.max_output_tokens or gs.default_max_tokens)
    text_price = pricing.price_text_max(model=text_model, prompt=data["prompt"], max_tokens=max_tokens)
    text_fields = dict(prompt=data["prompt"], max_tokens=max_tokens,
                       **_text_snapshot(text_model, temperature=gs.temperature))
    if kind == JobKind.TEXT:
        return Quote(kind, text_price, {"prompt": data["prompt"], "max_tokens": max_tokens},
                     dict(kind=kind, **text_fields), text_model=text_model)
    image_count = data.get("image_count")
    if image_count is None:
        image_count = gs.max_in_article_images
    parts, image_fields, image_model = [text_price], {}, None
    if image_count:
        image_model = _image_model(routing, data["tier"])
        parts.append(pricing.price_images(model=image_model, count=image_count))
        image_fields = _image_snapshot(image_model, style=gs.image_style)
    request = {"prompt": data["prompt"], "tier": data["tier"], "image_count": image_count, "max_tokens": max_tokens}
    return Quote(kind, pricing.price_total(*parts), request,
                 dict(kind=kind, tier=data["tier"], image_count=image_count, **text_fields, **image_fields),
                 image_model=image_model, text_model=text_model)


def quote_chat(data: dict, *, routing: catalog_selectors.Routing) -> Quote:
    """A chat of the OpenAI-compatible surface (/v1): priced as a text job, its messages' text as the
    prompt (the default text model's rate for that text plus max_tokens: the most it can cost),
    with its messages, its temperature (when the caller gave one and the model takes it) and
    whether it streams (a streamed run, generation.streams) in the job's snapshot."""
    text = quote(JobKind.TEXT, {"prompt": data["prompt"], "max_tokens": data.get("max_tokens")}, routing=routing)
    assert text.text_model is not None  # a text quote has its model
    fields = dict(text.job_fields, messages=data["messages"], streamed=bool(data.get("stream")))
    if data.get("temperature") is not None and text.text_model.accepts("temperature"):
        fields["temperature"] = data["temperature"]
    return Quote(text.kind, text.price, {**text.request, "messages": data["messages"]}, fields,
                 text_model=text.text_model)


def _image_model(routing: catalog_selectors.Routing, tier: str) -> AIModelConfig:
    model = routing.image_models.get(tier)
    if model is None:
        raise TierUnavailable(f"The {QualityTier(tier).label} quality is not available right now.",
                              details={"tier": tier})
    return model


def _image_snapshot(model: AIModelConfig, *, style: str) -> dict:
    return {"image_model_name": model.model_name, "image_provider_id": model.provider_id,
            "credits_per_image": model.credits_per_image, "image_style": style}


def _text_snapshot(model: AIModelConfig, *, temperature) -> dict:
    return {"text_model_name": model.model_name, "text_provider_id": model.provider_id,
            "tokens_per_credit": model.tokens_per_credit,
            "temperature": temperature if model.accepts("temperature") else None}


# --- 2. Hold ----------------------------------------------------------------------------------


def jobs_of_key(account, user, key: str) -> models.QuerySet[Job]:
    """The member's jobs under an Idempotency-Key (at most one): a key is the member's own."""
    return Job.objects.filter(account=account, user=user, idempotency_key=key).select_related("user")


def _hold_key(user, key: str) -> str:
    """The job's hold's idempotency key: the member's and their key, so that two members' jobs
    under one key hold separately. Never starts with `job:`, the form holds had when keys were the
    account's (`job:<key>`), so no new key can meet an old one."""
    return f"user:{user.pk}:job:{key}"


def job_hold(*, account, user, key: str, fingerprint: str, price: pricing.Price, fields: dict,
             api_key: ApiKey | None, admit: Callable[[Any], None],
             hand_over: Callable[[Any], None]) -> tuple[Job, bool]:
    """Hold the job's price and create the job in one transaction: (job, created). Under the
    account row's lock the hold took: fair shares (`in_flight_admit`: the account's and the API
    key's jobs in flight), then `admit(account)` (intake's rate limit); either refuses the job by
    raising, which rolls the hold back. `hand_over(job_id)` runs after the commit. A replay of the
    key (a concurrent first request committed) returns the first job, created False."""
    now = timezone.now()
    job = Job(account=account, user=user, idempotency_key=key, request_fingerprint=fingerprint,
              credits_held=price.credits, created_at=now, run_after=now, dispatched_at=now, api_key=api_key,
              **fields)
    try:
        with transaction.atomic():
            # The hold first, keyed by the job's key: a replay that raced the first request fails
            # on the hold's unique key (once the first committed), with no read before the write,
            # and is recognised below, after this transaction rolled back (so no savepoint is
            # needed around the hold); a new job is then inserted once, already pointing at its hold.
            hold, created = credits_services.hold_place(
                account=account, amount=price.credits, idempotency_key=_hold_key(user, key),
                fingerprint=fingerprint, reference=f"job:{job.id}", rate=price.rate, expires=False,
                user=user, api_key=api_key, savepoint=False)
            if created:
                in_flight_admit(account, api_key)
                admit(account)
                job.hold = hold
                job.save(force_insert=True)
                transaction.on_commit(lambda: hand_over(job.id))
    except IntegrityError:  # the hold's or the job's unique key: the member's first request's job exists
        if not jobs_of_key(account, user, key).exists():
            raise
        created = False
    if created:
        return job, True
    existing = jobs_of_key(account, user, key).get()
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict()
    return existing, False


# Fair shares: jobs in flight. A job is in flight from its commit until it is final (queued or
# running). Counted from the jobs themselves under the account row's lock that every new job's hold
# takes (hold_place's conditional UPDATE): an account's new jobs are admitted one at a time, each
# counting what its predecessors committed, so no race passes a limit; jobs only leave flight
# concurrently. An API key belongs to one account, so its count is exact under the same lock.


@dataclass(frozen=True)
class InFlight:
    """One in-flight limit on a caller's next job: `scope` "account" or "api_key"."""

    scope: str
    limit: int  # 0: no limit
    in_flight: int

    @property
    def admits(self) -> bool:
        return not self.limit or self.in_flight < self.limit


def jobs_in_flight(account, api_key: ApiKey | None) -> list[InFlight]:
    """The in-flight limits on the account's next job (and the API key's, for a request made with
    one; a session's or a legacy token's count only against the account), with what is in flight
    now. One query, on the partial index of unfinished jobs."""
    account_limit = settings.CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT
    key_limit = settings.CREDITGATE_API_KEY_JOBS_IN_FLIGHT if api_key is not None else 0
    if not account_limit and not key_limit:
        return []
    counted = {"account": Count("pk")}
    if key_limit:
        counted["api_key"] = Count("pk", filter=Q(api_key=api_key))
    counts = Job.objects.filter(account=account, status__in=IN_FLIGHT_STATUSES).aggregate(**counted)
    shares = []
    if account_limit:  # the account's first: when it is full, another key would not help
        shares.append(InFlight("account", account_limit, counts["account"]))
    if key_limit:
        shares.append(InFlight("api_key", key_limit, counts["api_key"]))
    return shares


def in_flight_binding(account, api_key: ApiKey | None) -> InFlight | None:
    """The in-flight limit with the fewest places left for the caller's next job (the account's on a
    tie, as in_flight_admit refuses by it first); None with no limit. A read without the lock, for
    the estimate: in_flight_admit decides, under the lock."""
    shares = jobs_in_flight(account, api_key)
    return min(shares, key=lambda share: share.limit - share.in_flight) if shares else None


def in_flight_admit(account, api_key: ApiKey | None) -> None:
    """Refuse the job (429 too_many_jobs_in_flight) when the account, or the API key, already has
    its limit of jobs in flight. Runs under the account row's lock (job_hold)."""
    for share in jobs_in_flight(account, api_key):
        if not share.admits:
            whose_jobs = api_key if share.scope == "api_key" else None  # the key's own, or all the account's
            raise TooManyJobsInFlight(scope=share.scope, limit=share.limit, in_flight=share.in_flight,
                                      retry_after=_in_flight_retry_after(account, whose_jobs, share.in_flight))


IN_FLIGHT_RECENT_JOBS = 20  # how many of the scope's latest finished jobs the Retry-After estimate reads
IN_FLIGHT_RETRY_AFTER_DEFAULT = 5  # seconds, with no finished job to go by
IN_FLIGHT_RETRY_AFTER_MAX = 60  # seconds: a client checks again at least once a minute


def in_flight_retry_after(durations: list[float], in_flight: int) -> int:
    """Seconds until a job in flight is likely to finish and free a place: with `in_flight` jobs
    each in flight for about the mean of `durations` (seconds from creation to the final state, the
    queue included), one finishes every mean / in_flight seconds on average (Little's law). From 1
    to IN_FLIGHT_RETRY_AFTER_MAX; IN_FLIGHT_RETRY_AFTER_DEFAULT with nothing to go by."""
    if not durations:
        return IN_FLIGHT_RETRY_AFTER_DEFAULT
    mean = sum(durations) / len(durations)
    return min(IN_FLIGHT_RETRY_AFTER_MAX, max(1, math.ceil(mean / max(1, in_flight))))


def _in_flight_retry_after(account, api_key: ApiKey | None, in_flight: int) -> int:
    jobs = Job.objects.filter(account=account, status__in=FINAL_STATUSES)
    if api_key is not None:
        jobs = jobs.filter(api_key=api_key)
    recent = jobs.order_by("-created_at").values_list("created_at", "finished_at")[:IN_FLIGHT_RECENT_JOBS]
    return in_flight_retry_after([(finished - created).total_seconds() for created, finished in recent
                                  if finished is not None], in_flight)


# --- 3. Run ---------------------------------------------------------------------------------------
# services._Run calls the providers, outside any transaction, and decides no money: it records what
# was delivered (stored images, the text's tokens), which the settlement below prices.


# --- 4. Settle --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    """A job's final state and what it costs (`settlement`); `settle_hold` books it."""

    job_fields: dict
    charge: int
    rate: dict | None

    def settle_hold(self, job: Job, *, final: Job | None = None) -> None:
        """In the settlement's transaction: capture the charge, release the rest; and record the
        job's webhook deliveries (an outbox: committed with the final state, never lost).
        `final`: the job as the settlement leaves its row, when the caller has it whole (handed
        to this process's waiters, who then need not read it back)."""
        webhook_services.job_events_record(job_id=job.pk, account_id=job.account_id,
                                           endpoint_id=job.webhook_endpoint_id)
        transaction.on_commit(partial(_count_settled, job.kind, job.tier, self.job_fields["status"], self.charge))
        transaction.on_commit(partial(waiting.job_final_announce, job.pk, final=final))  # Prefer: wait, ?wait=N
        if not job.hold_id:
            return
        reason = "" if self.charge else "nothing was delivered"
        if not credits_services.hold_settle(hold_id=job.hold_id, captured=self.charge, rate=self.rate, reason=reason):
            # Holds of jobs have no expiry and only settle here, under the job's row lock: this
            # cannot happen unless someone settled it by hand. Keep the books as they are.
            logger.error("job %s: its hold %s was already settled; the job records what it captured",
                         job.pk, job.hold_id)
            captured = Hold.objects.filter(pk=job.hold_id).values_list("captured_amount", flat=True).first() or 0
            Job.objects.filter(pk=job.pk).update(credits_charged=captured)


def _count_settled(kind: str, tier: str, status: str, charge: int) -> None:
    metrics.jobs_finished.labels(kind, status).inc()
    if charge:
        metrics.credits_charged.labels(kind, tier or metrics.NO_TIER).inc(charge)


def settlement(job: Job, *, images: int, text_tokens: int | None, errors: list[tuple[str, str]],
               cut: tuple[str, str] | None = None) -> Settlement:
    """The final state of a job that delivered `images` images and, if any, a text of
    `text_tokens` tokens: status, message, and what it costs (never more than was held).
    `cut`: (code, why) of a streamed text that stopped before its end (the caller hung up, the
    provider failed mid-stream, the process died): partial, charged for the tokens produced."""
    price = job_charge(job, images=images, text_tokens=text_tokens)
    charge = price.credits if price else 0

    wanted_text = bool(job.text_model_name)
    complete = images >= job.image_count and (text_tokens is not None or not wanted_text)
    if complete and cut is not None:
        status, code = JobStatus.PARTIAL, cut[0]
        message = f"{cut[1]} Charged {credits_words(charge)} for the {text_tokens} tokens produced."
    elif complete:
        status, code, message = JobStatus.SUCCEEDED, "", ""
    elif images or text_tokens is not None:
        status, code = JobStatus.PARTIAL, "partial"
        message = _partial_message(job, images, text_tokens is not None, charge)
    else:
        status = JobStatus.FAILED
        code, reason = errors[0] if errors else ("generation_failed", "The provider could not make this.")
        message = f"{reason} No credits were charged."
    fields = dict(status=status, credits_charged=charge, error_code=code, error_message=message,
                  finished_at=timezone.now(), lease_token=None, lease_expires_at=None)
    return Settlement(job_fields=fields, charge=charge, rate=price.rate if price else None)


def _partial_message(job: Job, images: int, text: bool, charged: int) -> str:
    parts = []
    if job.image_count:
        parts.append(f"Delivered {images} of {job.image_count} images")
    if job.text_model_name and not text:
        parts.append("the text could not be written")
    return "; ".join(parts) + f"; charged {credits_words(charged)}."


def job_expire(job: Job, *, now: dt.datetime, timeout: dt.datetime) -> bool:
    """Settle a job that waited in the queue past the timeout. What an earlier attempt delivered
    is still charged; the rest of the hold goes back."""
    with transaction.atomic(durable=True):
        images = JobImage.objects.filter(job=job).count()
        outcome = settlement(job, images=images, text_tokens=job.total_tokens, errors=[
            ("job_expired", "No worker could start the job in time.")])
        if not Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, created_at__lt=timeout).update(
                **outcome.job_fields):
            return False
        outcome.settle_hold(job)
    logger.warning("job %s: waited in the queue past %ss; settled", job.pk,
                   settings.CREDITGATE_JOB_QUEUE_TIMEOUT_SECONDS)
    return True


# --- 5. The final charge ----------------------------------------------------------------------


def job_charge(job: Job, *, images: int, text_tokens: int | None) -> pricing.Price | None:
    """What a job that delivered `images` images and, if any, a text of `text_tokens` tokens owes,
    at the rates it was held at (the catalog may have changed since), capped at its hold; None if
    it delivered nothing. Settlement charges this; the audit checks every final job against it."""
    parts = []
    if images:
        parts.append(pricing.price_images(model=_Rates(job.image_model_name, credits_per_image=job.credits_per_image),
                                          count=images))
    if text_tokens is not None:
        parts.append(pricing.price_text_tokens(
            model=_Rates(job.text_model_name, tokens_per_credit=job.tokens_per_credit), total_tokens=text_tokens))
    if not parts:
        return None
    price = pricing.price_total(*parts)
    return pricing.Price(credits=min(price.credits, job.credits_held), rate=price.rate)


@dataclass(frozen=True)
class _Rates:
    """A job's rates in the shape `credits.pricing` prices by."""

    model_name: str
    credits_per_image: int | None = None
    tokens_per_credit: int | None = None


def charges_audit() -> list[str]:
    """Every final job's charge against what it delivered (job_charge) and what its hold captured."""
    problems = []
    jobs = (Job.objects.filter(status__in=FINAL_STATUSES).annotate(delivered=Count("images"))
            .select_related("hold").only("pk", "image_model_name", "credits_per_image", "text_model_name",
                                         "tokens_per_credit", "total_tokens", "credits_held", "credits_charged",
                                         "hold__captured_amount", "hold__state"))
    for job in jobs.iterator(chunk_size=2000):
        price = job_charge(job, images=job.delivered, text_tokens=job.total_tokens)
        expected = price.credits if price else 0
        if job.credits_charged != expected:
            tokens = f" and {job.total_tokens} tokens" if job.total_tokens is not None else ""
            problems.append(f"job {job.pk}: charged {job.credits_charged} credits but delivered {job.delivered} "
                            f"image(s){tokens}, worth {expected}")
        if job.hold is not None and job.hold.captured_amount != job.credits_charged:
            problems.append(f"job {job.pk}: charged {job.credits_charged} credits but its hold captured "
                            f"{job.hold.captured_amount}")
    return problems
