"""The one interface every provider adapter implements, its normalized results and its errors.

An adapter turns a catalog row plus a prompt into provider calls and turns whatever comes back
(images, tokens, refusals, outages) into these types. Everything provider-specific stays in the
provider's module; everything model-specific stays in the catalog row (sizes, images per call,
accepted optional parameters, fixed request defaults).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import functools
import logging
import math
import random
import ssl
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings

from creditgate.catalog.models import AIModelConfig
from creditgate.core.errors import ApplicationError

logger = logging.getLogger("creditgate.providers")

T = TypeVar("T")

# The generic names of optional parameters (as listed in AIModelConfig.optional_params) that a
# caller may pass to generate_image_batch. Each adapter maps the ones its API knows to its own names.
IMAGE_OPTIONS = ("negative_prompt", "steps", "cfg_scale", "seed")


# --- Results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageOutcome:
    """One per requested image, success or failure."""

    ok: bool
    # Always filled when ok: provider URLs expire, so the adapter downloads them itself.
    data: bytes | None = None
    content_type: str | None = None
    source_url: str | None = None
    provider_image_id: str | None = None
    provider_task_id: str | None = None
    seed: int | None = None
    cost_usd: Decimal | None = None
    error_code: str | None = None
    error_message: str | None = None  # safe for users: never a raw provider body or a key

    @classmethod
    def failed(cls, error: ProviderError, *, provider_task_id: str | None = None) -> ImageOutcome:
        return cls(ok=False, error_code=error.code, error_message=error.message, provider_task_id=provider_task_id)


@dataclass(frozen=True)
class TextResult:
    content: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int  # as the provider reported it: this is what the user is charged for
    finish_reason: str | None = None
    provider_request_id: str | None = None


class TextStream(ABC):
    """A chat completion as the provider generates it: an async iterator of the text's pieces
    (non-empty strings, in order). Once the iteration has ended normally, `result` is the whole
    completion (content, token usage, finish_reason, request id), or None when the provider sent
    no usage. A failure once text has flowed is never retried (the caller has already passed text
    on): the iteration raises the ProviderError, and `result` stays None.

    Whoever opens a stream closes it: `await stream.aclose()` (idempotent, at any point) closes the
    connection, which makes the provider stop generating; `async with stream:` does it on exit.
    Usage is only known at the end: a caller that stops early has `text_so_far` (and the tokens
    module) to count what it received."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self.result: TextResult | None = None
        self.closed = False

    @property
    def text_so_far(self) -> str:
        """The pieces received so far, joined."""
        return "".join(self._pieces)

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        if self.closed:
            raise StopAsyncIteration
        piece = await self._next_piece()
        self._pieces.append(piece)
        return piece

    @abstractmethod
    async def _next_piece(self) -> str:
        """The next non-empty piece; StopAsyncIteration at the end (with `result` set), or the
        ProviderError that ended the stream."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop: close the connection to the provider (a no-op once closed)."""

    async def __aenter__(self) -> TextStream:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()


@dataclass(frozen=True)
class ProviderModel:
    """What a provider says about one of its models now (its model list)."""

    name: str                            # the provider's model id, as the catalog's model_name
    shutdown_on: dt.date | None = None   # a retirement date the provider announced
    deprecated: bool = False             # announced for retirement (with or without a date)


@dataclass(frozen=True)
class ProviderTry:
    """One request of a provider call as it went (a retry is another try), reported by the adapter
    to the caller's recorder as soon as it ends, for the record of provider calls. Never the key,
    never the prompt."""

    ok: bool                           # the provider answered with work (some images may still be missing)
    latency_ms: int | None             # None when unknown (an answer fetched later by its task id)
    request_id: str = ""               # the provider's request id, or our task id at the provider
    units: int = 0                     # images it returned, or 1 for a text
    prompt_tokens: int | None = None   # token usage as the provider reported it
    completion_tokens: int | None = None
    finish_reason: str = ""
    cost_usd: Decimal | None = None    # the provider's own figure, when its answer carried one
    error_class: str = ""              # our error type (ProviderRateLimited, ...)
    error_code: str = ""               # our error code (provider_rate_limited, ...)
    provider_status: int | None = None  # the HTTP status the provider answered, if any
    provider_code: str = ""            # the provider's own error code (rate_limit_exceeded, ...)
    started_at: dt.datetime | None = None  # when it was sent, if known

    @classmethod
    def failed(cls, error: ProviderError, *, latency_ms: int | None, request_id: str | None = None,
               started_at: dt.datetime | None = None) -> ProviderTry:
        return cls(ok=False, latency_ms=latency_ms, request_id=(request_id or error.request_id or "")[:200],
                   error_class=type(error).__name__, error_code=error.code, provider_status=error.provider_status,
                   provider_code=(error.provider_code or "")[:100], started_at=started_at)


# Where an adapter reports each try of a call; the job runner passes one in and persists the tries.
TryRecorder = Callable[[ProviderTry], None]


@dataclass(frozen=True)
class CredentialCheck:
    ok: bool
    message: str  # safe to show an operator: never the key


# --- Errors -----------------------------------------------------------------------------------
# Messages are written for the person who will read them (a user looking at a failed job, an
# operator testing a key); the provider's own text and status go to the log and to `__cause__`.

class ProviderError(ApplicationError):
    status_code = 502
    code = "provider_unavailable"
    retryable = False
    # Whether the failure says this provider or model cannot serve now (5xx, timeouts, rate limits
    # after retries, an exhausted quota, a rejected key, a model gone): then the tier's next model
    # may serve the work instead, and the circuit breaker counts it. A refusal of the content, or
    # a request the model cannot take, is not: another model would be asked the same thing.
    failover = True
    default_message = "The AI provider could not complete the request. Please try again later."

    # What the provider said, for the record of calls (set by the adapter that raised it).
    request_id: str | None = None
    provider_status: int | None = None
    provider_code: str | None = None

    def __init__(self, message: str | None = None, *, retryable: bool | None = None,
                 retry_after: float | None = None, details: dict | None = None):
        super().__init__(message or self.default_message, details=details)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it said


class ProviderNotConfigured(ProviderError):
    status_code = 503
    code = "provider_not_configured"
    default_message = "This AI provider is not configured."


class ProviderAuthError(ProviderError):
    code = "provider_auth_failed"
    default_message = "The AI provider rejected our credentials. An operator has to fix the API key."


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    retryable = True
    default_message = "The AI provider is busy right now. Please try again in a moment."


class ProviderQuotaExhausted(ProviderError):
    code = "provider_quota_exhausted"
    default_message = "The AI provider's account has run out of quota. An operator has to top it up."


class ProviderContentRefused(ProviderError):
    code = "content_refused"
    failover = False
    status_code = 422
    default_message = "The AI provider refused this prompt under its content policy. Try rewording it."


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    retryable = True
    default_message = "The AI provider took too long to answer."


class ProviderBadResponse(ProviderError):
    code = "provider_bad_response"
    default_message = "The AI provider sent an answer we could not use."


class ProviderRejectedRequest(ProviderError):
    """A 4xx that is neither auth, quota, rate limit nor content: our request does not suit the
    model (a size it does not take, a retired model). Retrying the same request cannot help."""

    code = "provider_rejected_request"
    status_code = 400
    failover = False
    default_message = "The AI provider did not accept this request for the selected model."


class ProviderModelGone(ProviderError):
    """The provider no longer offers the model (retired, withdrawn): the tier's next model may."""

    code = "model_unavailable"
    default_message = "This model is no longer available at the AI provider."


class ProviderServerError(ProviderError):
    retryable = True
    default_message = "The AI provider had an internal error. Please try again later."


def failover_code(code: str | None) -> bool:
    """Whether an error code (of a failed image, say) is one after which the tier's next model
    may serve the work (see ProviderError.failover)."""
    return code in _FAILOVER_CODES


def _error_classes(cls: type[ProviderError]) -> list[type[ProviderError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _error_classes(child))]


_FAILOVER_CODES = frozenset(c.code for c in _error_classes(ProviderError) if c.failover)
_FAILOVER_CODES -= {c.code for c in _error_classes(ProviderError) if not c.failover}


# --- Timeouts and retries -----------------------------------------------------------------------

@dataclass(frozen=True)
class CallPolicy:
    """Timeouts and retry rules for one adapter, read from settings when the adapter is built
    (tests shrink the delays through pytest-django's `settings` fixture)."""

    connect_timeout: float
    text_timeout: float
    image_timeout: float
    download_timeout: float
    max_retries: int
    retry_base_delay: float
    retry_max_delay: float
    max_parallel_calls: int

    @classmethod
    def from_settings(cls) -> CallPolicy:
        return cls(
            connect_timeout=settings.CREDITGATE_PROVIDER_CONNECT_TIMEOUT,
            text_timeout=settings.CREDITGATE_PROVIDER_TEXT_TIMEOUT,
            image_timeout=settings.CREDITGATE_PROVIDER_IMAGE_TIMEOUT,
            download_timeout=settings.CREDITGATE_PROVIDER_DOWNLOAD_TIMEOUT,
            max_retries=settings.CREDITGATE_PROVIDER_MAX_RETRIES,
            retry_base_delay=settings.CREDITGATE_PROVIDER_RETRY_BASE_DELAY,
            retry_max_delay=settings.CREDITGATE_PROVIDER_RETRY_MAX_DELAY,
            max_parallel_calls=settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS,
        )

    def delay_before_retry(self, attempt: int, error: ProviderError) -> float:
        """Seconds to wait before retry number `attempt` (1-based): the provider's Retry-After
        when it gave one, else exponential backoff with jitter; capped either way so a worker is
        never parked for minutes."""
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.retry_max_delay)
        backoff = self.retry_base_delay * 2 ** (attempt - 1)
        return min(backoff * (0.75 + random.random() / 2), self.retry_max_delay)


# Indirection so tests can record the waits instead of sleeping through them.
sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


async def call_with_retries(call: Callable[[], Awaitable[T]], *, policy: CallPolicy, what: str,
                            record: TryRecorder | None = None, describe: Callable[[T], dict] | None = None) -> T:
    """Await `call()`, retrying ProviderErrors marked retryable up to policy.max_retries times;
    the backoff is an asyncio sleep, so a waiting call holds no thread.

    Only for calls that are safe to send again: a caller whose request may have reached the
    provider without an answer (and may be billed) handles that case itself before raising.
    `record`, when given, is told of every try as it ends (its latency, and for an answer the
    ProviderTry fields `describe` reads from the result; for an error, what the error carries).
    """
    attempt = 0
    while True:
        sent_at, started = dt.datetime.now(dt.UTC), time.monotonic()
        try:
            result = await call()
        except ProviderError as exc:
            if record is not None:
                record(ProviderTry.failed(exc, latency_ms=_elapsed_ms(started), started_at=sent_at))
            if not exc.retryable or attempt >= policy.max_retries:
                raise
            attempt += 1
            delay = policy.delay_before_retry(attempt, exc)
            logger.info("%s: %s, retry %d/%d in %.2fs", what, type(exc).__name__, attempt, policy.max_retries, delay)
            await sleep(delay)
        else:
            if record is not None:
                record(ProviderTry(ok=True, latency_ms=_elapsed_ms(started), started_at=sent_at,
                                   **(describe(result) if describe else {})))
            return result


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def parse_retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds; an HTTP date is treated as
    absent: neither provider documents one and guessing clocks is worse than backing off)."""
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header) if headers is not None else None
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def sniff_image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


C = TypeVar("C")


class PerLoop(Generic[C]):
    """Clients kept for reuse, one set per event loop: an httpx (or the OpenAI SDK's aiohttp)
    client's connection pool belongs to the loop it first ran on and must not be used from
    another. The in-process runner runs every job on one loop for the process's life, so there
    its clients (and their keep-alive connections) serve every job; a sync caller gets a
    short-lived loop (`call_sync`), whose clients are closed before it ends. Entries of closed
    loops are pruned at the next lookup, so nothing accumulates."""

    def __init__(self, build: Callable[[Hashable], C]):
        self._build = build
        self._lock = threading.Lock()
        self._by_loop: dict[int, tuple[asyncio.AbstractEventLoop, dict[Hashable, C]]] = {}
        _per_loops.add(self)
        # A replaced adapter (a new key, say) is dropped once its last call ended: its clients
        # are closed then, on their loops, rather than left to the garbage collector (aiohttp
        # logs every session collected unclosed as an error).
        weakref.finalize(self, _clients_close, self._by_loop).atexit = False

    def popped(self, loop: asyncio.AbstractEventLoop) -> list[C]:
        """The clients built for `loop`, forgotten here (for their owner to close)."""
        with self._lock:
            kept_loop, clients = self._by_loop.get(id(loop), (None, {}))
            if kept_loop is not loop:
                return []
            del self._by_loop[id(loop)]
            return list(clients.values())

    def get(self, key: Hashable = None) -> C:
        loop = asyncio.get_running_loop()
        with self._lock:
            for loop_id, (kept, _clients) in list(self._by_loop.items()):
                if kept.is_closed():
                    del self._by_loop[loop_id]
            kept_loop, clients = self._by_loop.get(id(loop), (None, {}))
            if kept_loop is not loop:  # first use on this loop (or its id was reused by a new one)
                clients = {}
                self._by_loop[id(loop)] = (loop, clients)
            if key not in clients:
                clients[key] = self._build(key)
            return clients[key]


_per_loops: weakref.WeakSet[PerLoop] = weakref.WeakSet()


async def loop_clients_close() -> None:
    """Close every client built for the running event loop. Whoever ends a loop calls it before
    the loop ends, so no connection outlives its loop: a short-lived loop's (`call_sync`), the web
    server's at its shutdown (creditgate/asgi.py); the in-process runner's loop, which lives as
    long as its process, has its clients closed at the process's exit (`_clients_close_at_exit`)."""
    loop = asyncio.get_running_loop()
    await _close_each([client for per_loop in list(_per_loops) for client in per_loop.popped(loop)])


async def _close_each(clients: list) -> None:
    for client in clients:
        close = getattr(client, "aclose", None) or client.close  # httpx: aclose(); AsyncOpenAI: close()
        try:
            await close()
        except Exception:  # closing is best effort; the loop is going away
            logger.debug("closing a provider client failed", exc_info=True)


def _clients_close(by_loop: dict, *, wait: float = 0.0) -> None:
    """Close the clients of a PerLoop (`by_loop`) on their loops, those still running; `wait`: at
    most this long for each loop's (never on the loop's own thread: its close runs after this)."""
    for loop, clients in list(by_loop.values()):
        if loop.is_closed() or not loop.is_running() or not clients:
            continue
        future = asyncio.run_coroutine_threadsafe(_close_each(list(clients.values())), loop)
        try:
            on_that_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_that_loop = False
        if wait and not on_that_loop:
            with contextlib.suppress(Exception):
                future.result(timeout=wait)
    by_loop.clear()


@atexit.register
def _clients_close_at_exit() -> None:
    """At the process's exit, the clients of loops that still run (the in-process runner's, in a
    daemon thread) are closed, each loop's in at most 2 s."""
    for per_loop in list(_per_loops):
        _clients_close(per_loop._by_loop, wait=2.0)


def call_sync(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """`await fn(*args, **kwargs)` from sync code (the admin's "Test key", the model-lifecycle
    command, a Celery task's job run): on a short-lived loop (asgiref's async_to_sync) whose
    provider clients are closed before it ends (`loop_clients_close`)."""
    async def call_and_close() -> T:
        try:
            return await fn(*args, **kwargs)
        finally:
            await loop_clients_close()

    return async_to_sync(call_and_close)()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (the same CA bundle and environment rules), built once per
    process: building it costs ~20 ms of CPU, which every client built per loop (a Celery task's
    job) would otherwise pay again. An SSLContext is safe to share between clients and threads."""
    return httpx.create_ssl_context()


def http_client(policy: CallPolicy) -> httpx.AsyncClient:
    """A keep-alive async HTTP client for one adapter on one loop. Its pool bounds connections
    per host well above the calls one process keeps in flight at a provider."""
    return httpx.AsyncClient(
        verify=tls_context(),
        timeout=httpx.Timeout(policy.download_timeout, connect=policy.connect_timeout),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=max(policy.max_parallel_calls, 100)),
        follow_redirects=False)


async def fetch_image(url: str, *, policy: CallPolicy, what: str, client: httpx.AsyncClient) -> tuple[bytes, str]:
    """Download an image a provider handed out by URL (they expire, so we copy it at once).
    Retried like a provider call: a GET is safe to repeat and costs nothing."""

    async def attempt() -> tuple[bytes, str]:
        try:
            response = await client.get(url, timeout=httpx.Timeout(policy.download_timeout,
                                                                   connect=policy.connect_timeout))
        except httpx.TimeoutException as exc:
            raise ProviderTimeout("The generated image could not be downloaded in time.") from exc
        except httpx.HTTPError as exc:
            raise ProviderServerError("The generated image could not be downloaded.") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderServerError("The generated image could not be downloaded.",
                                      retry_after=parse_retry_after(response.headers))
        if response.status_code != 200:
            raise ProviderBadResponse(f"The generated image could not be downloaded (HTTP {response.status_code}).")
        content_type = sniff_image_type(response.content)
        if content_type is None:
            raise ProviderBadResponse("The AI provider's image is not a PNG, JPEG or WEBP file.")
        return response.content, content_type

    return await call_with_retries(attempt, policy=policy, what=what)


def padded_outcomes(outcomes: list[ImageOutcome], n: int) -> list[ImageOutcome]:
    """A provider that returns fewer images than asked must not shrink the result."""
    missing = n - len(outcomes)
    if missing > 0:
        gap = ProviderBadResponse("The AI provider returned fewer images than requested.")
        outcomes = [*outcomes, *[ImageOutcome.failed(gap) for _ in range(missing)]]
    return outcomes[:n]


# --- The adapter --------------------------------------------------------------------------------

class ProviderAdapter(ABC):
    """Template for a provider: the fixed sequence (validate, pick parameters, fan out, collect)
    lives here; each provider module fills in one call and its error mapping."""

    provider_id: str
    default_base_url: str
    sandbox_path: str  # where the sandbox emulates this provider, below CREDITGATE_SANDBOX_URL

    def __init__(self, *, api_key: str, base_url: str | None = None, policy: CallPolicy | None = None):
        self.api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.policy = policy or CallPolicy.from_settings()
        # Kept for the adapter's life (the registry reuses adapters across jobs), one client per
        # event loop: on the runner's loop, connections stay open from job to job.
        self._http: PerLoop[httpx.AsyncClient] = PerLoop(lambda _key: http_client(self.policy))

    def __repr__(self) -> str:  # the key must never reach a log line through a repr
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    @property
    def http(self) -> httpx.AsyncClient:
        """This adapter's HTTP client on the running event loop."""
        return self._http.get()

    # The interface. Every provider call is a coroutine (one implementation): the job runner
    # awaits it; a synchronous caller (the admin's "Test key", the model-lifecycle command)
    # calls it through asgiref's async_to_sync where it stands.

    # Whether a call sent under our own task id can be looked up after its answer was lost
    # (`resume_images`). Then the job runner records the call before it goes out.
    resumable = False

    def image_call_sizes(self, *, model: AIModelConfig, count: int) -> list[int]:
        """How `count` images split into provider calls (the model's images per call)."""
        per_call = max(1, model.max_images_per_call)
        return [min(per_call, count - start) for start in range(0, count, per_call)]

    async def generate_image_batch(self, *, model: AIModelConfig, prompt: str, n: int, task_id: str | None = None,
                             size: str | None = None, options: dict | None = None,
                             record: TryRecorder | None = None) -> list[ImageOutcome]:
        """ONE provider call for `n` <= model.max_images_per_call images, retries included: `n`
        outcomes in order (an image the provider did not return is a failed outcome). Raises
        ProviderError when the call as a whole failed. `task_id`: our id for the call, which a
        resumable provider uses so that `resume_images` can find the call's answer later.
        `record` is told of each try (request) the call makes, in order."""
        if n < 1:
            raise ProviderRejectedRequest("At least one image must be requested.")
        width, height = self.resolve_size(model=model, size=size)
        params = self.image_params(model=model, options=options)
        outcomes = await self._generate_image_call(model=model, prompt=prompt, n=n, width=width, height=height,
                                             params=params, task_id=task_id, record=record)
        return padded_outcomes(outcomes, n)

    async def resume_images(self, *, model: AIModelConfig, task_id: str, n: int,
                      record: TryRecorder | None = None) -> list[ImageOutcome] | None:
        """The images of a call sent earlier under `task_id` whose answer was lost: `n` outcomes,
        or None when the provider has no usable answer for it (never sent, failed, or no way to
        look it up), so the work has to be asked for again. `record` is told of each try of that
        call the provider still knows about, in the order they were sent (latency unknown)."""
        return None

    @abstractmethod
    async def generate_text(self, *, model: AIModelConfig, prompt: str, max_tokens: int,
                            temperature: float | None = None, record: TryRecorder | None = None,
                            messages: list[dict] | None = None) -> TextResult:
        """One completion, retries included; `record` is told of each try, in order. `messages`
        (chat messages, OpenAI's shape), when given, are sent instead of the one user message
        `prompt`."""

    async def stream_text(self, *, model: AIModelConfig, messages: list[dict], max_tokens: int,
                          temperature: float | None = None, record: TryRecorder | None = None) -> TextStream:
        """A completion streamed as it is generated (see TextStream), once the provider has
        started to answer: opening it is retried like any call, what follows is not. `record` is
        told of each failed opening, and of the streamed try when the stream ends."""
        raise ProviderRejectedRequest("This provider does not stream text.")

    @abstractmethod
    async def check_credentials(self) -> CredentialCheck: ...

    async def list_models(self, *, names: Sequence[str]) -> list[ProviderModel]:
        """What the provider offers now among `names` (catalog model names): a name missing from
        the answer is not offered any more. Raises ProviderError when the provider could not say."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its models.")

    # What each provider fills in.

    @abstractmethod
    async def _generate_image_call(self, *, model: AIModelConfig, prompt: str, n: int, width: int, height: int,
                             params: dict, task_id: str | None = None,
                             record: TryRecorder | None = None) -> list[ImageOutcome]:
        """One provider call for `n` <= model.max_images_per_call images, retries included, each
        try reported to `record`. Raises ProviderError when the call as a whole failed."""

    # Shared rules.

    option_names: dict[str, str] = {}  # generic option name -> this provider's parameter name

    def image_params(self, *, model: AIModelConfig, options: dict | None) -> dict:
        """model.request_defaults, plus the caller's options that the model accepts (by catalog
        data) and this provider can express. Others are dropped silently: a tier's model may
        change under a caller, and a parameter one model lacks must not fail the request."""
        params = dict(model.request_defaults or {})
        for name, value in (options or {}).items():
            if value is None or not model.accepts(name) or name not in self.option_names:
                continue
            params[self.option_names[name]] = value
        return params

    @staticmethod
    def resolve_size(*, model: AIModelConfig, size: str | None) -> tuple[int, int]:
        sizes = list(model.sizes or [])
        if size is None:
            if not sizes:
                raise ProviderRejectedRequest("This model has no image size configured.")
            size = sizes[0]
        elif sizes and size not in sizes:
            raise ProviderRejectedRequest(f"Size {size} is not available for this model.",
                                          details={"size": [f"Choose one of: {', '.join(sizes)}."]})
        try:
            width, height = (int(part) for part in str(size).lower().split("x"))
        except ValueError as exc:
            raise ProviderRejectedRequest(f"Size {size} is not WIDTHxHEIGHT.") from exc
        return width, height
