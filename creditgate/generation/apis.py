"""Generation endpoints and the estimate: hand the request to the request layer (intake), return
the job (202) or the quote."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.catalog import selectors as catalog_selectors
from creditgate.core.db_gate import db_gate
from creditgate.core.pagination import PageNumberPagination
from creditgate.core.schema import error_response
from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.apis import UserRefSerializer
from creditgate.credits.authentication import request_api_key
from creditgate.generation import charging, intake, selectors, waiting
from creditgate.generation.models import FINAL_STATUSES, Job, JobKind
from creditgate.webhooks import services as webhook_services

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": intake.IDEMPOTENCY_KEY_MAX_CHARS,
                        "pattern": intake.IDEMPOTENCY_KEY_PATTERN},
    OpenApiParameter.HEADER, required=False,
    description="Same key and body: the same job, charged once. Same key, other body: 409. 1 to "
                f"{intake.IDEMPOTENCY_KEY_MAX_CHARS} printable characters, not starting with `auto-`; otherwise 400.")
WEBHOOK_HEADER = OpenApiParameter(
    "Webhook-Endpoint", {"type": "string", "format": "uuid", "pattern": webhook_services.ENDPOINT_ID_PATTERN},
    OpenApiParameter.HEADER, required=False,
    description="The id of one of the account's active webhook endpoints: it receives a signed job.finished event "
                "when the job is final (besides the endpoints that receive every job). Unknown: 400, nothing held.")

PREFER_HEADER = OpenApiParameter(
    "Prefer", str, OpenApiParameter.HEADER, required=False,
    description=f"`wait=N` (RFC 7240): answer once the job is final, 200 with the final job, or after N seconds "
                f"(at most {waiting.MAX_WAIT_SECONDS}), 202 with the job as it is then. Answered with "
                f"`Preference-Applied: wait=N` (N as capped). When the account or API key already holds its limit "
                f"of concurrent waits, the preference is ignored: 202 at once, without `Preference-Applied`.")
WAIT_PARAM = OpenApiParameter(
    "wait", {"type": "integer", "minimum": 0}, OpenApiParameter.QUERY, required=False,
    description=f"Long poll: answer once the job is final or after this many seconds (at most "
                f"{waiting.MAX_WAIT_SECONDS}; larger values are capped). 0 or absent: at once. A job not final yet "
                f"while the account or API key already holds its limit of concurrent waits: 429 too_many_waits.")


ACCEPTED_HEADERS = [
    OpenApiParameter("Location", str, OpenApiParameter.HEADER, response=[200, 202], required=True,
                     description="The job's URL: poll it (GET) until its status is final."),
    OpenApiParameter("Idempotent-Replayed", str, OpenApiParameter.HEADER, response=[200, 202], enum=["true"],
                     description="Present on a replay: this is the job the key's first request started.")]


@extend_schema_serializer(component_name="JobImage")
class JobImageOutputSerializer(serializers.Serializer):
    """One delivered image, as JobOutputSerializer.get_images writes it (declared for the schema)."""

    id = serializers.IntegerField()
    url = serializers.URLField(help_text="The stored file, to its owner only.")
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    content_type = serializers.CharField()
    model = serializers.CharField(help_text="The model that made this image (its id at the provider): a batch may be "
                                            "served by two models of its tier (failover), at the tier's one price.")
    model_display_name = serializers.CharField(help_text="That model's name for people (the catalog's display "
                                                         "name): what to caption the image with.")


@extend_schema_serializer(component_name="Job")
class JobOutputSerializer(serializers.Serializer):
    # A plain Serializer, not a ModelSerializer: it is on every POST's path to the 202, and
    # ModelSerializer introspects the model on every instantiation.
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    user = serializers.SerializerMethodField()
    prompt = serializers.CharField()
    tier = serializers.SerializerMethodField()
    count = serializers.SerializerMethodField()
    max_tokens = serializers.IntegerField(allow_null=True)
    credits_held = serializers.IntegerField()
    credits_charged = serializers.IntegerField()
    images_requested = serializers.IntegerField(source="image_count")
    images_delivered = serializers.SerializerMethodField()
    images = serializers.SerializerMethodField()
    text = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()
    text_model = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def _images(self, job) -> list:
        """The job's images: given in the context as "images" when the caller knows them (a job
        just created has none, so its 202 spares the query), none for a text job, else read
        (prefetched by the readers)."""
        images = self.context.get("images")
        if images is None:
            return [] if job.kind == JobKind.TEXT else list(job.images.all())
        return images

    @extend_schema_field(UserRefSerializer(help_text="Who ran the job (an owner sees every member's jobs, a member "
                                                     "only their own)."))
    def get_user(self, job) -> dict:
        # Loaded with the job by every reader (job_get, job_list, the replay lookup), or the
        # requesting user on creation: no query here.
        return {"id": job.user_id, "username": job.user.get_username()}

    def get_tier(self, job) -> str | None:
        return job.tier or None

    def get_count(self, job) -> int | None:
        return job.image_count or None

    def get_images_delivered(self, job) -> int:
        return len(self._images(job))

    @extend_schema_field(JobImageOutputSerializer(many=True))
    def get_images(self, job) -> list[dict]:
        request = self.context.get("request")
        out = []
        images = list(self._images(job))
        shown = catalog_selectors.model_display_names() if images else {}
        for image in images:
            url = reverse("job-image", kwargs={"job_id": job.id, "index": image.index})
            # Images kept before the per-image model was recorded came from the job's one model.
            model = image.model_name or job.image_model_name
            out.append({"id": image.id, "url": request.build_absolute_uri(url) if request else url,
                        "width": image.width, "height": image.height, "content_type": image.content_type,
                        "model": model, "model_display_name": shown.get(model, model)})
        return out

    def get_text(self, job) -> str | None:
        return job.text if job.total_tokens is not None else None

    def get_tokens(self, job) -> dict | None:
        if job.total_tokens is None:
            return None
        return {"prompt": job.prompt_tokens, "completion": job.completion_tokens, "total": job.total_tokens}

    def get_text_model(self, job) -> str | None:
        return job.text_model_name or None

    def get_error(self, job) -> dict | None:
        if not job.error_message:
            return None
        return {"code": job.error_code, "message": job.error_message}

    def to_representation(self, job) -> dict:
        """What the declared fields above give, in their order (a test holds the two equal),
        written out: this serializer renders every generation's answer, and DRF deep-copies a
        serializer's twenty declared fields for each instance it makes (about 6% of a web
        process's CPU in bench/bench_inflight.py)."""
        return {"id": str(job.id), "kind": str(job.kind), "status": str(job.status), "user": self.get_user(job),
                "prompt": str(job.prompt), "tier": self.get_tier(job), "count": self.get_count(job),
                "max_tokens": _int(job.max_tokens), "credits_held": _int(job.credits_held),
                "credits_charged": _int(job.credits_charged), "images_requested": _int(job.image_count),
                "images_delivered": self.get_images_delivered(job), "images": self.get_images(job),
                "text": self.get_text(job), "tokens": self.get_tokens(job), "text_model": self.get_text_model(job),
                "error": self.get_error(job), "created_at": _when(job.created_at),
                "started_at": _when(job.started_at), "finished_at": _when(job.finished_at)}


_DATETIME = serializers.DateTimeField()  # its format and time zone, as the declared fields have them


def _int(value) -> int | None:
    return None if value is None else int(value)


def _when(value) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def job_public_data(job_id) -> dict:
    """A job's public representation, as GET /api/v1/jobs/{id}/ shows it with its image URLs made
    absolute with CREDITGATE_PUBLIC_URL: the `data` of its webhook events (handed to webhooks in
    GenerationConfig.ready, so webhooks deliver it without knowing jobs)."""
    job = Job.objects.select_related("user").prefetch_related("images").get(pk=job_id)
    data = dict(JobOutputSerializer(job).data)
    base = settings.CREDITGATE_PUBLIC_URL
    if base:
        data["images"] = [{**image, "url": urljoin(base, image["url"])} for image in data["images"]]
    return data


class PendingWait:
    """A wait a view asked for, run by `async_waits` once the sync view has returned: the job's
    end awaited on the event loop (no thread, no connection), then the response's body and status
    set from the job as it is then (`render`, in a thread; or `settled`, on the loop, from the job
    as its settlement in this process announced it); the waiter and the slot freed however it ends."""

    def __init__(self, *, waiter: waiting.Waiter, slot: waiting.WaitSlot, job: Job, seconds: int,
                 read: Callable[[], Job], render: Callable[[Job], None],
                 settled: Callable[[Job], None] | None = None):
        self.waiter, self.slot, self.job, self.seconds = waiter, slot, job, seconds
        self.read, self.render, self.settled = read, render, settled

    async def run(self) -> None:
        def read_and_render() -> Job:  # a final job is rendered in the thread that read it
            job = self.read()
            if job.status in FINAL_STATUSES:
                self.render(job)
            return job

        try:
            job = await waiting.job_wait_final(self.waiter, self.job, seconds=self.seconds, read=read_and_render,
                                               settled=self.settled)
        finally:
            self.waiter.close()
            self.slot.release()
        if job.status not in FINAL_STATUSES:  # the wait ended first: the job as it is now
            await waiting.in_thread(lambda: self.render(job))


def _wait_start(request, job_id, *, seconds: int, read: Callable[[], Job], refused_ok: bool,
                known: tuple[Job, waiting.Waiter] | None = None,
                ) -> tuple[Job, tuple[waiting.Waiter, waiting.WaitSlot] | None]:
    """The job read after its waiter was registered, with the waiter and a wait slot when it is not
    final. `known`: a job this request just created, with the waiter registered before it existed
    (nothing to read: none of its ends can have been missed). Past the account's or API key's
    limit of concurrent waits: TooManyWaits (429), or with `refused_ok` no wait (the job read, None)."""
    if known is not None:
        job, waiter = known
    else:
        waiter = waiting.Waiter(job_id)
        try:
            job = read()
        except BaseException:
            waiter.close()
            raise
    try:
        if job.status in FINAL_STATUSES:
            waiter.close()
            return job, None
        api_key = request_api_key(request)
        slot = waiting.wait_slot_take(account_id=job.account_id, api_key_id=api_key.pk if api_key else None)
    except waiting.TooManyWaits:
        waiter.close()
        if refused_ok:
            return job, None
        raise
    except BaseException:
        waiter.close()
        raise
    wait_noted(request, waiter=waiter, slot=slot)
    return job, (waiter, slot)


_WAITS = "creditgate_waits"  # the waits a request's view took, on the (Django) request


def wait_noted(request, *, waiter: waiting.Waiter | None = None, slot: waiting.WaitSlot | None = None) -> None:
    """Note on the request (a DRF view's) a waiter or wait slot its view took for the async part.
    Until that part takes them over, `view_sync_part` gives them back: should the view fail (an
    error answer) or its caller hang up while the view's thread runs. A slot left taken would lower
    the account's share of waits until a restart."""
    request._request.__dict__.setdefault(_WAITS, []).append((waiter, slot))


def _waits_let_go(request) -> None:
    for waiter, slot in request.__dict__.pop(_WAITS, []):
        if waiter is not None:
            waiter.close()
        if slot is not None:
            slot.release()


def _accepted(request, job: Job, created: bool, *, waited: int | None = None,
              waiter: waiting.Waiter | None = None) -> Response:
    """The answer to a generation POST: 202 with the job; with `Prefer: wait=N` (`waited`), the job
    once final (200) or as it is after N seconds (202), rendered after the wait. `waiter`: the one
    registered before the job was created (for a new job)."""
    wait = None
    response = Response()
    if waited is not None:  # Prefer: wait=N: the job as it is once final, or after N seconds
        job_id = job.id
        read = lambda: selectors.job_get(user=request.user, job_id=job_id)  # noqa: E731
        job, wait = _wait_start(request, job_id, seconds=waited, read=read, refused_ok=True,
                                known=(job, waiter) if waiter is not None else None)
        if wait is None and job.status not in FINAL_STATUSES:
            waited = None  # too many waits: the preference is ignored (RFC 7240), 202 at once as without it
        else:
            response["Preference-Applied"] = f"wait={waited}"
    response["Location"] = reverse("job-detail", kwargs={"job_id": job.id})
    if not created:
        response["Idempotent-Replayed"] = "true"

    def render(job: Job) -> None:
        context: dict = {"request": request}
        if waited is None and created:  # a job that was just created has no images yet: spare the query
            context["images"] = []
        response.data = JobOutputSerializer(job, context=context).data
        # Without a wait: 202, as ever (a replayed job included).
        final = waited is not None and job.status in FINAL_STATUSES
        response.status_code = status.HTTP_200_OK if final else status.HTTP_202_ACCEPTED

    def settled(final: Job) -> None:
        """The text job this request created, as its settlement in this process announced it:
        rendered on the loop, nothing read (its answer needs no other row; its user is the caller)."""
        final.user = request.user
        render(final)

    if wait is None:
        render(job)
    else:
        assert waited is not None
        response.pending_wait = PendingWait(  # type: ignore[attr-defined]  # read by async_waits
            waiter=wait[0], slot=wait[1], job=job, seconds=waited, read=read, render=render,
            settled=settled if waiter is not None and job.kind == JobKind.TEXT else None)
    return response


async def view_sync_part(view, request, *args: Any, left: str, **kwargs: Any) -> tuple[Any, Any]:
    """The first part of an async view: `view` (a DRF view) run as ever in a thread, behind the
    database gate (authentication, validation, the job created or read). Returns its response and
    what it left for the async part (the response's attribute `left`, taken off it); when it left
    something, the thread and its database connections are given back before that is awaited.

    The waits the view took (`wait_noted`) go with what it left; it left nothing (it failed), or
    the caller hung up meanwhile (Django cancels the view), they are given back here. The thread of
    a hang-up cannot be stopped: it is awaited to its end first, so that nothing it takes is missed."""
    def sync_part():
        response = view(request, *args, **kwargs)
        if getattr(response, left, None) is not None:
            waiting.release_connections()
        return response

    async with db_gate():
        part = asyncio.ensure_future(sync_to_async(sync_part, thread_sensitive=True)())
        try:
            try:
                response = await asyncio.shield(part)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await part
                raise
        except BaseException:
            _waits_let_go(request)
            raise
    pending = response.__dict__.pop(left, None)
    if pending is None:
        _waits_let_go(request)
    else:  # the async part has them now
        request.__dict__.pop(_WAITS, None)
        waiting.release_request_thread()
    return response, pending


def as_async_view(async_view, view):
    """`async_view`, made of the DRF view `view`, declared as DRF's as_view() declares a view to
    Django and drf-spectacular: the view class (the schema), and no CSRF check by the middleware
    (DRF's SessionAuthentication does its own)."""
    async_view.cls = view.cls
    async_view.initkwargs = view.initkwargs
    async_view.csrf_exempt = True
    return async_view


def async_waits(view):
    """`view` (a DRF view) as an async view, so that a wait costs no thread: when it asked for a
    wait (`response.pending_wait`), the wait is awaited on the event loop (generation/waiting.py)
    once its thread is given back, then the response is completed."""
    async def waiting_view(request, *args, **kwargs):
        if "wait" in request.GET or "wait" in request.headers.get("Prefer", "").lower():
            await waiting.listener_ready()  # listening before the view reads the job (no-op without Redis)
        response, pending = await view_sync_part(view, request, *args, left="pending_wait", **kwargs)
        if pending is not None:
            await pending.run()
        return response

    return as_async_view(waiting_view, view)


class _GenerationApi(APIView):
    """The fixed sequence of every generation endpoint: hand the body to the request layer (which
    answers replays, checks, prices and holds), answer 202 with the job."""

    kind: str

    def get_serializer_class(self):  # how drf-spectacular finds the request body of an APIView
        return intake.REQUESTS[self.kind]

    @extend_schema(responses={
        202: JobOutputSerializer,
        200: OpenApiResponse(JobOutputSerializer, description="With Prefer: wait=N, the job became final within "
                                                              "the wait."),
        402: error_response(
        "insufficient_credits (details: required, available); member_cap_exceeded or api_key_cap_exceeded: the "
        "member's or the API key's monthly cap would be passed (details: cap, spent, held, required, month); "
        "shortfall_owed: a refund or dispute left credits owed (details: shortfall, available)."),
        409: error_response("idempotency_conflict: this Idempotency-Key was used with another request."),
        422: error_response("tier_unavailable: the tier (or text generation) cannot be served right now "
                            "(details name it); nothing was held."),
        429: error_response("rate_limited: too many jobs started in the period; too_many_jobs_in_flight: the "
                            "account, or the API key, already has its limit of jobs in flight, queued or running "
                            "(details: scope `account` or `api_key`, limit, in_flight); nothing was held. "
                            "details.retry_after (also the Retry-After header) says when to try again. A replay is "
                            "never refused. (Past the limit of concurrent waits, `Prefer: wait` is ignored: never a "
                            "429.)")},
        parameters=[IDEMPOTENCY_HEADER, WEBHOOK_HEADER, PREFER_HEADER, *ACCEPTED_HEADERS])
    def post(self, request):
        webhook_services.endpoint_id_check(request.headers.get("Webhook-Endpoint"))  # its shape, before a replay
        waited = waiting.prefer_wait(request.headers.get("Prefer"))
        def create(job_id):
            origin = intake.JobOrigin(api_key=request_api_key(request),
                                      webhook_endpoint=request.headers.get("Webhook-Endpoint"),
                                      run_here=waited is not None, job_id=job_id)
            return intake.job_create(kind=self.kind, user=request.user, body=request.data,
                                     idempotency_key=request.headers.get("Idempotency-Key"), origin=origin)

        job, created, waiter = waiting.job_create_waited(create, wait=waited is not None)
        return _accepted(request, job, created, waited=waited, waiter=waiter)


class ImageGenerationApi(_GenerationApi):
    kind = JobKind.IMAGE


class TextGenerationApi(_GenerationApi):
    kind = JobKind.TEXT


class ArticleGenerationApi(_GenerationApi):
    kind = JobKind.ARTICLE


@extend_schema_serializer(component_name="SpendingLimit")
class LimitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["balance", "member_cap", "api_key_cap"])
    remaining = serializers.IntegerField(help_text="Credits this limit still allows now.")
    cap = serializers.IntegerField(allow_null=True, help_text="A cap's size (credits per month); null for the balance.")
    used = serializers.IntegerField(allow_null=True, help_text="A cap's use this month (spent + held); null for "
                                                               "the balance.")
    covers = serializers.BooleanField(help_text="Whether this limit allows the estimated request.")


@extend_schema_serializer(component_name="JobsInFlightLimit")
class InFlightSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["account", "api_key"], help_text=(
        "Whose limit: the account's, or the API key's the request is made with."))
    limit = serializers.IntegerField(help_text="Jobs that may be in flight (queued or running) at once.")
    in_flight = serializers.IntegerField(help_text="Jobs in flight now.")
    admits = serializers.BooleanField(help_text="Whether a job may start now; when not, a generation request is "
                                                "refused with 429 too_many_jobs_in_flight.")


class EstimateApi(APIView):
    """What a generation request would hold, checked and priced by the same request layer as the
    generation endpoints (so the page's total is the job's hold). Lives with generation: it
    prices generation requests."""

    @extend_schema_serializer(component_name="Estimate")
    class OutputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=JobKind.choices)
        credits = serializers.IntegerField(required=False, help_text="kind=image: what the images cost.")
        credits_max = serializers.IntegerField(required=False,
                                               help_text="kind=text or article: the most it can cost (its hold).")
        tier = serializers.CharField(required=False)
        count = serializers.IntegerField(required=False)
        image_count = serializers.IntegerField(required=False)
        credits_per_image = serializers.IntegerField(required=False)
        max_tokens = serializers.IntegerField(required=False)
        tokens_per_credit = serializers.IntegerField(required=False)
        limit = LimitSerializer(help_text=(
            "The limit that binds the caller's next job: of the account's available credits (`balance`), the "
            "member's monthly cap (`member_cap`) and the API key's (`api_key_cap`), the one that allows the "
            "least. `covers` says whether it allows this request; when it does not, the generation request "
            "is refused with 402 by that limit."))
        jobs_in_flight = InFlightSerializer(allow_null=True, help_text=(
            "The limit on jobs in flight that binds the caller's next job (the account's, or the API key's: the "
            "one with the fewest places left); null when there is none."))

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="EstimateRequest", resource_type_field_name="kind",
            serializers=dict(intake.ESTIMATE_REQUESTS)),
        responses={200: OutputSerializer,
                   400: error_response("invalid_request: details name each field and what is wrong with it."),
                   422: error_response("tier_unavailable: nothing can serve that tier (or text) right now.")})
    def post(self, request):
        quote = intake.estimate(body=request.data)
        out: dict = {"kind": quote.kind}
        if quote.kind == JobKind.IMAGE:
            out.update(credits=quote.price.credits, tier=quote.request["tier"], count=quote.request["count"])
        else:
            assert quote.text_model is not None  # a text or article quote has its model
            out.update(credits_max=quote.price.credits, max_tokens=quote.request["max_tokens"],
                       tokens_per_credit=quote.text_model.tokens_per_credit)
        if quote.kind == JobKind.ARTICLE:
            out.update(tier=quote.request["tier"], image_count=quote.request["image_count"])
        if quote.image_model is not None:
            out["credits_per_image"] = quote.image_model.credits_per_image
        limit = credits_selectors.binding_limit(member=credits_services.member_for_user(user=request.user),
                                                api_key=request_api_key(request))
        out["limit"] = {**limit.as_dict(), "covers": quote.price.credits <= limit.remaining}
        share = charging.in_flight_binding(credits_services.account_for_user(user=request.user),
                                           request_api_key(request))
        out["jobs_in_flight"] = None if share is None else {
            "scope": share.scope, "limit": share.limit, "in_flight": share.in_flight, "admits": share.admits}
        return Response(out)


class JobListApi(APIView):
    pagination_class = PageNumberPagination  # read by drf-spectacular too: the schema declares the page

    @extend_schema(responses={200: JobOutputSerializer(many=True)})
    def get(self, request):
        """Your jobs, newest first, paginated: an owner sees the account's, with who ran each; a member their own."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.job_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True, context={"request": request}).data)


class JobDetailApi(APIView):
    @extend_schema(responses={
        200: JobOutputSerializer,
        429: error_response("too_many_waits: with `?wait`, the job is not final and the account (or the API key) "
                            "already holds its limit of concurrent waits (details: scope, limit, retry_after; also "
                            "the Retry-After header). Ask again later, or without `wait`.")},
        parameters=[WAIT_PARAM])
    def get(self, request, job_id):
        seconds = waiting.wait_param(request.query_params.get("wait"))
        read = lambda: selectors.job_get(user=request.user, job_id=job_id)  # noqa: E731
        if not seconds:
            return Response(JobOutputSerializer(read(), context={"request": request}).data)
        job, wait = _wait_start(request, job_id, seconds=seconds, read=read, refused_ok=False)
        response = Response()

        def render(job: Job) -> None:
            response.data = JobOutputSerializer(job, context={"request": request}).data

        if wait is None:
            render(job)
        else:  # rendered after the wait
            response.pending_wait = PendingWait(  # type: ignore[attr-defined]  # read by async_waits
                waiter=wait[0], slot=wait[1], job=job, seconds=seconds, read=read, render=render)
        return response


class JobImageApi(APIView):
    """The stored image file, to its owner only (provider URLs expire; ours do not)."""

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, job_id, index):
        image = selectors.job_image_get(user=request.user, job_id=job_id, index=index)
        response = FileResponse(image.file.open("rb"), content_type=image.content_type)
        response["Cache-Control"] = "private, max-age=86400"
        return response
