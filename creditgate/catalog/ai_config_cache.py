"""The catalog's version, and what each process derives from the catalog, kept until it changes.

A plain versioned cache. The catalog has one shared *version token* in Django's default cache
(Redis with REDIS_URL, else the file cache every process on the machine shares); any change
replaces it (`ai_config_invalidate`). Each process keeps what it built from the catalog (the
ai-config payload, the charge path's routing) in memory, tagged with the version it was built
under, and serves it while that is still the version.

It reads the shared version at most once every CHECK_SECONDS per process, not on every request:
that is what makes a warm request as cheap as a constant view with either backend (no cache
round trip at all). The price is the documented invalidation bound:
- a change made in THIS process (the admin, a service, a breaker that opens here) is served at
  once: the writer drops the process's memos and sets the new version itself;
- a change made in ANOTHER process (another gunicorn worker, a Celery worker, a shell) is served
  everywhere within CHECK_SECONDS (2 s);
- a change that bypassed the invalidation (raw SQL, queryset.update() outside the services)
  within MAX_AGE_SECONDS (300 s); a model's retirement date and a breaker's cool-down end the
  memo at that moment (the builder says when what it built stops being true).

A change bumps the version twice, now (so the writer's own next read sees it) and on commit (so
a memo another thread built from the pre-commit rows in between is not served either). A memo
built by a thread with an uncommitted catalog change of its own is not kept: those rows may
still be rolled back, and a rollback invalidates nothing.

This module knows nothing of the catalog's tables: selectors and services build what is kept
(so there is no import cycle between them).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction

logger = logging.getLogger(__name__)

_VERSION_KEY = "catalog:version"
CHECK_SECONDS = 2.0
MAX_AGE_SECONDS = 300.0


@dataclass(frozen=True)
class _Memo:
    value: Any
    version: str
    expires_at: float  # time.time()


_memos: dict[str, _Memo] = {}
# (the shared version as last read, time.monotonic() of that read): one tuple, swapped whole, so
# threads never see half of it.
_seen: tuple[str | None, float] = (None, 0.0)
_thread = threading.local()  # .uncommitted: this thread changed the catalog in an open transaction


def catalog_version() -> str:
    """The shared version, read from the cache at most every CHECK_SECONDS (created if missing)."""
    global _seen
    version, read_at = _seen
    now = time.monotonic()
    if version is not None and now - read_at < CHECK_SECONDS:
        return version
    version = cache.get(_VERSION_KEY)
    if version is None:  # first use, or the cache was flushed
        cache.add(_VERSION_KEY, uuid.uuid4().hex, timeout=None)
        version = cache.get(_VERSION_KEY)
    _seen = (version, now)
    return version


def catalog_memo(name: str, build: Callable[[], tuple[Any, float | None]]):
    """What `build()` returned, kept in this process while the catalog version is unchanged.

    `build()` returns (value, expires_at): the time.time() after which the value is no longer
    true (a retirement date, a breaker's cool-down), or None. The value is shared by every
    request of the process: callers must not modify it.
    """
    try:
        version = catalog_version()
    except Exception:
        logger.warning("catalog memo %s: the shared cache is unavailable; reading the database", name, exc_info=True)
        return build()[0]
    now = time.time()
    memo = _memos.get(name)
    if memo is not None and memo.version == version and memo.expires_at > now:
        return memo.value
    value, expires_at = build()
    if not _uncommitted_change():
        _memos[name] = _Memo(value, version, min(expires_at or now + MAX_AGE_SECONDS, now + MAX_AGE_SECONDS))
    return value


def ai_config_invalidate() -> None:
    """Call after any change to the catalog tables (the catalog's signals do) or to what they
    serve (the circuit breakers)."""
    _bump()
    if connection.in_atomic_block:
        _thread.uncommitted = True
        transaction.on_commit(_committed)


def forget_uncommitted() -> None:
    """A request starts: whatever transaction an earlier one on this thread had is over (committed
    or rolled back). Connected to request_started."""
    _thread.uncommitted = False


def _committed() -> None:
    _thread.uncommitted = False
    _bump()


def _uncommitted_change() -> bool:
    if getattr(_thread, "uncommitted", False) and not connection.in_atomic_block:
        _thread.uncommitted = False  # its transaction ended (committed, or rolled back with its rows)
    return getattr(_thread, "uncommitted", False)


def _bump() -> None:
    global _seen
    _memos.clear()
    version = uuid.uuid4().hex
    try:
        cache.set(_VERSION_KEY, version, timeout=None)
    except Exception:
        logger.exception("catalog: could not publish the new version; other processes stay stale for up to %s s",
                         MAX_AGE_SECONDS)
    _seen = (version, time.monotonic())


def process_forget() -> None:
    """Forget what this process kept, as a freshly started process (tests, after cache.clear())."""
    global _seen
    _memos.clear()
    _seen = (None, 0.0)
    _thread.uncommitted = False
