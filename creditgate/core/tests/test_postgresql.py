"""The PostgreSQL backend's settings: the pool's connection check (a connection handed out a moment
ago is not pinged again; one that sat idle is, and a dead one is replaced before a request gets it),
and statements prepared once a connection keeps running them."""

from __future__ import annotations

from typing import cast

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from creditgate.core.postgresql import base as backend


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pings(monkeypatch):
    clock, pinged = _Clock(), []
    monkeypatch.setattr(backend.time, "monotonic", clock)
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda conn: pinged.append(conn)))
    return clock, pinged


class _Conn:
    """What the check touches of a psycopg connection: the attribute it keeps."""


def _conn() -> psycopg.Connection:
    return cast(psycopg.Connection, _Conn())


def test_a_connection_handed_out_a_moment_ago_is_not_pinged_again(pings):
    clock, pinged = pings
    conn = _conn()
    backend.pool_check(conn)  # first time: pinged
    clock.now += 0.2
    backend.pool_check(conn)
    clock.now += backend.CHECK_AFTER_SECONDS - 0.01
    backend.pool_check(conn)  # within the window of the previous hand-out
    assert len(pinged) == 1


def test_a_connection_idle_past_the_window_is_pinged(pings):
    clock, pinged = pings
    first, second = _conn(), _conn()
    backend.pool_check(first)
    backend.pool_check(second)  # each connection its own time
    clock.now += backend.CHECK_AFTER_SECONDS
    backend.pool_check(first)
    assert pinged == [first, second, first]


def test_a_killed_idle_connection_is_replaced_before_it_is_handed_out(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL; set DATABASE_URL")
    monkeypatch.setattr(backend, "CHECK_AFTER_SECONDS", 0.0)  # any idle time is past the window
    where = connection.settings_dict
    dsn = psycopg.conninfo.make_conninfo(dbname="postgres", host=where["HOST"], port=where["PORT"] or 5432,
                                         user=where["USER"], password=where["PASSWORD"] or None)
    pool = ConnectionPool(dsn, min_size=1, max_size=1, check=backend.pool_check, open=True, timeout=10)
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(dsn, autocommit=True) as admin:  # the database drops the idle connection
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pool.connection() as conn:  # the check found it dead; a new one answers
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid != pid
    finally:
        pool.close()


def test_the_pool_of_the_settings_runs_this_check():
    if getattr(connection, "pool", None) is None:
        pytest.skip("needs PostgreSQL with the pool; set DATABASE_URL")
    assert connection.pool._check is backend.pool_check  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_a_statement_run_again_and_again_is_prepared_once():
    """Server-side binding: a statement a connection keeps running is prepared once (parsed once,
    PostgreSQL's prepared statements), the ledger's and the ORM's alike."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL; set DATABASE_URL")
    from creditgate.credits.models import Account

    for n in range(8):
        list(Account.objects.filter(pk=n).values_list("available", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                       ['%FROM "credits_account" WHERE "credits_account"."id" = $1%'])
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db
def test_the_jobs_in_flight_are_counted_on_their_partial_index_however_often(django_user_model):
    """A prepared statement is planned for its values at every run: a generic plan cannot use the
    partial index of unfinished jobs (its condition is a parameter there), and would read every job
    the account ever had, under the account's lock, for each new job."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL; set DATABASE_URL")
    from creditgate.credits import services as credits_services
    from creditgate.generation import charging

    account = credits_services.account_for_user(user=django_user_model.objects.create_user(username="many"))
    for _ in range(15):  # PostgreSQL plans a prepared statement's first 5 runs for their values anyway
        charging.jobs_in_flight(account, None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
                       ['%FROM "generation_job" WHERE ("generation_job"."account_id" = $1%'])
        [(generic_plans, custom_plans)] = cursor.fetchall()
    assert generic_plans == 0 and custom_plans >= 8
