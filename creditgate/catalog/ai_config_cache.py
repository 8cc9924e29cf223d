"""The ai-config payload, prebuilt as JSON bytes and cached where every process sees it.

Django's default cache is shared by all processes (Redis with REDIS_URL, else a file cache on
this machine), so a change made by an admin on another worker or in a shell is seen by the
next request anywhere.

A change does not delete the payload; it replaces a *version token*. A payload is stored with
the version it was built under and is only served while that is still the current version. This
closes the race in which a request reads the old rows, a writer commits and invalidates, and the
request then stores its stale payload after the invalidation: that payload carries the old token
and is never served. Each process also keeps the last payload it served in memory, so a warm
request costs one small read of the token (see _TokenReader) and no database query.

What the payload lists also depends on the providers' circuit breakers: a breaker that opens or
closes invalidates it like a catalog change, and a payload built while a breaker is open expires
when that breaker's cool-down ends, so the served tiers follow the breakers at once (and within
one second of a cool-down's end) without the warm path reading any breaker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

_VERSION_KEY = "catalog:ai-config:version"
# A safety net: even a change that bypassed the invalidation (raw SQL, queryset.update() outside
# the services) shows up within this time.
MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class AIConfigSnapshot:
    body: bytes
    etag: str
    version: str
    expires_at: float  # time.time() after which it must be rebuilt (a retirement date, the safety net)


_in_process: dict[str, AIConfigSnapshot] = {}


class _TokenReader:
    """Reads the shared version token as cheaply as the cache backend allows.

    FileBasedCache writes a new file (a new inode) on every set, so an unchanged (inode, mtime,
    ctime, size) means an unchanged token: one stat instead of open + unpickle. The stat comes
    before the read, so a token written in between is at worst read again next time.
    Django's RedisCache builds a new redis client object on every call, which costs more than
    the round trip; the token is read through one client kept for the process.
    Any other backend: cache.get.
    """

    def __init__(self, backend):
        self.backend = backend
        self.path = backend._key_to_file(_VERSION_KEY) if isinstance(backend, FileBasedCache) else None
        self.seen: tuple[tuple, str] | None = None
        self.redis_get = None
        if isinstance(backend, RedisCache):
            try:
                client = backend._cache.get_client(write=False)
                raw_key, loads = backend.make_and_validate_key(_VERSION_KEY), backend._cache._serializer.loads
                self.redis_get = lambda: (None if (raw := client.get(raw_key)) is None else loads(raw))
            except AttributeError:  # another Django's internals: the plain way still works
                self.redis_get = None

    def read(self):
        if self.redis_get is not None:
            return self.redis_get()
        if self.path is None:
            return self.backend.get(_VERSION_KEY)
        try:
            st = os.stat(self.path)
            fingerprint = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        except FileNotFoundError:
            fingerprint = None
        if fingerprint is not None and self.seen is not None and self.seen[0] == fingerprint:
            return self.seen[1]
        version = self.backend.get(_VERSION_KEY)
        self.seen = (fingerprint, version) if fingerprint is not None and version is not None else None
        return version


_token_reader: _TokenReader | None = None


def _current_version():
    global _token_reader
    backend = caches[DEFAULT_CACHE_ALIAS]
    if _token_reader is None or _token_reader.backend is not backend:
        _token_reader = _TokenReader(backend)
    return _token_reader.read()


def _current_version_ensured():
    """The current version token, created if the cache has none yet (first use, cache flushed)."""
    version = _current_version()
    if version is None:
        cache.add(_VERSION_KEY, uuid.uuid4().hex, timeout=None)
        version = cache.get(_VERSION_KEY)
    return version


def _payload_key() -> str:
    # The served tiers depend on CREDITGATE_SANDBOX, a per-process setting, not data.
    return f"catalog:ai-config:v1:sandbox={int(bool(settings.CREDITGATE_SANDBOX))}"


def _seconds_until(day: dt.date) -> float:
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return (start - timezone.now()).total_seconds()


def _ttl_seconds() -> float:
    """How long anything built from the catalog now stays true: until the next retirement date
    changes the served models, at most MAX_AGE_SECONDS."""
    from creditgate.catalog import selectors

    ttl = float(MAX_AGE_SECONDS)
    next_retirement = selectors.model_next_retirement()
    if next_retirement is not None:
        ttl = min(ttl, max(1.0, _seconds_until(next_retirement)))
    return ttl


def _build(version: str) -> tuple[AIConfigSnapshot, int]:
    from creditgate.catalog import services

    payload, breakers_change_at = services.ai_config_compute()
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    ttl = _ttl_seconds()
    if breakers_change_at is not None:
        # A tier hidden by open circuit breakers is listed again when the first cool-down ends
        # (a breaker opening or closing invalidates the payload at once: see providers.breaker).
        ttl = min(ttl, max(1.0, breakers_change_at - time.time()))
    snapshot = AIConfigSnapshot(
        body=body,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        version=version,
        expires_at=time.time() + ttl,
    )
    return snapshot, int(ttl) or 1


def _inside_a_transaction() -> bool:
    # A test's own wrapping transaction does not count: it is never committed or rolled back
    # under a running request.
    return any(not block._from_testcase for block in connections[DEFAULT_DB_ALIAS].atomic_blocks)


def ai_config_snapshot_get() -> AIConfigSnapshot:
    """The current payload: from this process's memory, the shared cache, or the database."""
    key = _payload_key()
    now = time.time()
    try:
        version = _current_version_ensured()
        snapshot = _in_process.get(key)
        if snapshot is not None and snapshot.version == version and snapshot.expires_at > now:
            return snapshot
        snapshot = cache.get(key)
        if snapshot is not None and snapshot.version == version and snapshot.expires_at > now:
            _in_process[key] = snapshot
            return snapshot
    except Exception:  # the page must not go down with the cache: serve from the database
        logger.warning("ai-config: the shared cache is unavailable; building from the database", exc_info=True)
        return _build("uncached")[0]

    snapshot, ttl = _build(version or "uncached")
    if _inside_a_transaction():
        # Rows read here may yet be rolled back, and a rollback invalidates nothing: never cache them.
        return snapshot
    try:
        cache.set(key, snapshot, timeout=ttl)
    except Exception:
        logger.warning("ai-config: could not store the payload in the shared cache", exc_info=True)
    _in_process[key] = snapshot
    return snapshot


@dataclass(frozen=True)
class _Memo:
    value: object
    version: str
    expires_at: float


_memos: dict[str, _Memo] = {}


def catalog_memo(name: str, build):
    """`build()`'s result, kept in this process while the catalog version is unchanged.

    For derived views of the catalog that every request needs (the charge path's routing): a
    change anywhere (ai_config_invalidate) or the next model retirement makes the next call
    build again; until then a call costs the version check and no query. The value is shared by
    every request of the process: callers must not modify it.
    """
    now = time.time()
    try:
        version = _current_version_ensured()
    except Exception:
        logger.warning("catalog memo %s: the shared cache is unavailable; reading the database", name, exc_info=True)
        return build()
    memo = _memos.get(name)
    if memo is not None and version is not None and memo.version == version and memo.expires_at > now:
        return memo.value
    value = build()
    if version is not None and not _inside_a_transaction():
        _memos[name] = _Memo(value=value, version=version, expires_at=now + _ttl_seconds())
    return value


def _bump_version() -> None:
    _in_process.clear()
    _memos.clear()
    try:
        cache.set(_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.exception("ai-config: could not invalidate the shared cache; stale for up to %s s",
                         MAX_AGE_SECONDS)


def ai_config_invalidate() -> None:
    """Call after any change to the catalog tables.

    Now, so the writer's own next read (same transaction, or a test) sees the change; and again
    on commit, so a payload that another request built from the pre-commit rows in between is
    not served either. A rolled-back change costs one needless rebuild.
    """
    _bump_version()
    transaction.on_commit(_bump_version)
