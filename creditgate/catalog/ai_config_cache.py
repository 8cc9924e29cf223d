"""The ai-config payload, prebuilt as JSON bytes and cached where every process sees it.

Django's default cache is shared by all processes (Redis with REDIS_URL, else a file cache on
this machine), so a change made by an admin on another worker or in a shell is seen by the
next request anywhere.

A change does not delete the payload; it replaces a *version token*. A payload is stored with
the version it was built under and is only served while that is still the current version. This
closes the race in which a request reads the old rows, a writer commits and invalidates, and the
request then stores its stale payload after the invalidation: that payload carries the old token
and is never served. Each process also keeps the last payload it served in memory, so a warm
request costs one small cache read (the token) and no database query. With the file cache even
that read is skipped while the token's file is unchanged (one stat instead of open + unpickle).
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
from django.db import transaction
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
# (fingerprint of the token's file, the token read from it): file cache only.
_token_seen: tuple[tuple, str] | None = None


_token_file_of: tuple[object, str | None] | None = None


def _token_file() -> str | None:
    global _token_file_of
    backend = caches[DEFAULT_CACHE_ALIAS]
    if _token_file_of is None or _token_file_of[0] is not backend:  # key validation and md5: once
        path = backend._key_to_file(_VERSION_KEY) if isinstance(backend, FileBasedCache) else None
        _token_file_of = (backend, path)
    return _token_file_of[1]


def _current_version() -> str | None:
    """The shared version token. FileBasedCache writes a new file (new inode) on every set, so an
    unchanged (inode, mtime, ctime, size) means an unchanged token: no need to open and unpickle it.
    The stat comes before the read, so a token written in between is at worst re-read next time."""
    global _token_seen
    path = _token_file()
    if path is None:
        return cache.get(_VERSION_KEY)
    try:
        st = os.stat(path)
        fingerprint = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    except FileNotFoundError:
        fingerprint = None
    if fingerprint is not None and _token_seen is not None and _token_seen[0] == fingerprint:
        return _token_seen[1]
    version = cache.get(_VERSION_KEY)
    _token_seen = (fingerprint, version) if fingerprint is not None and version is not None else None
    return version


def _payload_key() -> str:
    # The served tiers depend on CREDITGATE_SANDBOX, a per-process setting, not data.
    return f"catalog:ai-config:v1:sandbox={int(bool(settings.CREDITGATE_SANDBOX))}"


def _seconds_until(day: dt.date) -> float:
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return (start - timezone.now()).total_seconds()


def _build(version: str) -> tuple[AIConfigSnapshot, int]:
    from creditgate.catalog import selectors, services

    payload = services.ai_config_build()
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    ttl = float(MAX_AGE_SECONDS)
    next_retirement = selectors.model_next_retirement()
    if next_retirement is not None:
        ttl = min(ttl, max(1.0, _seconds_until(next_retirement)))
    snapshot = AIConfigSnapshot(
        body=body,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        version=version,
        expires_at=time.time() + ttl,
    )
    return snapshot, int(ttl) or 1


def ai_config_snapshot_get() -> AIConfigSnapshot:
    """The current payload: from this process's memory, the shared cache, or the database."""
    key = _payload_key()
    now = time.time()
    try:
        version = _current_version()
        if version is not None:
            snapshot = _in_process.get(key)
            if snapshot is not None and snapshot.version == version and snapshot.expires_at > now:
                return snapshot
            snapshot = cache.get(key)
            if snapshot is not None and snapshot.version == version and snapshot.expires_at > now:
                _in_process[key] = snapshot
                return snapshot
        else:
            cache.add(_VERSION_KEY, uuid.uuid4().hex, timeout=None)
            version = cache.get(_VERSION_KEY)
    except Exception:  # the page must not go down with the cache: serve from the database
        logger.warning("ai-config: the shared cache is unavailable; building from the database", exc_info=True)
        return _build("uncached")[0]

    snapshot, ttl = _build(version or "uncached")
    try:
        cache.set(key, snapshot, timeout=ttl)
    except Exception:
        logger.warning("ai-config: could not store the payload in the shared cache", exc_info=True)
    _in_process[key] = snapshot
    return snapshot


def _bump_version() -> None:
    _in_process.clear()
    try:
        cache.set(_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.error("ai-config: could not invalidate the shared cache; stale for up to %s s",
                     MAX_AGE_SECONDS, exc_info=True)


def ai_config_invalidate() -> None:
    """Call after any change to the catalog tables.

    Now, so the writer's own next read (same transaction, or a test) sees the change; and again
    on commit, so a payload that another request built from the pre-commit rows in between is
    not served either. A rolled-back change costs one needless rebuild.
    """
    _bump_version()
    transaction.on_commit(_bump_version)
