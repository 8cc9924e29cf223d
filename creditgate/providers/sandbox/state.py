"""The emulator's shared state: its knobs, the scripted failures, what it has seen and handed out."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter, OrderedDict, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ERROR_KINDS = ("rate_limit", "server_error", "timeout", "content_refusal", "quota", "partial")
RUNWARE_ENVELOPES = ("errors", "error", "list")
PROVIDERS = ("openai", "runware")
# What a provider-wide outage can look like: the provider's side fails, whatever is asked.
OUTAGE_KINDS = ("rate_limit", "server_error", "timeout", "quota")


@dataclass
class Knobs:
    latency_ms: int = 0
    error_rate: float = 0.0            # 0..1, drawn per provider request (per image for "partial")
    error_kind: str = "server_error"   # one of ERROR_KINDS
    api_key: str = "sandbox"           # any other key gets each provider's 401
    retry_after_s: float = 1.0         # what a 429 asks the client to wait
    hang_s: float = 130.0              # a "timeout" answers only after this: past any sane read timeout
    runware_error_envelope: str = "errors"  # Runware has documented three error shapes; a client must take all
    # {provider: kind}: every generation request to that provider fails so (its model lists still answer).
    outages: dict = field(default_factory=dict)
    # Models the provider no longer offers: gone from its model list, refused when called.
    dropped_models: list = field(default_factory=list)
    # {model: "YYYY-MM-DD"}: a retirement the provider announces (OpenAI's shutdown_date; Runware,
    # whose search has no date, marks the model "deprecated").
    retiring_models: dict = field(default_factory=dict)
    runware_cost: bool = True          # Runware reports each image's cost when a task asks (includeCost)
    # Streamed chat completions ("stream": true). Pacing of the content chunks (0: as fast as the
    # socket takes them); after N content chunks, cut the connection (no finish chunk, no usage,
    # no [DONE]) or send OpenAI's mid-stream error event and close (None: never).
    stream_tokens_per_second: float = 0.0
    stream_drop_after_tokens: int | None = None
    stream_error_after_tokens: int | None = None

    def validated(self) -> Knobs:
        if self.error_kind not in ERROR_KINDS:
            raise ValueError(f"error_kind must be one of {', '.join(ERROR_KINDS)}")
        if not 0.0 <= float(self.error_rate) <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if int(self.latency_ms) < 0 or float(self.retry_after_s) < 0 or float(self.hang_s) < 0:
            raise ValueError("latency_ms, retry_after_s and hang_s must not be negative")
        if not isinstance(self.runware_cost, bool):
            raise ValueError("runware_cost must be true or false")
        if self.runware_error_envelope not in RUNWARE_ENVELOPES:
            raise ValueError(f"runware_error_envelope must be one of {', '.join(RUNWARE_ENVELOPES)}")
        if not isinstance(self.outages, dict) or any(
                p not in PROVIDERS or k not in OUTAGE_KINDS for p, k in self.outages.items()):
            raise ValueError(f"outages maps a provider ({', '.join(PROVIDERS)}) to one of {', '.join(OUTAGE_KINDS)}")
        if not isinstance(self.dropped_models, list) or not all(isinstance(m, str) for m in self.dropped_models):
            raise ValueError("dropped_models must be a list of model names")
        if not isinstance(self.retiring_models, dict):
            raise ValueError('retiring_models maps a model name to a date, "YYYY-MM-DD"')
        for name, day in self.retiring_models.items():
            try:
                dt.date.fromisoformat(str(day))
            except ValueError:
                raise ValueError(f'retiring_models[{name!r}] must be a date, "YYYY-MM-DD"') from None
        pace = self.stream_tokens_per_second
        if not isinstance(pace, int | float) or isinstance(pace, bool) or pace < 0:
            raise ValueError("stream_tokens_per_second must be a number, 0 or more (0: unpaced)")
        for name in ("stream_drop_after_tokens", "stream_error_after_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a whole number, 0 or more, or null (never)")
        self.latency_ms, self.error_rate = int(self.latency_ms), float(self.error_rate)
        self.stream_tokens_per_second = float(self.stream_tokens_per_second)
        self.retry_after_s, self.hang_s = float(self.retry_after_s), float(self.hang_s)
        return self

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class ImageSpec:
    prompt: str
    model: str
    width: int
    height: int
    seed: int | None


STREAM_OUTCOMES = ("streaming", "completed", "client_gone", "dropped", "error")


@dataclass
class StreamRecord:
    """One streamed chat completion, as the emulator sent it."""

    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int    # the whole answer's tokens (at most max_completion_tokens)
    tokens_sent: int = 0      # content chunks written to the socket without error
    outcome: str = "streaming"  # then one of completed | client_gone | dropped | error


@dataclass
class SandboxState:
    initial: Knobs
    knobs: Knobs = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)
    script: deque = field(default_factory=deque)
    scripts: dict = field(default_factory=dict)  # provider -> its own script, drawn before the shared one
    counts: Counter = field(default_factory=Counter)
    bodies: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)  # route -> the status and request id of each reply
    images: OrderedDict = field(default_factory=OrderedDict)
    tasks: dict = field(default_factory=dict)   # Runware taskUUID -> the items and errors it produced
    partial_calls: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    streams: deque = field(default_factory=deque)  # one StreamRecord per streamed completion, oldest first
    streams_changed: threading.Condition = field(init=False)

    MAX_IMAGES = 2000
    MAX_BODIES = 50

    def __post_init__(self):
        self.knobs = Knobs(**asdict(self.initial)).validated()
        self.streams_changed = threading.Condition(self.lock)

    def configure(self, **changes: Any) -> Knobs:
        unknown = set(changes) - Knobs.names()
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        with self.lock:
            candidate = Knobs(**{**asdict(self.knobs), **changes}).validated()
            self.knobs = candidate
            return candidate

    def reset(self) -> None:
        """Back to the knobs the server started with; forget scripts, counts and hand-outs, and
        wake any request still hanging in a "timeout" so it does not outlive its test."""
        with self.lock:
            self.knobs = Knobs(**asdict(self.initial)).validated()
            self.script.clear()
            self.scripts.clear()
            self.counts.clear()
            self.bodies.clear()
            self.answers.clear()
            self.images.clear()
            self.tasks.clear()
            self.partial_calls = 0
            self.streams.clear()
            self.release.set()
            self.release = threading.Event()

    def fail_next(self, n: int, kind: str, *, provider: str | None = None, after: int = 0) -> None:
        """The next `n` generation requests fail with `kind` (to `provider` only, when given),
        once `after` more have gone through."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ERROR_KINDS)}")
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
        with self.lock:
            script = self.script if provider is None else self.scripts.setdefault(provider, deque())
            script.extend([None] * int(after) + [kind] * int(n))

    def draw_fault(self, provider: str) -> str | None:
        """The failure for this generation request to `provider`, if any: an outage of the
        provider first, then the script, then chance."""
        with self.lock:
            if provider in self.knobs.outages:
                return self.knobs.outages[provider]
            if self.scripts.get(provider):
                return self.scripts[provider].popleft()
            if self.script:
                return self.script.popleft()
            if self.knobs.error_rate and random.random() < self.knobs.error_rate:
                return self.knobs.error_kind
            return None

    def model_dropped(self, model: str) -> bool:
        return model in self.knobs.dropped_models

    def model_retirement(self, model: str) -> str | None:
        return self.knobs.retiring_models.get(model)

    def partial_call_fails(self) -> bool:
        """For providers whose call is all-or-nothing (OpenAI), "partial" fails every other call
        of a fan-out, so a batch shows both outcomes."""
        with self.lock:
            self.partial_calls += 1
            return self.partial_calls % 2 == 0

    def record(self, route: str, body: Any = None) -> None:
        with self.lock:
            self.counts[route] += 1
            if body is not None:
                self.bodies.setdefault(route, deque(maxlen=self.MAX_BODIES)).append(body)

    MAX_ANSWERS = 1000

    def record_answer(self, route: str, status: int, request_id: str | None) -> None:
        with self.lock:
            self.answers.setdefault(route, deque(maxlen=self.MAX_ANSWERS)).append(
                {"status": status, "request_id": request_id})

    def answered(self, route: str) -> list[dict]:
        with self.lock:
            return list(self.answers.get(route, ()))

    def remember_image(self, image_id: str, spec: ImageSpec) -> None:
        with self.lock:
            self.images[image_id] = spec
            while len(self.images) > self.MAX_IMAGES:
                self.images.popitem(last=False)

    def image(self, image_id: str) -> ImageSpec | None:
        with self.lock:
            return self.images.get(image_id)

    def remember_task(self, task_uuid: str, result: dict) -> None:
        with self.lock:
            self.tasks[task_uuid] = result

    def task(self, task_uuid: str) -> dict | None:
        with self.lock:
            return self.tasks.get(task_uuid)

    def stats(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def recorded(self, route: str) -> list:
        with self.lock:
            return list(self.bodies.get(route, ()))

    MAX_STREAMS = 1000

    def stream_started(self, *, request_id: str, model: str, prompt_tokens: int,
                       completion_tokens: int) -> StreamRecord:
        record = StreamRecord(request_id=request_id, model=model, prompt_tokens=prompt_tokens,
                              completion_tokens=completion_tokens)
        with self.lock:
            self.streams.append(record)
            while len(self.streams) > self.MAX_STREAMS:
                self.streams.popleft()
            self.streams_changed.notify_all()
        return record

    def stream_sent(self, record: StreamRecord) -> None:
        """One more content chunk of `record`'s stream reached the socket."""
        with self.lock:
            record.tokens_sent += 1

    def stream_ended(self, record: StreamRecord, outcome: str) -> None:
        assert outcome in STREAM_OUTCOMES[1:], outcome
        with self.lock:
            record.outcome = outcome
            self.streams_changed.notify_all()

    def stream_records(self) -> list[dict]:
        with self.lock:
            return [asdict(record) for record in self.streams]

    def wait_for_streams(self, count: int, *, timeout: float) -> list[dict]:
        """Every stream record, oldest first, once at least `count` streams have ended; raises
        TimeoutError if fewer have ended within `timeout` seconds."""
        with self.lock:
            ended = self.streams_changed.wait_for(
                lambda: sum(r.outcome != "streaming" for r in self.streams) >= count, timeout)
            if not ended:
                raise TimeoutError(f"fewer than {count} streams ended within {timeout}s: "
                                   f"{[asdict(r) for r in self.streams]}")
            return [asdict(record) for record in self.streams]

    def hang(self) -> None:
        self.release.wait(self.knobs.hang_s)
