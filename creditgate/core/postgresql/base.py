"""Django's PostgreSQL backend, with the check its connection pool runs on a connection before it
hands it out (settings: the ENGINE when the pool is on, CREDITGATE_DB_POOL_SIZE > 0).

Django's CONN_HEALTH_CHECKS makes the pool ping every connection it hands out (psycopg_pool's
`check_connection`, an empty query): a round trip each time, several a job, as each step of a run
and each request's sync part takes a connection and gives it back. bench_paid_jobs measured it at
about 2 ms of a job's ~19 ms of server CPU (PostgreSQL + Celery, c=8). `pool_check` skips the ping
for a connection handed out less than CHECK_AFTER_SECONDS ago: the pool had it back in a good state
(it discards one returned broken), so all that can have happened since is a database restart or a
killed backend in that second, and the first statement then fails as any statement of a connection
cut mid-request does (a run's steps retry on a fresh connection, a request answers 503 with
Retry-After). A connection that sat idle longer, as all of them have after an outage, is pinged and
replaced if dead, as before.

Why a backend of our own: Django builds the pool with `check=` its own (or None), so a check in
OPTIONS["pool"] collides with it, and psycopg's pool takes its check only when it is built.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg_pool import ConnectionPool

CHECK_AFTER_SECONDS = 1.0


def pool_check(conn: Connection) -> None:
    """Ping `conn` unless it was handed out less than CHECK_AFTER_SECONDS ago; raises if it is dead
    (the pool then replaces it)."""
    now = time.monotonic()
    last = getattr(conn, "_creditgate_handed_out", None)
    if last is None or now - last >= CHECK_AFTER_SECONDS:
        ConnectionPool.check_connection(conn)
    conn._creditgate_handed_out = now  # type: ignore[attr-defined]  # psycopg's Connection takes attributes


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        # Before the pool hands anything out (Django opens it at its first connection). psycopg-pool
        # keeps its check in `_check` (pinned in requirements; core/tests/test_postgresql.py reads it back).
        if pool is not None and pool._check is not pool_check:
            pool._check = pool_check
        return pool
