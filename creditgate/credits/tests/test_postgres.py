"""PostgreSQL only: the append-only trigger, and real concurrency from several threads in
several OS processes against one committed database."""

import datetime as dt
import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from creditgate.core.errors import InsufficientCredits
from creditgate.core.tests import races
from creditgate.credits import selectors, services
from creditgate.credits.models import Hold, LedgerEntry, MemberSpend

from .conftest import make_user

pytestmark = pytest.mark.postgres
WORKER = "creditgate.credits.tests.concurrency_worker"


@pytest.fixture
def pg(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def Workers(jobs: list[dict], *, module: str = WORKER, env: dict | None = None) -> races.Workers:
    """The ledger's worker processes (core.tests.races) against this test database."""
    return races.Workers(module, jobs, env={"DATABASE_URL": _database_url(), **(env or {})})


def in_threads(fn, args: list, *, threads: int, go: threading.Event) -> tuple[ThreadPoolExecutor, list[Future]]:
    def one(arg):
        go.wait()
        try:
            return fn(arg)
        finally:
            connection.close()

    pool = ThreadPoolExecutor(max_workers=threads)
    futures = [pool.submit(one, a) for a in args]
    return pool, futures


def test_the_database_refuses_to_rewrite_the_ledger_or_a_settled_hold(pg):
    account = services.account_for_user(user=make_user(credits=10))
    hold, _ = services.hold_place(account=account, amount=4, idempotency_key="k", fingerprint="f")
    services.hold_release(hold_id=hold.pk)
    for sql in ["UPDATE credits_ledgerentry SET amount = 1000", "DELETE FROM credits_ledgerentry",
                f"UPDATE credits_hold SET state = 'active', settled_at = NULL WHERE id = {hold.pk}"]:
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE credits_account SET available = -1 WHERE id = {account.pk}")
    assert selectors.ledger_check() == []
    assert LedgerEntry.objects.count() == 3


def test_50_concurrent_holds_of_1_against_20_credits_from_threads_and_processes(pg):
    account = services.account_for_user(user=make_user(credits=20))
    ops = [{"op": "hold", "account_id": account.pk, "amount": 1, "key": f"k{i}"} for i in range(50)]
    workers = Workers([{"threads": 6, "ops": ops[:17]}, {"threads": 6, "ops": ops[17:34]}])
    go = threading.Event()

    def place(op):
        try:
            services.hold_place(account=account, amount=1, idempotency_key=op["key"], fingerprint="f")
            return {"ok": True}
        except InsufficientCredits as exc:
            return {"ok": False, "code": exc.code, "details": exc.details}

    pool, futures = in_threads(place, ops[34:], threads=6, go=go)
    workers.go()
    go.set()
    results = workers.results() + [f.result() for f in futures]
    pool.shutdown()

    assert len(results) == 50
    assert sum(r["ok"] for r in results) == 20
    refused = [r for r in results if not r["ok"]]
    assert len(refused) == 30 and {r["code"] for r in refused} == {"insufficient_credits"}
    assert all(r["details"]["required"] == 1 for r in refused)
    assert selectors.balance_get(account=account) == {"balance": 20, "held": 20, "available": 0}
    assert Hold.objects.filter(account=account).count() == 20
    assert LedgerEntry.objects.filter(account=account, kind="hold").count() == 20
    call_command("check_ledger")  # exits 1 on any inconsistency


def test_a_key_replayed_concurrently_holds_once(pg):
    account = services.account_for_user(user=make_user(credits=20))
    ops = [{"op": "hold", "account_id": account.pk, "amount": 5, "key": "same"} for _ in range(12)]
    workers = Workers([{"threads": 6, "ops": ops[:6]}, {"threads": 6, "ops": ops[6:]}])
    workers.go()
    results = workers.results()
    assert all(r["ok"] for r in results)
    assert sum(r["created"] for r in results) == 1 and len({r["hold_id"] for r in results}) == 1
    assert selectors.balance_get(account=account) == {"balance": 20, "held": 5, "available": 15}
    assert selectors.ledger_check() == []


def test_capture_release_and_expiry_racing_on_the_same_holds_take_effect_once(pg):
    account = services.account_for_user(user=make_user(credits=100))
    holds = [services.hold_place(account=account, amount=3, idempotency_key=f"k{i}", fingerprint="f")[0]
             for i in range(12)]
    ids = [h.pk for h in holds]
    workers = Workers([
        {"threads": 4, "ops": [{"op": "capture", "hold_id": pk, "amount": 2} for pk in ids]},
        {"threads": 4, "ops": [{"op": "release", "hold_id": pk} for pk in ids]},
    ])
    go = threading.Event()
    pool, futures = in_threads(lambda pk: services.hold_capture(hold_id=pk, amount=3), ids, threads=3, go=go)
    sweeper, sweep = in_threads(lambda now: services.holds_release_stale(now=now),
                                [timezone.now() + dt.timedelta(days=1)] * 2, threads=2, go=go)
    workers.go()
    go.set()
    results = workers.results()
    local_captures = [f.result() for f in futures]
    expired = sum(f.result() for f in sweep)
    pool.shutdown()
    sweeper.shutdown()

    effects = sum(r["ok"] for r in results) + sum(local_captures) + expired
    assert effects == len(ids)  # every hold settled by exactly one of the racers
    states = dict(Hold.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert set(states.values()) <= {"captured", "released", "expired"}
    assert expired == sum(s == "expired" for s in states.values())
    for pk in ids:
        settle_entries = LedgerEntry.objects.filter(hold_id=pk).exclude(kind="hold")
        assert sum(e.held_delta for e in settle_entries) == -3
    charged = -sum(LedgerEntry.objects.filter(account=account, kind="capture").values_list("amount", flat=True))
    assert selectors.balance_get(account=account) == {"balance": 100 - charged, "held": 0,
                                                      "available": 100 - charged}
    call_command("check_ledger")  # exits 1 on any inconsistency


def test_a_member_capped_at_20_gets_exactly_20_of_60_concurrent_holds_and_no_one_else_is_affected(pg):
    """Three processes (and this one) race: a writer capped at 20 sends 60 one-credit holds, an
    uncapped editor 30, a bot's API key capped at 5 sends 20; then the editor drains the account
    while the writer's holds are captured and the writer keeps asking."""
    owner = make_user("owner", credits=100)
    account = services.account_for_user(user=owner)
    writer, editor, bot = make_user("writer"), make_user("editor"), make_user("bot")
    for user in (writer, editor, bot):
        services.account_member_add(account=account, user=user)
    services.member_update(actor=owner, member=services.member_for_user(user=writer), monthly_cap=20)
    bot_key, _ = services.api_key_create(actor=owner, member=services.member_for_user(user=bot), name="bot",
                                         monthly_cap=5)

    def hold(user, key, **extra):
        return {"op": "hold", "account_id": account.pk, "amount": 1, "key": key, "user_id": user.pk, **extra}

    def race(ops: list[dict]) -> list[dict]:
        ops = ops[:]
        random.Random(7).shuffle(ops)
        third = len(ops) // 3
        workers = Workers([{"threads": 8, "ops": ops[:third]}, {"threads": 8, "ops": ops[third:2 * third]}])
        go = threading.Event()
        pool, futures = in_threads(_run_op, ops[2 * third:], threads=8, go=go)
        workers.go()
        go.set()
        results = workers.results() + [f.result() for f in futures]
        pool.shutdown()
        return results

    first = race([hold(writer, f"w{i}") for i in range(60)] + [hold(editor, f"e{i}") for i in range(30)]
                 + [hold(bot, f"b{i}", api_key_id=bot_key.pk) for i in range(20)])
    by_user = {u.pk: [r for r in first if r["user_id"] == u.pk] for u in (writer, editor, bot)}
    assert sum(r["ok"] for r in by_user[writer.pk]) == 20
    assert {r["code"] for r in by_user[writer.pk] if not r["ok"]} == {"member_cap_exceeded"}
    assert sum(r["ok"] for r in by_user[editor.pk]) == 30           # the writer's cap never touched the editor
    assert sum(r["ok"] for r in by_user[bot.pk]) == 5
    assert {r["code"] for r in by_user[bot.pk] if not r["ok"]} == {"api_key_cap_exceeded"}
    assert selectors.balance_get(account=account) == {"balance": 100, "held": 55, "available": 45}
    call_command("check_ledger")

    writer_holds = list(Hold.objects.filter(user=writer, state="active").values_list("pk", flat=True))
    second = race([hold(editor, f"e2-{i}") for i in range(60)] + [hold(writer, f"w2-{i}") for i in range(10)]
                  + [{"op": "capture", "hold_id": pk, "amount": 1, "user_id": writer.pk} for pk in writer_holds])
    holds, captures = [r for r in second if r["op"] == "hold"], [r for r in second if r["op"] == "capture"]
    assert sum(r["ok"] for r in holds if r["user_id"] == editor.pk) == 45   # exactly what the account had left
    assert not [r for r in holds if r["user_id"] == writer.pk and r["ok"]]
    assert len(captures) == 20 and all(r["ok"] for r in captures)
    assert selectors.balance_get(account=account) == {"balance": 80, "held": 80, "available": 0}
    month = selectors.spending_month()
    assert MemberSpend.objects.get(account=account, user=writer, month=month).spent == 20
    assert MemberSpend.objects.get(account=account, user=writer, month=month).held == 0
    assert MemberSpend.objects.get(account=account, user=editor, month=month).held == 75
    assert selectors.ledger_check() == []
    call_command("check_ledger")


def _run_op(op: dict) -> dict:
    """One operation from a thread of this process, reported like concurrency_worker's."""
    from django.contrib.auth import get_user_model

    from creditgate.core.errors import ApplicationError
    from creditgate.credits.models import Account, ApiKey

    try:
        if op["op"] == "capture":
            return {"ok": services.hold_capture(hold_id=op["hold_id"], amount=op["amount"]), "op": "capture",
                    "user_id": op["user_id"]}
        user = get_user_model()(pk=op["user_id"])
        api_key = ApiKey(pk=op["api_key_id"]) if op.get("api_key_id") else None
        services.hold_place(account=Account(pk=op["account_id"]), amount=op["amount"], idempotency_key=op["key"],
                            fingerprint="f", user=user, api_key=api_key)
        return {"ok": True, "op": "hold", "user_id": op["user_id"]}
    except ApplicationError as exc:
        return {"ok": False, "code": exc.code, "details": exc.details, "op": op["op"], "user_id": op["user_id"]}


def test_the_audit_reads_one_snapshot_while_a_hold_settles_between_its_queries(pg):
    """The hourly audit runs on a live system: a job settling between two of its queries (the
    ledger sums read before the capture, the account read after) must not look like a broken
    ledger. The capture is committed from another connection right after the audit's first query."""
    user = make_user(credits=10)
    account = services.account_for_user(user=user)
    hold, _ = services.hold_place(account=account, amount=3, idempotency_key="k", fingerprint="f")
    settled = threading.Event()

    def capture() -> None:
        services.hold_capture(hold_id=hold.pk, amount=2)
        connection.close()  # this thread's own connection

    def capture_after_first_query(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not settled.is_set() and "SET TRANSACTION" not in sql:
            settled.set()
            worker = threading.Thread(target=capture)
            worker.start()
            worker.join()
        return result

    with connection.execute_wrapper(capture_after_first_query):
        problems = selectors.ledger_check()
    assert settled.is_set() and problems == []
    assert Hold.objects.get(pk=hold.pk).captured_amount == 2
    assert selectors.ledger_check() == []
