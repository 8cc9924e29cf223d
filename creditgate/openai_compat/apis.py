"""The OpenAI-compatible surface: GET /v1/models, POST /v1/chat/completions (streamed or not) and
POST /v1/images/generations, for OpenAI's SDKs pointed at `<server>/v1` with a creditgate API key.

Each endpoint is a DRF view for what DRF does well (authentication by API key or session, the
body, errors in OpenAI's shape: errors.py), wrapped in an async view for what follows the hold:
a chat is run by its request on the server's event loop (generation.streams), its pieces sent as
Server-Sent Events as they come; images are run on this process's loop (an inline run) and
awaited without a thread (generation.waiting). Money is decided where it always is
(generation.charging): these views only say what was asked and show what it cost.

What a response says of its cost, beyond OpenAI's fields:
- non-streamed answers: the headers X-Creditgate-Job-Id, X-Creditgate-Credits-Held and
  X-Creditgate-Credits-Charged (and Idempotent-Replayed: true on a replay);
- streams: a `creditgate` object in the first chunk (job_id, credits_held) and in the last chunk
  before `[DONE]` (also credits_charged and the job's status); after an error event, an SSE comment
  `: creditgate {...}` with the same.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

from django.core import signing
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.catalog import selectors as catalog_selectors
from creditgate.core import runtime
from creditgate.credits.authentication import request_api_key
from creditgate.generation import apis as generation_apis
from creditgate.generation import intake, selectors, streams, waiting
from creditgate.generation.models import FINAL_STATUSES, Job, JobImage, JobKind, JobStatus
from creditgate.openai_compat import names
from creditgate.openai_compat import requests as v1_requests
from creditgate.openai_compat.errors import openai_error_response, openai_exception_handler

IMAGES_WAIT_SECONDS = 600  # a batch of slow images; past it the answer is a 504 naming the job
CHAT_WAIT_SECONDS = 600  # a long text, not streamed; likewise
REPLAY_WAIT_SECONDS = 30  # a replay of a request still running waits this long for it
IMAGE_URL_SECONDS = 3600  # how long an image's URL works, as OpenAI's do
_IMAGE_URL_SALT = "creditgate.v1.image"


class _V1Api(APIView):
    def get_exception_handler(self):
        return openai_exception_handler


def _cost_headers(response: HttpResponse, job: Job, *, replayed: bool = False) -> HttpResponse:
    response["X-Creditgate-Job-Id"] = str(job.pk)
    response["X-Creditgate-Credits-Held"] = str(job.credits_held)
    response["X-Creditgate-Credits-Charged"] = str(job.credits_charged)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _job_error(job: Job) -> HttpResponse:
    """A job that delivered nothing, as OpenAI's error: a provider's failure is a 502, a model that
    cannot be served a 503 (both retryable by the SDKs)."""
    status = 503 if job.error_code in ("tier_unavailable", "provider_unavailable") else 502
    return _cost_headers(openai_error_response(status, job.error_code or "generation_failed",
                                               job.error_message or "The provider could not make this."), job)


def _async_view(view, handler):
    """An async view: `view` (a _V1Api's as_view()) run in a thread as the job API's views are;
    when it left work for the async part (`response.v1`), `handler(request, pending)` answers."""
    async def async_view(request, *args, **kwargs):
        response, pending = await generation_apis.view_sync_part(view, request, *args, left="v1", **kwargs)
        return response if pending is None else await handler(request, pending)

    return generation_apis.as_async_view(async_view, view)


# --- Models -----------------------------------------------------------------------------------


@extend_schema(exclude=True)  # OpenAI's API, documented by OpenAI and the README; not the job API's schema
class ModelListApi(_V1Api):
    def get(self, request):
        routing = catalog_selectors.routing_get()
        return Response({"object": "list", "data": [m.as_openai() for m in names.models_listed(routing)]})


@extend_schema(exclude=True)
class ModelDetailApi(_V1Api):
    def get(self, request, model_id: str):
        for listed in names.models_listed(catalog_selectors.routing_get()):
            if listed.id == model_id:
                return Response(listed.as_openai())
        raise names.ModelNotFound(model_id, kind="image" if model_id.startswith(names.TIER_PREFIX) else "text")


# --- Chat ---------------------------------------------------------------------------------------


@extend_schema(exclude=True)
class ChatCompletionsApi(_V1Api):
    def post(self, request):
        chat = v1_requests.chat_check(request.data)
        routing = catalog_selectors.routing_get()
        names.text_model_named(chat.model, routing)
        # A non-streamed chat waits for its job as a Prefer: wait does: a share of the waits.
        slot = None if chat.stream else _wait_slot(request)
        job, created, waiter = waiting.job_create_waited(
            lambda job_id: intake.job_create_chat(user=request.user, body=request.data, checked=chat.checked(),
                                                  idempotency_key=request.headers.get("Idempotency-Key"),
                                                  api_key=request_api_key(request), job_id=job_id),
            wait=not chat.stream)
        if waiter is not None:
            generation_apis.wait_noted(request, waiter=waiter)
        response = Response()
        response.v1 = (chat, job, created, slot, waiter, routing.text_models_ordered)  # type: ignore[attr-defined]
        return response


def _wait_slot(request) -> waiting.WaitSlot:
    """One of the account's (and the API key's) concurrent waits, or 429 too_many_waits; given back by
    the async part, or by view_sync_part if the view fails or its caller hangs up first."""
    api_key = request_api_key(request)
    slot = waiting.wait_slot_take(account_id=request.user.credit_membership.account_id,
                                  api_key_id=api_key.pk if api_key else None)
    generation_apis.wait_noted(request, slot=slot)
    return slot


def _chunk(job: Job, delta: dict | None, *, finish_reason: str | None = None, **extra) -> dict:
    chunk: dict = {"id": f"chatcmpl-{job.pk.hex}", "object": "chat.completion.chunk",
                   "created": int(job.created_at.timestamp()), "model": job.text_model_name,
                   "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                         "finish_reason": finish_reason}]}
    chunk.update(extra)
    return chunk


def _sse(data: dict | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _usage(job: Job) -> dict:
    return {"prompt_tokens": job.prompt_tokens or 0, "completion_tokens": job.completion_tokens or 0,
            "total_tokens": job.total_tokens or 0}


def _cost(job: Job) -> dict:
    return {"job_id": str(job.pk), "credits_held": job.credits_held, "credits_charged": job.credits_charged,
            "status": job.status}


def _finish_reason(job: Job, run: streams.StreamRun | None = None) -> str:
    if run is not None and run.finish_reason:
        return run.finish_reason
    return "length" if job.max_tokens and (job.completion_tokens or 0) >= job.max_tokens else "stop"


def _completion(job: Job, run: streams.StreamRun | None = None) -> dict:
    return {"id": f"chatcmpl-{job.pk.hex}", "object": "chat.completion", "created": int(job.created_at.timestamp()),
            "model": job.text_model_name,
            "choices": [{"index": 0, "finish_reason": _finish_reason(job, run), "logprobs": None,
                         "message": {"role": "assistant", "content": job.text, "refusal": None}}],
            "usage": _usage(job)}


async def _chat(request, pending) -> HttpResponse | StreamingHttpResponse:
    chat, job, created, slot, waiter, models = pending
    if not chat.stream or not created:
        # A text job run inline (or the first request's job, on a replay): its answer once it is
        # final. If the caller hangs up meanwhile, it still runs to its end and is charged for it.
        try:
            seconds = CHAT_WAIT_SECONDS if created else REPLAY_WAIT_SECONDS
            job = await _job_final(request, job, seconds=seconds, waiter=waiter)
        finally:
            if slot is not None:
                slot.release()
        return _chat_answer(job, replayed=not created)
    runtime.sync_threads.set(runtime.sync_pool())  # the run's DB steps: a bounded pool
    run = streams.StreamRun(job, models=models)
    run.start()
    # The first piece before the answer starts: a failure before any text is an HTTP error the SDKs
    # raise as such, not a stream that errs at once. Nothing waits longer than the first token.
    try:
        first = await run.next_piece()
    except asyncio.CancelledError:  # the caller hung up before the first token
        run.stop()
        raise
    if first is None and run.error is not None:
        return _failed(run, run.final or job)
    response = StreamingHttpResponse(_events(run, chat, job, first), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx and the like: pass each event on at once
    response["X-Creditgate-Job-Id"] = str(job.pk)
    response["X-Creditgate-Credits-Held"] = str(job.credits_held)
    return response


def _failed(run: streams.StreamRun, job: Job) -> HttpResponse:
    error = run.error or streams.StreamError("generation_failed", "The provider could not make this.")
    return _cost_headers(openai_error_response(error.status if error.status >= 500 else 502, error.code,
                                               error.message), job)


async def _events(run: streams.StreamRun, chat: v1_requests.Chat, job: Job, first: str | None):
    """The SSE body: a role chunk, a chunk per piece as it comes, then the end. If the caller hangs
    up, the server cancels this (or closes it) and the run is told to stop: it settles on its own."""
    try:
        yield _sse(_chunk(job, {"role": "assistant", "content": ""},
                          creditgate={"job_id": str(job.pk), "credits_held": job.credits_held}))
        piece = first
        while piece is not None:
            yield _sse(_chunk(job, {"content": piece}))
            piece = await run.next_piece()
        final = await run.finished() or job
        if run.error is not None:
            error = run.error
            yield f": creditgate {json.dumps(_cost(final))}\n\n".encode()
            yield _sse({"error": {"message": error.message, "type": "server_error", "param": None,
                                  "code": error.code}})
            return
        usage = {"usage": None} if chat.include_usage else {}
        if chat.include_usage:
            yield _sse(_chunk(final, {}, finish_reason=_finish_reason(final, run), **usage))
            yield _sse(_chunk(final, None, usage=_usage(final), creditgate=_cost(final)))
        else:
            yield _sse(_chunk(final, {}, finish_reason=_finish_reason(final, run), creditgate=_cost(final)))
        yield _sse("[DONE]")
    finally:
        run.stop()  # a no-op once the run ended


def _chat_answer(job: Job, *, replayed: bool) -> HttpResponse:
    """A chat's job as its answer: the completion (a replay's: the stored one, never streamed, the
    provider not called again), its error, or a 409 (a replay) or 504 while it is still running."""
    if job.status not in FINAL_STATUSES:
        if replayed:
            return openai_error_response(409, "request_in_progress", "The first request with this Idempotency-Key "
                                         "is still running; try again later.", retry_after=5)
        return _cost_headers(openai_error_response(
            504, "still_running", f"The text is not ready yet; GET /api/v1/jobs/{job.pk}/ shows it when it is."), job)
    if job.total_tokens is None:
        return _cost_headers(_job_error(job), job, replayed=replayed)
    return _cost_headers(JsonResponse(_completion(job)), job, replayed=replayed)


async def _job_final(request, job: Job, *, seconds: float, waiter: waiting.Waiter | None = None) -> Job:
    """The job once final (or after `seconds`); `waiter`: one registered before the job was created."""
    return await waiting.job_await_final(job.pk, seconds=seconds,
                                         read=lambda: selectors.job_get(user=request.user, job_id=job.pk),
                                         known=(job, waiter) if waiter is not None else None)


chat_completions = _async_view(ChatCompletionsApi.as_view(), _chat)


# --- Images -------------------------------------------------------------------------------------


@extend_schema(exclude=True)
class ImageGenerationsApi(_V1Api):
    def post(self, request):
        routing = catalog_selectors.routing_get()
        asked = v1_requests.images_check(request.data, max_n=routing.settings.max_images_per_request)
        tier, _ = names.tier_named(asked.model, routing)
        body: dict = {"prompt": asked.prompt, "tier": tier, "count": asked.n}
        if asked.size:
            body["size"] = asked.size
        api_key = request_api_key(request)
        slot = _wait_slot(request)
        job, created = intake.job_create(kind=JobKind.IMAGE, user=request.user, body=body,
                                         idempotency_key=request.headers.get("Idempotency-Key"),
                                         origin=intake.JobOrigin(api_key=api_key, run_here=True))
        response = Response()
        response.v1 = (asked, job, created, slot)  # type: ignore[attr-defined]  # read by image_generations
        return response


async def _images(request, pending) -> HttpResponse:
    asked, job, created, slot = pending
    try:
        job = await _job_final(request, job, seconds=IMAGES_WAIT_SECONDS)
    finally:
        slot.release()
    if job.status not in FINAL_STATUSES:
        return _cost_headers(openai_error_response(
            504, "still_running", f"The images are not ready yet; GET /api/v1/jobs/{job.pk}/ shows them when they "
                                  "are."), job)
    data = await waiting.in_thread(lambda: _images_data(request, job, b64=asked.response_format == "b64_json"))
    if not data:
        return _cost_headers(_job_error(job), job, replayed=not created)
    return _cost_headers(JsonResponse({"created": int(time.time()), "data": data}), job, replayed=not created)


def _images_data(request, job: Job, *, b64: bool) -> list[dict]:
    """The job's delivered images as OpenAI's `data`: their bytes in base64, or signed URLs."""
    data = []
    for image in JobImage.objects.filter(job=job).order_by("index"):
        if b64:
            with image.file.open("rb") as handle:
                data.append({"b64_json": base64.b64encode(handle.read()).decode()})
        else:
            token = image_token(image)
            data.append({"url": request.build_absolute_uri(reverse("v1-image-file", kwargs={"token": token}))})
    return data


image_generations = _async_view(ImageGenerationsApi.as_view(), _images)


def image_token(image: JobImage) -> str:
    """A URL-safe signed reference to one stored image: anyone holding it may fetch that image for
    IMAGE_URL_SECONDS (as OpenAI's image URLs, which clients fetch without credentials)."""
    return signing.TimestampSigner(salt=_IMAGE_URL_SALT).sign(f"{image.job_id}.{image.index}")


@extend_schema(exclude=True)
class ImageFileApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, token: str):
        try:
            value = signing.TimestampSigner(salt=_IMAGE_URL_SALT).unsign(token, max_age=IMAGE_URL_SECONDS)
        except signing.BadSignature:
            raise Http404("This image link is unknown or has expired.") from None
        job_id, _, index = value.rpartition(".")
        image = JobImage.objects.filter(job_id=job_id, index=int(index), job__status__in=(
            JobStatus.SUCCEEDED, JobStatus.PARTIAL)).first()
        if image is None:
            raise Http404("This image is gone.")
        response = FileResponse(image.file.open("rb"), content_type=image.content_type)
        response["Cache-Control"] = f"private, max-age={IMAGE_URL_SECONDS}"
        return response
