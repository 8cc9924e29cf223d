"""OpenAI through its official SDK (openai 3.x, which speaks HTTPX2), over aiohttp.

Transport: the SDK's aiohttp transport (`openai[aiohttp]`, DefaultAioHttpClient), as the SDK's
README advises for concurrency. With HTTPX2's own pool (httpcore), every request and every
response's close scanned all the pool's connections and polled each one's socket: with hundreds
of calls in flight on a process's loop that was about 12% of a web process's CPU
(bench/bench_inflight.py, c=500), and a job cost 20% more CPU than over aiohttp.

Retries: the SDK's own are switched off (max_retries=0) and `call_with_retries` applies the same
rules (connection errors, 408, 409, 429, 5xx; `x-should-retry` wins; Retry-After honoured but
capped), with one exception the SDK cannot express: a 429 whose type or code is
`insufficient_quota` means the account is out of money, and retrying it only delays the failure.
One retry loop for both providers also means one place where tests can record the waits.

No idempotency key exists at OpenAI, so a retried timeout may be billed to us twice; the user is
still charged once, for what was delivered.

Streaming (`stream_text`): only the opening of a stream is retried; once text has flowed to the
caller, a failure ends the stream with its error (see _OpenAITextStream).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import httpx2
import openai as openai_sdk

from creditgate.catalog.models import AIModelConfig
from creditgate.providers.base import (
    CredentialCheck,
    ImageOutcome,
    PerLoop,
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
    ProviderTry,
    TextResult,
    TextStream,
    TryRecorder,
    call_with_retries,
    fetch_image,
    parse_retry_after,
    sniff_image_type,
)

logger = logging.getLogger("creditgate.providers.openai")

T = TypeVar("T")

# PROVIDERS.md §5: the 429s that mean "out of money", not "slow down".
QUOTA_CODES = {"insufficient_quota", "credit_balance_exhausted", "organization_spend_limit_exceeded",
               "project_spend_limit_exceeded", "organization_usage_limit_exceeded"}
CONTENT_CODES = {"content_policy_violation", "moderation_blocked"}


class OpenAIAdapter(ProviderAdapter):
    provider_id = "openai"
    default_base_url = "https://api.openai.com/v1"
    sandbox_path = "openai/v1"
    # The Images API has no negative prompt, steps, CFG or seed: nothing generic maps to it.
    option_names: dict[str, str] = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # One AsyncOpenAI per read timeout and event loop, shared by every call on that loop (on
        # the runner's loop: by every job of the process), so a call never builds one; the TLS
        # context they use is built once per process (_tls_context).
        self._clients: PerLoop[openai_sdk.AsyncOpenAI] = PerLoop(self._client_built)

    def _client_built(self, read_timeout) -> openai_sdk.AsyncOpenAI:
        timeout = httpx2.Timeout(read_timeout, connect=self.policy.connect_timeout)
        # Our own client rather than the SDK's default one, whose finalizer schedules its close on
        # the loop it ran on: after a short-lived loop (async_to_sync) closed, that fails. Over
        # aiohttp (the module's docstring says why); its session starts on the loop of the first call.
        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=max(self.policy.max_parallel_calls, 100))
        http_client = openai_sdk.DefaultAioHttpClient(verify=_tls_context(), timeout=timeout, follow_redirects=True,
                                                      limits=limits)
        return openai_sdk.AsyncOpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0, timeout=timeout,
                                      http_client=http_client)

    def _client(self, read_timeout: float) -> openai_sdk.AsyncOpenAI:
        return self._clients.get(read_timeout)

    async def _call(self, fn, *, what: str, record: TryRecorder | None = None, describe=None):
        async def attempt():
            try:
                return await fn()
            except openai_sdk.OpenAIError as exc:
                raise translate_error(exc, what=what) from exc

        return await call_with_retries(attempt, policy=self.policy, what=f"openai {what}", record=record,
                                       describe=describe)

    # Text.

    async def generate_text(self, *, model: AIModelConfig, prompt: str, max_tokens: int,
                            temperature: float | None = None, record: TryRecorder | None = None,
                            messages: list[dict] | None = None) -> TextResult:
        client = self._client(self.policy.text_timeout)
        # The caller's messages are OpenAI's shape already; the SDK's TypedDicts cannot say so.
        sent: Any = messages if messages is not None else [{"role": "user", "content": prompt}]

        async def create(extra: dict) -> TextResult:
            return _text_result(await client.chat.completions.create(
                model=model.model_name, messages=sent, max_completion_tokens=max_tokens,
                extra_body={**(model.request_defaults or {}), **extra}))

        return await self._with_temperature(
            lambda extra: self._call(lambda: create(extra), what="chat", record=record, describe=_text_facts),
            model=model, temperature=temperature)

    async def stream_text(self, *, model: AIModelConfig, messages: list[dict], max_tokens: int,
                          temperature: float | None = None, record: TryRecorder | None = None) -> TextStream:
        """Chat Completions with `stream: true` and the usage chunk (stream_options.include_usage).
        Opening the stream (up to the response's status and headers) is retried as any call;
        its failed tries are recorded as they end, the streamed try when the stream ends."""
        client = self._client(self.policy.text_timeout)
        sent: Any = messages
        opened: dict = {}

        async def open_stream(extra: dict):
            opened["sent_at"], opened["started"] = dt.datetime.now(dt.UTC), time.monotonic()
            return await client.chat.completions.create(
                model=model.model_name, messages=sent, max_completion_tokens=max_tokens,
                stream=True, stream_options={"include_usage": True},
                extra_body={**(model.request_defaults or {}), **extra})

        def record_failed(attempt: ProviderTry) -> None:
            if record is not None and not attempt.ok:
                record(attempt)

        upstream = await self._with_temperature(
            lambda extra: self._call(lambda: open_stream(extra), what="chat stream", record=record_failed),
            model=model, temperature=temperature)
        return _OpenAITextStream(upstream, record=record, sent_at=opened["sent_at"], started=opened["started"])

    async def _with_temperature(self, call: Callable[[dict], Awaitable[T]], *, model: AIModelConfig,
                                temperature: float | None) -> T:
        """`call(extra_body)` with the temperature when the model accepts one; once more without
        it when the model refuses it (PROVIDERS.md §3: a reasoning setup may refuse a non-default
        temperature; the text is still worth having without it, so drop it rather than fail)."""
        send_temperature = temperature is not None and model.accepts("temperature")
        try:
            return await call({"temperature": temperature} if send_temperature else {})
        except ProviderRejectedRequest as exc:
            if not (send_temperature and getattr(exc.__cause__, "param", None) == "temperature"):
                raise
            logger.warning("openai chat: %s refused temperature; retrying without it", model.model_name)
            return await call({})

    # Images.

    async def _generate_image_call(self, *, model: AIModelConfig, prompt: str, n: int, width: int, height: int,
                             params: dict, task_id: str | None = None,
                             record: TryRecorder | None = None) -> list[ImageOutcome]:
        # OpenAI has no way to look a request up afterwards: `task_id` is not sent (not resumable).
        client = self._client(self.policy.image_timeout)
        # No response_format: GPT image models reject it and always answer in base64; older
        # models answer with URLs. Both are handled below.
        response = await self._call(
            lambda: client.images.generate(model=model.model_name, prompt=prompt, n=n, size=f"{width}x{height}",
                                           extra_body=params),
            what="images", record=record, describe=_images_facts)
        request_id = getattr(response, "_request_id", None)
        # URLs are downloaded at once, each while the others download too.
        return list(await asyncio.gather(*(self._outcome(item, request_id=request_id)
                                           for item in (getattr(response, "data", None) or []))))

    async def _outcome(self, item, *, request_id: str | None) -> ImageOutcome:
        try:
            if getattr(item, "b64_json", None):
                try:
                    data = base64.b64decode(item.b64_json, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise ProviderBadResponse("The AI provider sent an image we could not decode.") from exc
                content_type = sniff_image_type(data)
                if content_type is None:
                    raise ProviderBadResponse("The AI provider's image is not a PNG, JPEG or WEBP file.")
                url = None
            elif getattr(item, "url", None):
                url = item.url
                data, content_type = await fetch_image(url, policy=self.policy, what="openai image download",
                                                       client=self.http)
            else:
                raise ProviderBadResponse("The AI provider's answer carried no image.")
        except ProviderError as exc:
            logger.warning("openai image (request %s): %s", request_id, exc.message)
            return ImageOutcome.failed(exc, provider_task_id=request_id)
        return ImageOutcome(ok=True, data=data, content_type=content_type, source_url=url,
                            provider_task_id=request_id)

    # Model lifecycle.

    async def list_models(self, *, names: Sequence[str]) -> list[ProviderModel]:
        """GET /v1/models: the models the key may use, each with its `shutdown_date` (YYYY-MM-DD,
        or null) when OpenAI has announced one (PROVIDERS.md §0.2)."""
        client = self._client(min(self.policy.text_timeout, 30.0))
        wanted = set(names)
        async def listed_all():
            return [item async for item in client.models.list()]

        listed = await self._call(listed_all, what="models")
        found = []
        for item in listed:
            if item.id not in wanted:
                continue
            shutdown = _date_or_none(getattr(item, "shutdown_date", None))
            found.append(ProviderModel(name=item.id, shutdown_on=shutdown, deprecated=shutdown is not None))
        return found

    # Credentials.

    async def check_credentials(self) -> CredentialCheck:
        client = self._client(min(self.policy.text_timeout, 15.0))
        try:
            models = await self._call(lambda: client.models.list(), what="models")
        except ProviderAuthError:
            return CredentialCheck(ok=False, message="OpenAI rejected the API key.")
        except ProviderError as exc:
            return CredentialCheck(ok=False, message=f"The key could not be checked: {exc.message}")
        count = len(getattr(models, "data", None) or [])
        return CredentialCheck(ok=True, message=f"The API key works: OpenAI answered and lists {count} models.")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """HTTPX2's default TLS context, built once per process (~20 ms each; see base.tls_context)."""
    return httpx2.create_ssl_context()


def _date_or_none(value) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        logger.warning("openai models: unreadable shutdown_date %r", value)
        return None


def _text_result(completion) -> TextResult:
    usage = getattr(completion, "usage", None)
    choices = getattr(completion, "choices", None) or []
    if usage is None or not choices or usage.total_tokens is None:
        error = ProviderBadResponse("The AI provider's answer carried no text or no token usage.")
        error.request_id = getattr(completion, "_request_id", None)
        raise error
    choice = choices[0]
    return TextResult(
        content=(choice.message.content if choice.message else None) or "",
        prompt_tokens=int(usage.prompt_tokens or 0),
        completion_tokens=int(usage.completion_tokens or 0),
        total_tokens=int(usage.total_tokens),
        finish_reason=choice.finish_reason,
        provider_request_id=getattr(completion, "_request_id", None),
    )


def _text_facts(text: TextResult) -> dict:
    """A completion as a try for the record: OpenAI reports usage, not a cost."""
    return {"request_id": text.provider_request_id or "", "units": 1, "prompt_tokens": text.prompt_tokens,
            "completion_tokens": text.completion_tokens, "finish_reason": text.finish_reason or ""}


class _OpenAITextStream(TextStream):
    """The SDK's AsyncStream of chat.completion.chunk, as pieces of text. Nothing here is retried:
    an `error` event, a cut connection or a read timeout ends the iteration with the ProviderError
    (see translate_stream_error), and so does a stream that ends without a finish_reason."""

    def __init__(self, upstream, *, record: TryRecorder | None, sent_at: dt.datetime, started: float):
        super().__init__()
        self._upstream = upstream
        self._record = record
        self._sent_at, self._started = sent_at, started
        self._request_id: str | None = upstream.response.headers.get("x-request-id")
        self._finish_reason: str | None = None
        self._usage = None
        self._recorded = False

    async def _next_piece(self) -> str:
        while True:
            try:
                chunk = await self._upstream.__anext__()
            except StopAsyncIteration:
                self._ended()
                raise
            except openai_sdk.OpenAIError as exc:
                error = translate_stream_error(exc)
                error.request_id = error.request_id or self._request_id
                await self._failed(error)
                raise error from exc
            except BaseException:  # cancelled mid-read: the connection is of no further use
                await self.aclose()
                raise
            if getattr(chunk, "usage", None) is not None:
                self._usage = chunk.usage
            for choice in getattr(chunk, "choices", None) or []:
                if getattr(choice, "finish_reason", None):
                    self._finish_reason = choice.finish_reason
                content = getattr(choice.delta, "content", None) if getattr(choice, "delta", None) else None
                if content:
                    return content

    def _ended(self) -> None:
        self.closed = True
        if self._finish_reason is None:  # no finish chunk: the answer was cut short
            error = ProviderServerError("The AI provider's answer broke off before it was complete.")
            error.request_id = self._request_id
            self._record_try(ProviderTry.failed(error, latency_ms=self._latency_ms(), request_id=self._request_id,
                                                started_at=self._sent_at))
            raise error
        usage = self._usage
        facts: dict[str, Any]
        if usage is not None and usage.total_tokens is not None:
            self.result = TextResult(
                content=self.text_so_far, prompt_tokens=int(usage.prompt_tokens or 0),
                completion_tokens=int(usage.completion_tokens or 0), total_tokens=int(usage.total_tokens),
                finish_reason=self._finish_reason, provider_request_id=self._request_id)
            facts = _text_facts(self.result)
        else:
            facts = {"request_id": self._request_id or "", "units": 1, "finish_reason": self._finish_reason}
        self._record_try(ProviderTry(ok=True, latency_ms=self._latency_ms(), started_at=self._sent_at, **facts))

    async def _failed(self, error: ProviderError) -> None:
        self._record_try(ProviderTry.failed(error, latency_ms=self._latency_ms(), request_id=self._request_id,
                                            started_at=self._sent_at))
        await self.aclose()

    async def aclose(self) -> None:
        if not self._recorded:  # closed by the caller before the end: the provider stops there
            self._record_try(ProviderTry(ok=True, latency_ms=self._latency_ms(), started_at=self._sent_at,
                                         request_id=self._request_id or "", units=1, finish_reason="cancelled"))
        if self._upstream is None:
            return
        upstream, self._upstream = self._upstream, None
        self.closed = True
        try:
            await upstream.close()
        except Exception:  # the connection is being dropped anyway
            logger.debug("openai chat stream: closing the response failed", exc_info=True)

    def _record_try(self, attempt: ProviderTry) -> None:
        if self._recorded:
            return
        self._recorded = True
        if self._record is not None:
            self._record(attempt)

    def _latency_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)


def translate_stream_error(exc: openai_sdk.OpenAIError) -> ProviderError:
    """What breaks a stream after it started, as our error: the SDK raises an APIError (no status)
    for an `error` event, APITimeoutError for a read timeout and APIConnectionError for a cut
    connection."""
    if isinstance(exc, openai_sdk.APIStatusError | openai_sdk.APIConnectionError):
        return translate_error(exc, what="chat stream")
    if isinstance(exc, openai_sdk.APIError):
        logger.warning("openai chat stream: error event type=%s code=%s: %s", exc.type, exc.code, exc.message)
        error = ProviderServerError("The AI provider failed while it was writing the answer.")
        error.provider_code = str(exc.code or exc.type or "")
        return error
    return ProviderBadResponse()


def _images_facts(response) -> dict:
    """An images answer as a try for the record; GPT image models also report token usage."""
    usage = getattr(response, "usage", None)
    return {"request_id": getattr(response, "_request_id", None) or "",
            "units": len(getattr(response, "data", None) or []),
            "prompt_tokens": getattr(usage, "input_tokens", None) if usage is not None else None,
            "completion_tokens": getattr(usage, "output_tokens", None) if usage is not None else None}


def _timed_out(exc: openai_sdk.APITimeoutError) -> bool:
    """Whether a timeout the SDK reports is one. Its aiohttp transport reports every aiohttp
    connection error as a connect timeout, a refused connection and a server that hung up
    included: those are "could not be reached", as over HTTPX2."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
            return True
        if isinstance(cause, aiohttp.ClientError):
            return False
        cause = cause.__cause__
    return True


def translate_error(exc: openai_sdk.OpenAIError, *, what: str) -> ProviderError:
    """The SDK's exception as our error. The provider's message stays in the log (it is useful to
    an operator and carries no key of ours; OpenAI masks keys), never in what users see."""
    if isinstance(exc, openai_sdk.APITimeoutError) and _timed_out(exc):
        return ProviderTimeout()
    if isinstance(exc, openai_sdk.APIConnectionError):  # an APITimeoutError that was not one included
        return ProviderServerError("The AI provider could not be reached.")
    if isinstance(exc, openai_sdk.APIResponseValidationError):
        return ProviderBadResponse()
    if not isinstance(exc, openai_sdk.APIStatusError):
        return ProviderBadResponse()

    status = exc.status_code
    code, type_ = getattr(exc, "code", None), getattr(exc, "type", None)
    headers = exc.response.headers
    logger.warning("openai %s: HTTP %s type=%s code=%s param=%s request_id=%s: %s", what, status, type_, code,
                   getattr(exc, "param", None), exc.request_id, exc.message if status != 401 else "(auth)")
    retry_after = parse_retry_after(headers)

    if status == 429 and (code in QUOTA_CODES or type_ in QUOTA_CODES):
        error: ProviderError = ProviderQuotaExhausted()
    elif status == 429:
        error = ProviderRateLimited(retry_after=retry_after)
    elif status == 401:
        error = ProviderAuthError()
    elif status == 403:
        error = ProviderAuthError("The AI provider does not allow our account to use this model.")
    elif code in CONTENT_CODES:
        error = ProviderContentRefused()
    elif status == 404 or code == "model_not_found":
        error = ProviderModelGone()
    elif status in (408, 409) or status >= 500:
        error = ProviderServerError(retry_after=retry_after)
    else:
        error = ProviderRejectedRequest()

    error.request_id, error.provider_status, error.provider_code = exc.request_id, status, str(code or type_ or "")
    should_retry = (headers.get("x-should-retry") or "").lower()
    if should_retry in ("true", "false") and not isinstance(error, ProviderQuotaExhausted):
        error.retryable = should_retry == "true"
    return error
