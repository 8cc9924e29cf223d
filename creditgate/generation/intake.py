"""The request layer of a paid generation: what a request may say, and how it becomes a job
(what it costs and its hold are generation.charging; services.py runs the job).

One place for a request's rules. The request definitions below are DRF serializers that carry
every input rule (the tier enum, the count range, the prompt's length and its visible character,
the article's image count, the max_tokens range), and drf-spectacular generates the OpenAPI schema
from these same declarations, so the schema and the checks cannot drift apart. The bounds an admin
sets (images per request, images per article, the text model's output limit) are read from the
catalog's routing when a definition is instantiated: a request is checked, and the schema is
declared, against the settings of that moment. `charging.quote` prices checked input;
the estimate endpoint and the three generation endpoints (and so the page) all go through
`estimate` / `job_create`, so an estimate equals the hold of the job it describes.

Creating a job (`job_create`):
1. Replays first. A request carrying an Idempotency-Key this member already had accepted gets
   that job back (a 409 when its body differs) before anything that could refuse it: the rate
   limit, the balance, even validation (the admin may have deactivated the tier since). So the
   fingerprint is a hash of the body as sent, not of the cleaned input. Keys are each member's
   own: another member of the account sending the same key starts a job of their own.
2. Check and quote the request (400, 422); resolve the webhook endpoint it names (400).
3. One transaction: the hold (402 when short), the jobs in flight (429, charging.in_flight_admit),
   the rate limit (429), the job row. After the commit the job is handed to its runner. Whatever is
   refused writes nothing and counts nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import DatabaseError, models
from django.utils import timezone
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import (
    GlobalIntegrationSettings,
    QualityTier,
)
from creditgate.core import runtime
from creditgate.core.errors import (
    IdempotencyConflict,
    InvalidRequest,
    RateLimited,
)
from creditgate.core.serializer_fields import StrictIntegerField, VisibleTextField
from creditgate.credits import services as credits_services
from creditgate.credits.models import ApiKey
from creditgate.generation import charging, services, streams
from creditgate.generation.models import Job, JobKind, JobStatus
from creditgate.webhooks import services as webhook_services

logger = logging.getLogger(__name__)

# Runware documents positivePrompt up to 2000 characters, the tightest of our providers; the
# style we append must fit too.
IMAGE_PROMPT_MAX_CHARS = 1800
TEXT_PROMPT_MAX_CHARS = 20000
IDEMPOTENCY_KEY_MAX_CHARS = 255
# The Idempotency-Key rule, checked by _idempotency_key_clean and declared in the schema as it is
# (generation/apis.py): 1 to 255 printable characters (HTTP carries Latin-1: visible ASCII and
# Latin-1's printable letters and signs, spaces inside only since HTTP drops them at the ends), not
# starting with "auto-" (the keys made for requests that bring none).
_KEY_CHAR = r"!-~\u00a1-\u00ac\u00ae-\u00ff"
IDEMPOTENCY_KEY_PATTERN = (f"^(?!auto-)[{_KEY_CHAR}](?:[ {_KEY_CHAR}]{{0,{IDEMPOTENCY_KEY_MAX_CHARS - 2}}}"
                           f"[{_KEY_CHAR}])?$")


# --- The request definitions -------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The admin-set bounds of a request, from the catalog's routing."""

    images_per_request: int
    images_per_article: int
    max_tokens: int | None  # the text model's output limit; None when no text model can be served

    @classmethod
    def of(cls, routing: catalog_selectors.Routing) -> Limits:
        gs, model = routing.settings, routing.text_model
        return cls(images_per_request=gs.max_images_per_request, images_per_article=gs.max_in_article_images,
                   max_tokens=(model.max_output_tokens or gs.default_max_tokens) if model else None)


def _default(name: str):
    field = GlobalIntegrationSettings._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column, not a relation
    return field.default


# The settings' own defaults: what the schema declares when it is exported with no database.
_OFFLINE_LIMITS = Limits(images_per_request=_default("max_images_per_request"),
                         images_per_article=_default("max_in_article_images"), max_tokens=None)


def _limits(context: Mapping[str, Any]) -> Limits:
    routing = context.get("routing")
    if routing is not None:  # a request: checked against the routing it is priced with
        return Limits.of(routing)
    # The schema (drf-spectacular instantiates the definitions with no context): the current
    # settings, or their defaults for an export with no database (RuntimeError: a test's
    # blocked database access).
    try:
        return Limits.of(catalog_selectors.routing_get())
    except (DatabaseError, RuntimeError):
        return _OFFLINE_LIMITS


class PromptField(VisibleTextField):
    """Text with a visible character (not only whitespace, control or format characters such as
    U+200B; no NUL) and at most `max_length` characters as sent (the schema's maxLength means what
    it says); stored without its surrounding whitespace."""


class TierField(serializers.ChoiceField):
    default_error_messages = {
        "invalid_choice": "Must be one of " + ", ".join(QualityTier.values) + "."}

    def __init__(self, **kwargs):
        super().__init__(choices=QualityTier.choices, **kwargs)


class RequestDefinition(serializers.Serializer):
    # A request's fields; `maximum` names the fields whose upper bound is an admin setting (a
    # `Limits` attribute), applied when the definition is instantiated. (No docstring: the
    # schema would show it as every request's description.)

    maximum: ClassVar[dict[str, str]] = {}

    def get_fields(self):
        fields = super().get_fields()
        limits = _limits(self.context)
        for name, limit in self.maximum.items():
            high = getattr(limits, limit)
            if high is not None:
                field = fields[name]  # this instance's own copy: bound it here
                assert isinstance(field, serializers.IntegerField)
                field.max_value = high  # what the schema declares
                field.validators.append(MaxValueValidator(
                    high, message=field.error_messages["max_value"].format(max_value=high)))
        return fields


_MAX_TOKENS_HELP = ("Completion tokens the text may use; default: the settings' default, at most the text "
                    "model's limit. The hold covers the prompt and this many tokens; the charge is what was used.")


@extend_schema_serializer(component_name="ImageGenerationRequest")
class ImagesRequest(RequestDefinition):
    """`count` images of a quality tier; the tier's model and price are the catalog's."""

    prompt = PromptField(max_length=IMAGE_PROMPT_MAX_CHARS)
    tier = TierField()
    count = StrictIntegerField(min_value=1)
    size = serializers.RegexField(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$", required=False, help_text=(
        "WIDTHxHEIGHT, one of the sizes the tier's model serves (GET /api/v1/system/ai-config/); default: "
        "its first."))
    maximum: ClassVar[dict[str, str]] = {"count": "images_per_request"}


@extend_schema_serializer(component_name="TextGenerationRequest")
class TextRequest(RequestDefinition):
    """A text by the default text model."""

    prompt = PromptField(max_length=TEXT_PROMPT_MAX_CHARS)
    max_tokens = StrictIntegerField(min_value=1, required=False, allow_null=True, help_text=_MAX_TOKENS_HELP)
    maximum: ClassVar[dict[str, str]] = {"max_tokens": "max_tokens"}


@extend_schema_serializer(component_name="ArticleGenerationRequest")
class ArticleRequest(RequestDefinition):
    """A text plus `image_count` images of a tier in the global style, charged as the sum of both."""

    prompt = PromptField(max_length=IMAGE_PROMPT_MAX_CHARS)
    tier = TierField(help_text="The tier of the article's images (required even with no images).")
    image_count = StrictIntegerField(min_value=0, required=False, allow_null=True,
                                     help_text="Default: the most images an article may have.")
    max_tokens = StrictIntegerField(min_value=1, required=False, allow_null=True, help_text=_MAX_TOKENS_HELP)
    maximum: ClassVar[dict[str, str]] = {"image_count": "images_per_article", "max_tokens": "max_tokens"}


@extend_schema_serializer(component_name="ImageEstimateRequest")
class ImagesEstimateRequest(RequestDefinition):
    """As ImageGenerationRequest, without the prompt (images cost the same whatever they show)."""

    kind = serializers.ChoiceField(choices=[JobKind.IMAGE.value])
    tier = TierField()
    count = StrictIntegerField(min_value=1)
    maximum: ClassVar[dict[str, str]] = ImagesRequest.maximum


@extend_schema_serializer(component_name="TextEstimateRequest")
class TextEstimateRequest(TextRequest):
    """As TextGenerationRequest."""

    kind = serializers.ChoiceField(choices=[JobKind.TEXT.value])


@extend_schema_serializer(component_name="ArticleEstimateRequest")
class ArticleEstimateRequest(ArticleRequest):
    """As ArticleGenerationRequest."""

    kind = serializers.ChoiceField(choices=[JobKind.ARTICLE.value])


# By kind, as plain strings (they end up in the schema).
REQUESTS: dict[str, type[RequestDefinition]] = {
    JobKind.IMAGE.value: ImagesRequest, JobKind.TEXT.value: TextRequest, JobKind.ARTICLE.value: ArticleRequest}
ESTIMATE_REQUESTS: dict[str, type[RequestDefinition]] = {
    JobKind.IMAGE.value: ImagesEstimateRequest, JobKind.TEXT.value: TextEstimateRequest,
    JobKind.ARTICLE.value: ArticleEstimateRequest}


def request_check(definition: type[RequestDefinition], body: Any, *,
                  routing: catalog_selectors.Routing) -> dict:
    """The body checked against its definition: the cleaned input, or a 400 naming every field."""
    serializer = definition(data=body, context={"routing": routing})
    if not serializer.is_valid():
        details = {name: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
                   for name, msgs in serializer.errors.items()}
        raise InvalidRequest(f"Invalid input: {', '.join(sorted(details))}.", details=details)
    return dict(serializer.validated_data)


# --- Quotes: what a request would hold, priced by the one pricing module -----------------------


def estimate(*, body: Any) -> charging.Quote:
    """POST /credits/estimate/: the quote of `{"kind": ..., <that kind's request>}`, checked by
    the same definitions as the generation endpoints."""
    kind = body.get("kind") if isinstance(body, dict) else None
    if not isinstance(kind, str) or kind not in ESTIMATE_REQUESTS:
        choices = ", ".join(ESTIMATE_REQUESTS)
        raise InvalidRequest("Invalid input: kind.", details={"kind": [f"Must be one of {choices}."]})
    routing = catalog_selectors.routing_get()
    return charging.quote(kind, request_check(ESTIMATE_REQUESTS[kind], body, routing=routing), routing=routing)


# --- Creating a job: replay, check, quote, hold ------------------------------------------------


@dataclass(frozen=True)
class JobOrigin:
    """How a request came in, beyond its user: the API key it was made with (its monthly cap
    applies) and the webhook endpoint it named (it hears of the job when the job is final)."""

    api_key: ApiKey | None = None
    webhook_endpoint: str | None = None
    # The caller waits for the job (Prefer: wait): run it in this process when it has room (an
    # inline run: no queue hop), else hand it to the queue as any other.
    run_here: bool = False
    # The new job's id, chosen by the caller (who registers a waiter under it before the job
    # exists); None: one is made. A replay returns the first job, whatever this says.
    job_id: uuid.UUID | None = None


def request_fingerprint(kind: str, body: Any) -> str:
    """The identity of a request as sent: its kind and its body, as canonical JSON. Computed
    from the raw body, so a replay is recognised before (and whatever) validation says."""
    if hasattr(body, "dict"):  # a form-encoded body (QueryDict)
        body = body.dict()
    # The kind is the endpoint's: a "kind" in the body is no field of any generation request.
    identity = {**body, "kind": kind} if isinstance(body, dict) else {"kind": kind, "body": body}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def job_create(*, kind: str, user, body: Any, idempotency_key: str | None = None,
               origin: JobOrigin | None = None) -> tuple[Job, bool]:
    """Accept a generation request: (job, created). A replayed key returns the first job,
    charged once (created False)."""
    request = _Request.of(kind, user=user, body=body, idempotency_key=idempotency_key)
    if request.replayed is not None:
        return request.replayed, False
    key, fingerprint, account = request.key, request.fingerprint, request.account
    routing = catalog_selectors.routing_get()
    priced = charging.quote(kind, request_check(REQUESTS[kind], body, routing=routing), routing=routing)
    origin = origin or JobOrigin()
    fields = priced.job_fields if origin.job_id is None else {**priced.job_fields, "id": origin.job_id}
    if origin.webhook_endpoint is not None:
        fields = {**fields, "webhook_endpoint": webhook_services.endpoint_for_request(
            account=account, endpoint_id=origin.webhook_endpoint)}
    return charging.job_hold(account=account, user=user, key=key, fingerprint=fingerprint, price=priced.price,
                             fields=fields, api_key=origin.api_key, admit=_rate_check,
                             hand_over=_job_run_here if origin.run_here else _job_hand_over)


def job_create_images(*, user, prompt, tier, count, idempotency_key: str | None = None,
                      origin: JobOrigin | None = None) -> tuple[Job, bool]:
    return job_create(kind=JobKind.IMAGE, user=user, body={"prompt": prompt, "tier": tier, "count": count},
                      idempotency_key=idempotency_key, origin=origin)


def job_create_text(*, user, prompt, max_tokens: int | None = None, idempotency_key: str | None = None,
                    origin: JobOrigin | None = None) -> tuple[Job, bool]:
    return job_create(kind=JobKind.TEXT, user=user, body=_given(prompt=prompt, max_tokens=max_tokens),
                      idempotency_key=idempotency_key, origin=origin)


def job_create_article(*, user, prompt, tier, image_count: int | None = None, max_tokens: int | None = None,
                       idempotency_key: str | None = None, origin: JobOrigin | None = None) -> tuple[Job, bool]:
    """An article: a text plus up to `max_in_article_images` images of a tier in the global style."""
    return job_create(kind=JobKind.ARTICLE, user=user,
                      body=_given(prompt=prompt, tier=tier, image_count=image_count, max_tokens=max_tokens),
                      idempotency_key=idempotency_key, origin=origin)


def job_create_chat(*, user, body: Any, checked: dict, idempotency_key: str | None = None,
                    api_key: ApiKey | None = None, job_id: uuid.UUID | None = None) -> tuple[Job, bool]:
    """Accept a chat of the OpenAI-compatible surface (/v1): (job, created). `body` is the request
    as sent (its fingerprint); `checked` its messages, their text as `prompt`, max_tokens and
    temperature, and `stream`, as the surface checked them. A replayed key returns the first job.
    Streamed, the job is created running, claimed by the request that streams it
    (generation.streams), never queued; not streamed, it is a text job like any other, with its
    messages, run inline for its caller who waits (or queued when this process is full), and
    recovered as any job if that process dies. `job_id`: the new job's id (JobOrigin.job_id says why)."""
    request = _Request.of("chat", user=user, body=body, idempotency_key=idempotency_key)
    if request.replayed is not None:
        return request.replayed, False
    key, fingerprint, account = request.key, request.fingerprint, request.account
    routing = catalog_selectors.routing_get()
    limit = Limits.of(routing).max_tokens
    if checked.get("max_tokens") is not None and limit is not None and checked["max_tokens"] > limit:
        raise InvalidRequest(f"max_tokens is at most {limit} for this model.",
                             details={"max_tokens": [f"Ensure this value is less than or equal to {limit}."]})
    priced = charging.quote_chat(checked, routing=routing)
    if checked.get("stream"):
        fields, hand_over = {**priced.job_fields, **streams.lease_fields(timezone.now())}, _no_hand_over
    else:
        fields, hand_over = priced.job_fields, _job_run_here
    if job_id is not None:
        fields = {**fields, "id": job_id}
    return charging.job_hold(account=account, user=user, key=key, fingerprint=fingerprint, price=priced.price,
                             fields=fields, api_key=api_key, admit=_rate_check, hand_over=hand_over)


def _no_hand_over(job_id) -> None:
    """A streamed job: its request runs it."""


def _given(**fields) -> dict:
    """A body with only the optional fields the caller gave (as a client would send it)."""
    return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class _Request:
    """A request's identity, read first: its key (or one made for it), the fingerprint of its body
    as sent, the account, and the job a replay of the key finds (None: a new request)."""

    key: str
    fingerprint: str
    account: Any
    replayed: Job | None

    @classmethod
    def of(cls, kind: str, *, user, body: Any, idempotency_key: str | None) -> _Request:
        key = _idempotency_key_clean(idempotency_key)
        fingerprint = request_fingerprint(kind, body)
        account = credits_services.account_for_user(user=user)
        replayed = _job_replayed(account, user, key, fingerprint) if idempotency_key is not None else None
        return cls(key, fingerprint, account, replayed)


def _job_replayed(account, user, key: str, fingerprint: str) -> Job | None:
    """The job this member started with this key, if any (another member's key is not theirs)."""
    job = charging.jobs_of_key(account, user, key).prefetch_related("images").first()
    if job is not None and job.request_fingerprint != fingerprint:
        raise IdempotencyConflict()
    return job


def _rate_check(account) -> None:
    """At most CREDITGATE_GENERATION_RATE jobs per account and period (none when it is off): a
    429 saying when the next one may start.

    Exact across processes because it runs under the account row's lock: hold_place's
    conditional UPDATE of that row (which every job's hold makes) locks it until this transaction
    ends, so the accepting transactions of one account run one at a time and each counts the jobs
    its predecessors committed (PostgreSQL's READ COMMITTED gives every statement a fresh
    snapshot; SQLite's IMMEDIATE transactions serialize writers outright). Why this and not a
    Redis counter: the lock is already taken, so exactness costs one indexed query and no
    extra infrastructure (the embedded default has no Redis), and a request refused later in
    the same transaction (a cap, a failure) rolls its admission back with it, where a counter
    would need a compensating decrement. Counted from the jobs themselves, so a refused or
    replayed request never counts.
    """
    if settings.CREDITGATE_GENERATION_RATE is None:  # off
        return
    limit, seconds = settings.CREDITGATE_GENERATION_RATE
    now = timezone.now()
    nth_newest = (Job.objects.filter(account=account, created_at__gt=now - dt.timedelta(seconds=seconds))
                  .order_by("-created_at").values_list("created_at", flat=True)[limit - 1:limit].first())
    if nth_newest is not None:
        wait = (nth_newest + dt.timedelta(seconds=seconds) - now).total_seconds()
        raise RateLimited(retry_after=max(1, math.ceil(wait)))


def _job_run_here(job_id) -> None:
    """After the job's commit, for a caller who waits: run it on this process's loop (an inline
    run), or, when the loop is full, hand it over to the queue."""
    if not services.job_run_inline(job_id):
        _job_hand_over(job_id)


def _job_hand_over(job_id) -> None:
    """After the job's commit: hand it to its runner. If that fails (the broker is down), the job
    is still durable and accepted: it stays owed to the queue (the outbox) and the sweep hands it
    over once the broker answers."""
    if runtime.enqueue(job_id):
        return
    try:
        Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(dispatched_at=None)
    except DatabaseError:  # the sweep's re-dispatch of stale hand-offs still finds it
        logger.warning("job %s: could not mark its hand-off as owed", job_id, exc_info=True)


def _idempotency_key_clean(key: str | None) -> str:
    if key is None:
        return f"auto-{uuid.uuid4()}"  # no key given: no replay protection was asked for
    if re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is None:
        raise InvalidRequest("The Idempotency-Key header must be 1 to 255 printable characters, not starting "
                             "with auto-.", details={"Idempotency-Key": ["Invalid idempotency key."]})
    return key
