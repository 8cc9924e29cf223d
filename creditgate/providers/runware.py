"""Runware through a small async client (httpx.AsyncClient) over its REST task API (PROVIDERS.md §1, §5).

A POST of a JSON task array is all the API needs, so neither SDK is used (one is WebSocket-only,
the other pulls in aiohttp and a model registry of its own); a call awaits its answer on the job
runner's event loop and holds no thread while Runware works.

Retries and money: Runware has no idempotency key; the client-chosen taskUUID is the handle.
After an answer (an error status, an error envelope) the task is over, so a retry sends a new
task. After an *ambiguous* failure (the request went out, no answer came back) the task may be
running and billed, so it is looked up by its taskUUID (getResponse) instead of sent again; if
the lookup finds nothing, the images are reported failed rather than risk paying twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from creditgate.catalog.models import AIModelConfig
from creditgate.providers import base
from creditgate.providers.base import (
    CredentialCheck,
    ImageOutcome,
    ProviderAdapter,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderContentRefused,
    ProviderError,
    ProviderModel,
    ProviderModelGone,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ProviderServerError,
    ProviderTimeout,
    TextResult,
    call_with_retries,
    fetch_image,
    padded_outcomes,
    parse_retry_after,
    sniff_image_type,
)

logger = logging.getLogger("creditgate.providers.runware")

# runware-python's grouping of raw error codes (PROVIDERS.md §1.4); codes still vary by model.
SAFETY_CODES = {"contentPolicyViolation", "providerContentPolicyViolation", "nsfwContentDetected", "promptBlocked"}
AUTH_CODES = {"invalidApiKey", "missingApiKey", "unauthorized", "forbidden"}
PROVIDER_CODES = {"inferenceError", "noAvailableServer", "modelUnavailable", "internalServerError"}
TIMEOUT_CODES = {"timeoutProvider", "timeout"}
NOT_FOUND_CODES = {"taskNotFound", "notFound", "invalidTaskUUID"}
# A model Runware no longer serves. Runware's own code for it is not documented in our sources
# (PROVIDERS.md §7); this is the one the sandbox answers with for a dropped model.
MODEL_GONE_CODES = {"modelNotFound"}
RESULT_FIELDS = ("imageURL", "imageBase64Data", "imageDataURI")


class RunwareAPIError(Exception):
    """Runware's answer as it came, kept as the cause of our error for logs and debugging; its
    text is the provider's and never shown to users."""

    def __init__(self, status: int, errors: list[dict]):
        super().__init__(f"HTTP {status}: " + "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors))
        self.status, self.errors = status, errors


class _AmbiguousFailure(ProviderTimeout):
    """The request was sent and no answer came back: never resend it blindly."""

    retryable = False


class RunwareAdapter(ProviderAdapter):
    provider_id = "runware"
    default_base_url = "https://api.runware.ai/v1"
    sandbox_path = "runware/v1"
    option_names = {"negative_prompt": "negativePrompt", "steps": "steps", "cfg_scale": "CFGScale", "seed": "seed"}
    lookup_attempts = 3
    resumable = True

    # Transport.

    async def _post(self, tasks: list[dict], *, read_timeout: float) -> tuple[int, Any, Any]:
        try:
            response = await self.http.post(
                self.base_url, json=tasks, timeout=httpx.Timeout(read_timeout, connect=self.policy.connect_timeout),
                headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"})
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing was sent
            raise ProviderTimeout("The AI provider could not be reached in time.") from exc
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:  # sent, or partly: it may be running
            raise _AmbiguousFailure() from exc
        except httpx.ConnectError as exc:  # no connection: never sent
            raise ProviderServerError("The AI provider could not be reached.") from exc
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise _AmbiguousFailure("The AI provider dropped the connection before answering.") from exc
        except httpx.HTTPError as exc:
            raise ProviderServerError("The AI provider could not be reached.") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body, response.headers

    # Images.

    async def _generate_image_call(self, *, model: AIModelConfig, prompt: str, n: int, width: int, height: int,
                             params: dict, task_id: str | None = None,
                             record: base.TryRecorder | None = None) -> list[ImageOutcome]:
        tries = iter(_task_uuids(task_id or str(uuid.uuid4()), self.policy.max_retries))

        async def attempt() -> list[ImageOutcome]:
            task_uuid = next(tries)  # a new task per attempt: the previous one ended with an answer
            task = {"includeCost": True, "outputType": "URL", **params,
                    "taskType": "imageInference", "taskUUID": task_uuid, "model": model.model_name,
                    "positivePrompt": prompt, "width": width, "height": height, "numberResults": n}
            try:
                try:
                    status, body, headers = await self._post([task], read_timeout=self.policy.image_timeout)
                except _AmbiguousFailure as exc:
                    status, body, headers = await self._look_up(task_uuid, cause=exc)
                return await self._outcomes(status, body, headers, task_uuid=task_uuid, n=n)
            except ProviderError as exc:
                exc.request_id = exc.request_id or task_uuid  # the try's task, for the record of calls
                raise

        return await call_with_retries(attempt, policy=self.policy, what="runware imageInference", record=record,
                                       describe=_try_facts)

    async def resume_images(self, *, model: AIModelConfig, task_id: str, n: int,
                      record: base.TryRecorder | None = None) -> list[ImageOutcome] | None:
        """Look up the tasks a call sent under `task_id`, in the order they were sent: a retry is
        only sent after the previous try was answered with an error, so the first task that is not
        found ends the search. The images of the task that delivered, or None if none did. Each
        task found is reported to `record` as the try it was."""
        for task_uuid in _task_uuids(task_id, self.policy.max_retries):
            try:
                status, body, headers = await self._post([{"taskType": "getResponse", "taskUUID": task_uuid}],
                                                         read_timeout=min(self.policy.image_timeout, 30.0))
            except ProviderError:
                return None  # cannot tell now: ask again rather than wait
            if _task_items(body, task_uuid):
                outcomes = await self._outcomes(status, body, headers, task_uuid=task_uuid, n=n)
                if record is not None:
                    record(base.ProviderTry(ok=True, latency_ms=None, **_try_facts(outcomes)))
                return padded_outcomes(outcomes, n)
            errors = _task_errors(body, task_uuid)
            if not errors or all(str(e.get("code")) in NOT_FOUND_CODES for e in errors):
                return None  # never sent: nor was any retry after it
            if record is not None:  # this try was answered with an error; a retry followed it
                record(base.ProviderTry.failed(classify(status, errors, retry_after=None), latency_ms=None,
                                               request_id=task_uuid))
        return None

    async def _look_up(self, task_uuid: str, *, cause: ProviderError) -> tuple[int, Any, Any]:
        for attempt in range(self.lookup_attempts):
            if attempt:
                await base.sleep(self.policy.delay_before_retry(attempt, cause))
            try:
                status, body, headers = await self._post([{"taskType": "getResponse", "taskUUID": task_uuid}],
                                                   read_timeout=min(self.policy.image_timeout, 30.0))
            except ProviderError:
                continue
            errors = _task_errors(body, task_uuid)
            if _task_items(body, task_uuid) or any(str(e.get("code")) not in NOT_FOUND_CODES for e in errors):
                return status, body, headers
        logger.warning("runware: task %s unanswered and not found by getResponse; not resubmitted", task_uuid)
        raise ProviderTimeout("The AI provider did not answer in time.", retryable=False) from cause

    async def _outcomes(self, status: int, body: Any, headers: Any, *, task_uuid: str, n: int) -> list[ImageOutcome]:
        items = _task_items(body, task_uuid)
        errors = _task_errors(body, task_uuid)
        if not items:
            raise classify(status, errors, retry_after=parse_retry_after(headers)) from RunwareAPIError(status, errors)
        # The images download at once, at most max_parallel_calls at a time.
        downloads = asyncio.Semaphore(max(1, self.policy.max_parallel_calls))

        async def bounded(item: dict) -> ImageOutcome:
            async with downloads:
                return await self._outcome(item, task_uuid=task_uuid)

        outcomes = list(await asyncio.gather(*(bounded(item) for item in items[:n])))
        if errors and len(outcomes) < n:
            # The task delivered part of numberResults; the rest failed with these errors.
            per_image = classify(500, errors, retry_after=None)
            per_image.__cause__ = RunwareAPIError(status, errors)
            outcomes.extend(ImageOutcome.failed(per_image, provider_task_id=task_uuid)
                            for _ in range(n - len(outcomes)))
        return outcomes

    async def _outcome(self, item: dict, *, task_uuid: str) -> ImageOutcome:
        url = item.get("imageURL")
        try:
            if url:
                data, content_type = await fetch_image(url, policy=self.policy, what="runware image download",
                                                       client=self.http)
            else:
                encoded = item.get("imageBase64Data") or str(item.get("imageDataURI") or "").partition(",")[2]
                try:
                    data = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise ProviderBadResponse("The AI provider sent an image we could not decode.") from exc
                sniffed = sniff_image_type(data)
                if sniffed is None:
                    raise ProviderBadResponse("The AI provider's image is not a PNG, JPEG or WEBP file.")
                content_type = sniffed
        except ProviderError as exc:
            logger.warning("runware image %s of task %s: %s", item.get("imageUUID"), task_uuid, exc.message)
            # Made (and billed) even though we could not fetch it: its cost stays on the record.
            return ImageOutcome(ok=False, error_code=exc.code, error_message=exc.message, provider_task_id=task_uuid,
                                cost_usd=_decimal_or_none(item.get("cost")))
        return ImageOutcome(ok=True, data=data, content_type=content_type, source_url=url,
                            provider_image_id=item.get("imageUUID"), provider_task_id=task_uuid,
                            seed=_int_or_none(item.get("seed")), cost_usd=_decimal_or_none(item.get("cost")))

    # Model lifecycle.

    search_tasks_per_request = 20

    async def list_models(self, *, names: Sequence[str]) -> list[ProviderModel]:
        """Runware's modelSearch task, one per name (its catalog is far too large to list whole),
        several in one request. A model is offered when a result carries its exact AIR; a result
        whose status is "deprecated" is announced for retirement (the search gives no date)."""
        names = list(dict.fromkeys(names))
        found: list[ProviderModel] = []
        for start in range(0, len(names), self.search_tasks_per_request):
            chunk = names[start:start + self.search_tasks_per_request]
            found.extend(await call_with_retries(functools.partial(self._search, chunk), policy=self.policy,
                                                 what="runware modelSearch"))
        return found

    async def _search(self, names: list[str]) -> list[ProviderModel]:
        tasks = {str(uuid.uuid4()): name for name in names}
        status, body, headers = await self._post(
            [{"taskType": "modelSearch", "taskUUID": task_uuid, "search": name, "limit": 100}
             for task_uuid, name in tasks.items()], read_timeout=min(self.policy.text_timeout, 30.0))
        items = {d.get("taskUUID"): d for d in ((body or {}).get("data") or [] if isinstance(body, dict) else [])
                 if isinstance(d, dict) and d.get("taskType") == "modelSearch"}
        errors = _errors(body)
        if status != 200 or errors or set(items) != set(tasks):
            raise classify(status if status != 200 else 500, errors,
                           retry_after=parse_retry_after(headers)) from RunwareAPIError(status, errors)
        found = []
        for task_uuid, name in tasks.items():
            for card in items[task_uuid].get("results") or []:
                if isinstance(card, dict) and card.get("air") == name:
                    found.append(ProviderModel(name=name, deprecated=card.get("status") == "deprecated"))
                    break
        return found

    # Text: Runware serves the image tiers only.

    async def generate_text(self, *, model: AIModelConfig, prompt: str, max_tokens: int,
                            temperature: float | None = None, record: base.TryRecorder | None = None,
                            messages: list[dict] | None = None) -> TextResult:
        raise ProviderRejectedRequest("This provider does not generate text.")

    # Credentials.

    async def check_credentials(self) -> CredentialCheck:
        try:
            status, body, _headers = await self._post([{"taskType": "authentication", "apiKey": self.api_key}],
                                               read_timeout=15.0)
        except ProviderError as exc:
            return CredentialCheck(ok=False, message=f"The key could not be checked: {exc.message}")
        if status == 200:
            return CredentialCheck(ok=True, message="The API key works: Runware accepted it.")
        error = classify(status, _errors(body), retry_after=None)
        if isinstance(error, ProviderAuthError):
            return CredentialCheck(ok=False, message="Runware rejected the API key.")
        return CredentialCheck(ok=False, message=f"The key could not be checked: {error.message}")


def classify(status: int, errors: list[dict], *, retry_after: float | None) -> ProviderError:
    """Runware's status and error codes as our error. Codes are not yet standard across models,
    so the HTTP status decides first and codes refine it (PROVIDERS.md §1.4)."""
    codes = {str(e.get("code") or "") for e in errors}
    logger.warning("runware: HTTP %s errors=%s", status,
                   [(e.get("code"), e.get("message"), e.get("parameter"), e.get("taskUUID")) for e in errors])
    error = _classified(status, codes, retry_after=retry_after)
    error.provider_status, error.provider_code = status, ",".join(sorted(code for code in codes if code))[:100]
    return error


def _classified(status: int, codes: set[str], *, retry_after: float | None) -> ProviderError:
    if status in (401, 403) or codes & AUTH_CODES:
        return ProviderAuthError()
    if status == 402 or any(word in code.lower() for code in codes for word in ("credit", "quota", "balance")):
        return ProviderQuotaExhausted()
    if codes & SAFETY_CODES:
        return ProviderContentRefused()
    if codes & MODEL_GONE_CODES:
        return ProviderModelGone()
    if status == 429:
        return ProviderRateLimited(retry_after=retry_after)
    if status in (408, 504) or codes & TIMEOUT_CODES:
        return ProviderTimeout(retryable=True, retry_after=retry_after)
    if status >= 500 or codes & PROVIDER_CODES:
        return ProviderServerError(retry_after=retry_after)
    if status == 200:
        return ProviderBadResponse()
    return ProviderRejectedRequest()


def _try_facts(outcomes: list[ImageOutcome]) -> dict:
    """What one answered try came to, for the record: our task id, the images it delivered, and
    the cost Runware reported (includeCost) for the images it made, fetched or not."""
    costs = [o.cost_usd for o in outcomes if o.cost_usd is not None]
    return {"request_id": next((o.provider_task_id for o in outcomes if o.provider_task_id), "") or "",
            "units": sum(1 for o in outcomes if o.ok), "cost_usd": sum(costs) if costs else None}


def _task_uuids(task_id: str, retries: int) -> list[str]:
    """The task UUIDs of one call's tries: our id for the first, then one derived from it per
    retry, so that a later run can find every task the call may have sent."""
    first = uuid.UUID(task_id)
    return [str(first)] + [str(uuid.uuid5(first, f"retry-{n}")) for n in range(1, retries + 1)]


def _errors(body: Any) -> list[dict]:
    """Errors from any of the three envelopes Runware has used: {"errors": [...]},
    {"error": {...}, "taskUUID", "taskType"}, or a bare list."""
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list):
            return [e for e in body["errors"] if isinstance(e, dict)]
        error = body.get("error")
        if isinstance(error, str):
            error = {"message": error}
        if isinstance(error, dict):
            return [{"taskUUID": body.get("taskUUID"), "taskType": body.get("taskType"), **error}]
        return []
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict) and ("code" in e or "message" in e)
                and not any(f in e for f in RESULT_FIELDS)]
    return []


def _task_errors(body: Any, task_uuid: str) -> list[dict]:
    return [e for e in _errors(body) if e.get("taskUUID") in (None, task_uuid)]


def _task_items(body: Any, task_uuid: str) -> list[dict]:
    data = body.get("data") if isinstance(body, dict) else None
    return [d for d in (data if isinstance(data, list) else []) if isinstance(d, dict)
            and d.get("taskUUID") == task_uuid and any(d.get(f) for f in RESULT_FIELDS)]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _decimal_or_none(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None
