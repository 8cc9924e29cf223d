"""OpenAI through its official SDK (openai 3.x, which speaks HTTPX2).

Retries: the SDK's own are switched off (max_retries=0) and `call_with_retries` applies the same
rules (connection errors, 408, 409, 429, 5xx; `x-should-retry` wins; Retry-After honoured but
capped), with one exception the SDK cannot express: a 429 whose type or code is
`insufficient_quota` means the account is out of money, and retrying it only delays the failure.
One retry loop for both providers also means one place where tests can record the waits.

No idempotency key exists at OpenAI, so a retried timeout may be billed to us twice; the user is
still charged once, for what was delivered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
import logging
import ssl
from collections.abc import Sequence

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
    TextResult,
    TryRecorder,
    call_with_retries,
    fetch_image,
    parse_retry_after,
    sniff_image_type,
)

logger = logging.getLogger("creditgate.providers.openai")

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
        # Our own HTTPX2 client rather than the SDK's default one, whose finalizer schedules its
        # close on the loop it ran on: after a short-lived loop (async_to_sync) closed, that fails.
        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=max(self.policy.max_parallel_calls, 100))
        http_client = httpx2.AsyncClient(verify=_tls_context(), timeout=timeout, follow_redirects=True, limits=limits)
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
                            temperature: float | None = None, record: TryRecorder | None = None) -> TextResult:
        client = self._client(self.policy.text_timeout)
        send_temperature = temperature is not None and model.accepts("temperature")

        async def create(with_temperature: bool) -> TextResult:
            extra = {"temperature": temperature} if with_temperature else {}
            return _text_result(await client.chat.completions.create(
                model=model.model_name, messages=[{"role": "user", "content": prompt}],
                max_completion_tokens=max_tokens, extra_body={**(model.request_defaults or {}), **extra}))

        try:
            return await self._call(lambda: create(send_temperature), what="chat", record=record,
                                    describe=_text_facts)
        except ProviderRejectedRequest as exc:
            # PROVIDERS.md §3: a reasoning setup may refuse a non-default temperature; the text is
            # still worth having without it, so drop it once rather than fail the job.
            if not (send_temperature and getattr(exc.__cause__, "param", None) == "temperature"):
                raise
            logger.warning("openai chat: %s refused temperature; retrying without it", model.model_name)
            return await self._call(lambda: create(False), what="chat", record=record, describe=_text_facts)

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


def _images_facts(response) -> dict:
    """An images answer as a try for the record; GPT image models also report token usage."""
    usage = getattr(response, "usage", None)
    return {"request_id": getattr(response, "_request_id", None) or "",
            "units": len(getattr(response, "data", None) or []),
            "prompt_tokens": getattr(usage, "input_tokens", None) if usage is not None else None,
            "completion_tokens": getattr(usage, "output_tokens", None) if usage is not None else None}


def translate_error(exc: openai_sdk.OpenAIError, *, what: str) -> ProviderError:
    """The SDK's exception as our error. The provider's message stays in the log (it is useful to
    an operator and carries no key of ours; OpenAI masks keys), never in what users see."""
    if isinstance(exc, openai_sdk.APITimeoutError):
        return ProviderTimeout()
    if isinstance(exc, openai_sdk.APIConnectionError):
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
