"""Circuit breakers, one per provider and one per model, shared by every process.

A provider that keeps failing should be skipped, not called for every job until each call times
out: after CREDITGATE_BREAKER_FAILURES failures in a row, each within
CREDITGATE_BREAKER_WINDOW_SECONDS of the first, a breaker *opens* and calls are refused for
CREDITGATE_BREAKER_COOLDOWN_SECONDS; then exactly one *trial* call is let through (half-open),
and its outcome closes the breaker (calls flow again) or opens it for another cool-down. A trial
whose outcome is never recorded (its worker died) gives way to another trial after one cool-down.

The API (keyword-free on purpose: the job runner calls it around every provider call):

- `breaker_allow(provider_id, model_name) -> bool`: may a call to this model go now? Asks the
  provider's breaker and the model's; False while either is open. When a cool-down has ended,
  True for exactly one caller (the trial), across all processes.
- `breaker_record(provider_id, model_name, ok)`: the outcome of a call that was allowed. `ok=False`
  for a failure that says the provider or model is unwell (5xx, timeout, rate limit after
  retries, exhausted quota, rejected key), `ok=True` for an answer, a content refusal included.
  A request the model cannot take says nothing about its health: record nothing. Counts for the
  model's breaker and its provider's.
- `breaker_state(provider_id, model_name=None) -> BreakerStatus`: the provider's breaker (or the
  model's) as an operator sees it; `breakers_list()`: every breaker that is not plainly closed.
- `breaker_open_until(pairs)`: for ai-config, which models are refused now and until when.
- `breaker_reset(provider_id, model_name=None)`: an operator closes a breaker by hand.

Where the state lives: Redis when REDIS_URL is set (one key per breaker), else the database
(CircuitBreakerRecord). Either way each change is a compare-and-set on the serialized state, so
the state machine below is the only implementation of the rules and no update is lost between
processes. If Redis cannot be reached, calls are allowed (a breaker saves time; it must not stop
the service) and the failure is logged.

Opening and closing change which tiers ai-config lists, so they invalidate it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from creditgate.catalog.ai_config_cache import ai_config_invalidate
from creditgate.providers.models import CircuitBreakerRecord

logger = logging.getLogger("creditgate.providers.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# Indirection so tests can move time instead of sleeping through cool-downs.
clock = time.time

# A process that just read a breaker as plainly closed (nothing counted) trusts that for this long
# instead of reading it around every call: the common case, a healthy provider, then costs no
# read at all. The price: a process may go on calling a model for up to this long after another
# process opened its breaker. Failures are always counted at once.
CLEAN_SECONDS = 1.0
_clean_until: dict[str, float] = {}

# Compare-and-set rounds before giving up. Losing a round means another process changed the
# breaker in between; a caller that keeps losing is told "no" rather than risk a second trial.
_MAX_ROUNDS = 8


@dataclass(frozen=True)
class BreakerConfig:
    failures: int
    window: float
    cooldown: float

    @classmethod
    def from_settings(cls) -> BreakerConfig:
        return cls(failures=max(1, int(settings.CREDITGATE_BREAKER_FAILURES)),
                   window=float(settings.CREDITGATE_BREAKER_WINDOW_SECONDS),
                   cooldown=float(settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS))


# --- The state machine (pure: the stores only keep its output) ----------------------------------

@dataclass(frozen=True)
class _State:
    state: str = CLOSED
    failures: tuple[float, ...] = ()  # closed: times of the failures in a row, oldest first
    open_until: float | None = None   # open: when the cool-down ends
    trial_until: float | None = None  # half-open: until when the trial call holds its place

    def dump(self) -> str:
        """The stored text; "" for a closed breaker with nothing counted (stored as no key/row)."""
        if self == _State():
            return ""
        return json.dumps({"state": self.state, "failures": list(self.failures), "open_until": self.open_until,
                           "trial_until": self.trial_until}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> _State:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(state=data["state"], failures=tuple(data.get("failures") or ()),
                       open_until=data.get("open_until"), trial_until=data.get("trial_until"))
        except (ValueError, KeyError, TypeError):
            logger.error("circuit breaker: unreadable state %r; treating it as closed", raw)
            return cls()

    def refuses_until(self, now: float) -> float | None:
        """When this breaker lets a call through again, if it refuses one now."""
        if self.state == OPEN and self.open_until is not None and now < self.open_until:
            return self.open_until
        return None


def _on_allow(s: _State, now: float, cfg: BreakerConfig) -> tuple[_State, bool]:
    if s.state == CLOSED:
        return s, True
    if s.state == OPEN:
        if s.open_until is not None and now < s.open_until:
            return s, False
        return replace(s, state=HALF_OPEN, open_until=None, trial_until=now + cfg.cooldown), True
    if s.trial_until is not None and now < s.trial_until:
        return s, False  # a trial is in flight
    return replace(s, trial_until=now + cfg.cooldown), True  # the last trial never reported back


def _on_record(s: _State, ok: bool, now: float, cfg: BreakerConfig) -> _State:
    if s.state == HALF_OPEN:
        return _State() if ok else _State(state=OPEN, open_until=now + cfg.cooldown)
    if s.state == OPEN:
        return s  # the outcome of a call allowed before it opened: the trial decides, not this
    if ok:
        return _State()  # failures count only in a row
    failures = (*(t for t in s.failures if t > now - cfg.window), now)
    if len(failures) >= cfg.failures:
        return _State(state=OPEN, open_until=now + cfg.cooldown)
    return _State(failures=failures[-cfg.failures:])


# --- Stores -------------------------------------------------------------------------------------

class _RedisStore:
    prefix = "creditgate:breaker:"
    # Compare-and-set in one round trip: write (or delete, for "") only if the value is unchanged.
    _SWAP = """
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.swap_script = self.client.register_script(self._SWAP)

    def read(self, keys: list[str]) -> dict[str, str]:
        values = self.client.mget([self.prefix + k for k in keys])
        # bytes (the client does not decode responses), or None for a missing key
        return {k: (v.decode() if isinstance(v, bytes) else "") for k, v in zip(keys, values, strict=True)}

    def swap(self, key: str, expected: str, new: str, *, cfg: BreakerConfig) -> bool:
        # A key outlives anything it can still mean (a counted failure, a cool-down, a trial's
        # place), then expires as a closed breaker.
        ttl_ms = int((cfg.window + 2 * cfg.cooldown + 1) * 1000)
        return self.swap_script(keys=[self.prefix + key], args=[expected, new, ttl_ms]) == 1

    def all(self) -> dict[str, str]:
        keys = [k.decode()[len(self.prefix):] for k in self.client.scan_iter(match=self.prefix + "*", count=500)]
        return {k: v for k, v in self.read(keys).items() if v} if keys else {}


class _DatabaseStore:
    def read(self, keys: list[str]) -> dict[str, str]:
        found = dict(CircuitBreakerRecord.objects.filter(key__in=keys).values_list("key", "data"))
        return {k: found.get(k, "") for k in keys}

    def swap(self, key: str, expected: str, new: str, *, cfg: BreakerConfig) -> bool:
        rows = CircuitBreakerRecord.objects.filter(key=key)
        if expected == "":
            if new == "":
                return not rows.exists()
            provider_id, _, model_name = key.partition("|")
            try:
                with transaction.atomic():
                    CircuitBreakerRecord.objects.create(key=key, provider_id=provider_id, model_name=model_name,
                                                        data=new)
            except IntegrityError:
                return False  # another process created it first
            return True
        if new == "":
            return rows.filter(data=expected).delete()[0] == 1
        return rows.filter(data=expected).update(data=new, updated_at=timezone.now()) == 1

    def all(self) -> dict[str, str]:
        return dict(CircuitBreakerRecord.objects.values_list("key", "data"))


_stores: dict[tuple[str, str], _RedisStore | _DatabaseStore] = {}
_stores_lock = threading.Lock()


def _store() -> _RedisStore | _DatabaseStore:
    kind = settings.CREDITGATE_BREAKER_STORE
    url = settings.REDIS_URL if kind == "redis" else ""
    with _stores_lock:
        if (kind, url) not in _stores:
            _stores[(kind, url)] = _RedisStore(url) if kind == "redis" else _DatabaseStore()
        return _stores[(kind, url)]


def _key(provider_id: str, model_name: str | None) -> str:
    return f"{provider_id}|{model_name or ''}"


# --- The API ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BreakerStatus:
    provider_id: str
    model_name: str            # "" for the provider's own breaker
    state: str                 # closed | open | half_open (a cool-down has ended: one trial may go, or is going)
    failures: int              # closed: failures counted in a row
    retry_at: dt.datetime | None  # open: when the cool-down ends

    @property
    def label(self) -> str:
        if self.state == OPEN:
            return f"open until {timezone.localtime(self.retry_at):%H:%M:%S}"
        if self.state == HALF_OPEN:
            return "half-open (one trial call)"
        return f"closed ({self.failures} failure{'s' if self.failures != 1 else ''} in a row)" if self.failures \
            else "closed"


def _status(key: str, s: _State, now: float) -> BreakerStatus:
    provider_id, _, model_name = key.partition("|")
    if s.state == OPEN and s.open_until is not None and now < s.open_until:
        return BreakerStatus(provider_id, model_name, OPEN, 0, dt.datetime.fromtimestamp(s.open_until, tz=dt.UTC))
    if s.state in (OPEN, HALF_OPEN):
        return BreakerStatus(provider_id, model_name, HALF_OPEN, 0, None)
    return BreakerStatus(provider_id, model_name, CLOSED, len(s.failures), None)


def _known_clean(keys: list[str]) -> bool:
    now = clock()
    return all(_clean_until.get(key, 0.0) > now for key in keys)


def _note_clean(raw: dict[str, str]) -> None:
    until = clock() + CLEAN_SECONDS
    for key, value in raw.items():
        if value == "":
            _clean_until[key] = until
        else:
            _clean_until.pop(key, None)


def breaker_allow(provider_id: str, model_name: str) -> bool:
    """May a call to `model_name` at `provider_id` go now? See the module docstring."""
    cfg = BreakerConfig.from_settings()
    keys = [_key(provider_id, model_name), _key(provider_id, None)]
    if _known_clean(keys):
        return True
    try:
        store = _store()
        for _ in range(_MAX_ROUNDS):
            raw = store.read(keys)
            _note_clean(raw)
            now = clock()
            steps = [(k, raw[k], *_on_allow(_State.load(raw[k]), now, cfg)) for k in keys]
            if not all(allowed for *_, allowed in steps):
                return False
            claims = [(k, old, new.dump()) for k, old, new, _ in steps if new.dump() != old]
            taken: list[tuple[str, str, str]] = []
            for key, old, new in claims:
                if not store.swap(key, old, new, cfg=cfg):
                    for k, o, n in reversed(taken):  # give back what this round took, then look again
                        store.swap(k, n, o, cfg=cfg)
                    break
                taken.append((key, old, new))
            else:
                if taken:
                    logger.info("circuit breaker %s %s: cool-down over, one trial call goes", provider_id,
                                model_name)
                return True
        logger.warning("circuit breaker %s %s: too much contention; refusing this call", provider_id, model_name)
        return False
    except redis.RedisError:
        logger.warning("circuit breaker: Redis unreachable; allowing the call", exc_info=True)
        return True


def breaker_record(provider_id: str, model_name: str, ok: bool) -> None:
    """Count the outcome of a call that `breaker_allow` let through. See the module docstring."""
    cfg = BreakerConfig.from_settings()
    keys = [_key(provider_id, model_name), _key(provider_id, None)]
    if ok and _known_clean(keys):
        return  # a success on a clean breaker changes nothing
    for key in keys:
        _clean_until.pop(key, None)
    changed = []
    try:
        store = _store()
        for key in keys:
            for _ in range(_MAX_ROUNDS):
                old = store.read([key])[key]
                before = _State.load(old)
                after = _on_record(before, ok, clock(), cfg)
                new = after.dump()
                if new == old or store.swap(key, old, new, cfg=cfg):
                    if after.state != before.state:
                        changed.append((key, before.state, after.state))
                    break
    except redis.RedisError:
        logger.warning("circuit breaker: Redis unreachable; outcome not counted", exc_info=True)
        return
    for key, state_before, state_after in changed:
        level = logging.WARNING if state_after == OPEN else logging.INFO
        logger.log(level, "circuit breaker %s: %s -> %s", key, state_before, state_after)
    if changed:
        _served_models_changed()


def breaker_state(provider_id: str, model_name: str | None = None) -> BreakerStatus:
    """The provider's breaker, or the model's when `model_name` is given."""
    key = _key(provider_id, model_name)
    try:
        raw = _store().read([key])[key]
    except redis.RedisError:
        logger.warning("circuit breaker: Redis unreachable", exc_info=True)
        raw = ""
    return _status(key, _State.load(raw), clock())


def breakers_list() -> list[BreakerStatus]:
    """Every breaker that is open, half-open or counting failures, by provider then model."""
    try:
        stored = _store().all()
    except redis.RedisError:
        logger.warning("circuit breaker: Redis unreachable", exc_info=True)
        return []
    now = clock()
    return sorted((_status(k, _State.load(v), now) for k, v in stored.items()),
                  key=lambda s: (s.provider_id, s.model_name))


def breaker_open_until(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float | None]:
    """{(provider_id, model_name): time.time() until which a call is refused, or None if one may go}."""
    pairs = list(dict.fromkeys(pairs))
    keys = list(dict.fromkeys(k for p, m in pairs for k in (_key(p, m), _key(p, None))))
    if not keys:
        return {}
    try:
        raw = _store().read(keys)
    except redis.RedisError:
        logger.warning("circuit breaker: Redis unreachable; listing every model", exc_info=True)
        return dict.fromkeys(pairs)
    now = clock()
    result = {}
    for p, m in pairs:
        until = [t for k in (_key(p, m), _key(p, None)) if (t := _State.load(raw[k]).refuses_until(now)) is not None]
        result[(p, m)] = max(until) if until else None
    return result


def breaker_reset(provider_id: str, model_name: str | None = None) -> None:
    """Close a breaker by hand (an operator who knows the provider is back)."""
    key = _key(provider_id, model_name)
    cfg = BreakerConfig.from_settings()
    store = _store()
    for _ in range(_MAX_ROUNDS):
        old = store.read([key])[key]
        if not old or store.swap(key, old, "", cfg=cfg):
            break
    logger.info("circuit breaker %s: reset by an operator", key)
    _served_models_changed()


def _served_models_changed() -> None:
    ai_config_invalidate()  # ai-config lists a tier only while one of its models can be called
