"""A queue in the event loop in front of the database pool, for the sync part of async views.

Under load, an ASGI process starts a thread for each request's sync part (authentication, the hold,
the job's reads), and each wants a pooled connection. With hundreds of requests at once, those
threads pile up on psycopg's pool, each waiting up to CREDITGATE_DB_POOL_TIMEOUT and then failing as
a 503, while the ones holding connections are slowed by all the others (the bench_v1 run at 500
clients: 630 such 503s, which a larger pool did not remove). Here, at most as many sync parts run at
once as the pool has connections; the others wait as coroutines, in arrival order, at no cost but a
place in a queue. Without a pool (SQLite, CREDITGATE_DB_POOL_SIZE=0) there is no gate.

Why not psycopg's own queue: its waiters are threads (one per request, each with its stack and a
share of the GIL), and its timeout cannot tell a busy pool from an unreachable database.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from contextlib import AbstractAsyncContextManager

from django.db import connections

_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _size() -> int:
    pool = connections["default"].settings_dict.get("OPTIONS", {}).get("pool")
    return int(pool.get("max_size", 0)) if isinstance(pool, dict) else 0


def db_gate() -> AbstractAsyncContextManager:
    """`async with db_gate(): await sync_to_async(...)()`: a place among the pool's connections."""
    size = _size()
    if not size:
        return contextlib.nullcontext()
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(size)
    return gate
