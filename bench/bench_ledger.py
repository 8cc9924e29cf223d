"""Ledger benchmark (PostgreSQL): hold + capture pairs per second with 8 concurrent workers,
against a baseline measured in the same run: one conditional UPDATE per transaction on a plain
table. Prints the ratios and the anomalies (a counter other than funded minus exactly the pairs
(updates) done on it, counter != ledger sum, a hold settled twice or not at all), which must be 0.

The headline ratio is against the floor of a two-phase hold: two autocommit single-row
conditional UPDATEs per hold+capture pair, i.e. pairs/s / (autocommit UPDATEs/s / 2); target
>= 0.5. A pair is two durable transactions (the provider call sits between them), so it can never
beat that floor. Also printed, as before: the ratio against one autocommit UPDATE per pair, and
against BEGIN / UPDATE / COMMIT (what transaction.atomic() runs). Both sides run alike: forked
processes, one persistent Django connection each, DEBUG off.

    .venv/bin/python bench/bench_ledger.py [--seconds 3] [--workers 8]

Uses DATABASE_URL, or postgres://postgres@127.0.0.1:5432/cg_bench_ledger, which it creates and
migrates itself. Workers are OS processes (forked after Django is set up), as web workers are.

Two scenarios: every worker on its own account (many users), and all workers on ONE account
(a team hammering a shared balance: every write queues on the same row). The baseline of each
scenario touches the same number of rows the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/cg_bench_ledger"
PLAIN_TABLE = "bench_plain_balance"


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    os.environ.setdefault("CREDITGATE_ENCRYPTION_KEYS", "Zm9yLWJlbmNobWFya3Mtb25seS0zMi1ieXRlcy1rZXk=")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # As deployed: with DEBUG on, every query of both sides would also be timed and kept in memory.
    os.environ.setdefault("DEBUG", "False")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    # No pool: each forked worker opens its own connection. A pool opened in the parent is inherited
    # by every child, and `connection.close()` before the fork only hands its connection back to it,
    # so the workers would share one socket (they hung or read each other's results).
    os.environ["CREDITGATE_DB_POOL_SIZE"] = "0"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def prepare(accounts: int, credits: int) -> list[int]:
    """Fresh accounts funded through the ledger, and a plain table with the same balances."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from creditgate.credits import services

    run = int(time.time() * 1000)
    ids = []
    for i in range(accounts):
        user = get_user_model().objects.create_user(username=f"bench-{run}-{i}")
        account = services.account_for_user(user=user)
        services.credits_grant(account=account, amount=credits, reason="benchmark")
        ids.append(account.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN_TABLE}")
        cursor.execute(f"CREATE TABLE {PLAIN_TABLE} (id bigint PRIMARY KEY, available bigint NOT NULL "
                       f"CHECK (available >= 0))")
        cursor.executemany(f"INSERT INTO {PLAIN_TABLE} VALUES (%s, %s)", [(i, credits) for i in range(accounts)])
    connection.close()  # forked workers must not share this socket
    return ids


def baseline_worker(row_id: int, explicit: bool, seconds: float, start: float, out) -> None:
    """Handled exactly as the ledger side is: the same forked process, Django connection and
    cursor. Two kinds of transaction: `explicit`, BEGIN / UPDATE / COMMIT (what
    `transaction.atomic()` runs around one statement); otherwise the UPDATE alone in autocommit
    mode, its own transaction, as hold_place and hold_capture each run theirs (the stricter one)."""
    from django.db import connection, transaction

    done = 0
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while time.time() < end:
        with transaction.atomic() if explicit else contextlib.nullcontext(), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {PLAIN_TABLE} SET available = available - 1 WHERE id = %s AND available >= 1",
                           [row_id])
        done += 1
    connection.close()
    out.put((row_id, done, 0))


def ledger_worker(account_id: int, worker: int, seconds: float, start: float, out) -> None:
    from django.db import connection

    from creditgate.credits import services
    from creditgate.credits.models import Account

    account = Account(pk=account_id)
    done = anomalies = 0
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while time.time() < end:
        hold, created = services.hold_place(account=account, amount=2, idempotency_key=f"w{worker}-{done}-{start}",
                                            fingerprint="bench")
        # A fresh hold that cannot be captured, or a replay on a fresh key, is a double/missed effect.
        if not created or not services.hold_capture(hold_id=hold.pk, amount=1):
            anomalies += 1
        done += 1
    connection.close()
    out.put((account_id, done, anomalies))


def measure(target, args_for, workers: int, seconds: float) -> tuple[float, dict[int, int], int]:
    """Operations per second, how many were done on each row (account), and the workers' anomalies."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 0.5
    procs = [ctx.Process(target=target, args=(*args_for(w), seconds, start, out)) for w in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    done: dict[int, int] = {}
    for row, count, _ in results:
        done[row] = done.get(row, 0) + count
    return sum(done.values()) / seconds, done, sum(r[2] for r in results)


def audit(pairs: dict[int, int], updates: dict[int, int], credits: int) -> list[str]:
    """Exact books: each pair charged 1 credit of its account, each baseline update took 1."""
    from django.db import connection

    from creditgate.credits import selectors
    from creditgate.credits.models import Account, Hold, LedgerEntry

    problems = [p for p in selectors.ledger_check() if any(f"account {a} " in p for a in pairs)
                or p.startswith("hold ") or "negative" in p]
    if Hold.objects.filter(account_id__in=pairs, state="active").exists():
        problems.append("a hold was left active")
    for account_id, done in pairs.items():
        captured = -sum(LedgerEntry.objects.filter(account_id=account_id, kind="capture")
                        .values_list("amount", flat=True))
        if captured != done:
            problems.append(f"account {account_id}: charged {captured}, expected {done}")
        counters = Account.objects.filter(pk=account_id).values_list("available", "held").get()
        if counters != (credits - done, 0):
            problems.append(f"account {account_id}: (available, held) {counters}, expected {(credits - done, 0)}")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, available FROM {PLAIN_TABLE}")
        for row_id, available in cursor.fetchall():
            if available != credits - updates.get(row_id, 0):
                problems.append(f"baseline row {row_id}: {available}, expected {credits - updates.get(row_id, 0)}")
    connection.close()
    return problems


def scenario(name: str, *, shared: bool, workers: int, seconds: float) -> tuple[float, float, int]:
    """(ratio against the two-UPDATE floor, ratio against BEGIN/UPDATE/COMMIT, anomalies)."""
    rows, credits = (1 if shared else workers), 10**9
    ids = prepare(rows, credits=credits)
    row = (lambda w: 0) if shared else (lambda w: w)
    base_rate, updates, _ = measure(baseline_worker, lambda w: (row(w), False), workers, seconds)
    explicit_rate, explicit_updates, _ = measure(baseline_worker, lambda w: (row(w), True), workers, seconds)
    pair_rate, pairs, worker_anomalies = measure(
        ledger_worker, lambda w: (ids[0] if shared else ids[w], w), workers, seconds)
    updates = {r: updates.get(r, 0) + explicit_updates.get(r, 0) for r in set(updates) | set(explicit_updates)}
    problems = audit({a: pairs.get(a, 0) for a in ids}, updates, credits)
    anomalies = worker_anomalies + len(problems)
    ratio = pair_rate / base_rate if base_rate else 0.0
    floor_ratio = 2 * ratio
    explicit_ratio = pair_rate / explicit_rate if explicit_rate else 0.0
    print(f"{name}: {pair_rate:6.0f} hold+capture pairs/s | autocommit UPDATE {base_rate:6.0f}/s -> floor ratio "
          f"{floor_ratio:.2f} (per UPDATE {ratio:.2f}) | BEGIN/UPDATE/COMMIT {explicit_rate:6.0f}/s -> ratio "
          f"{explicit_ratio:.2f} | anomalies {anomalies}")
    for problem in problems[:10]:
        print(f"    anomaly: {problem}")
    return floor_ratio, explicit_ratio, anomalies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per phase")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgres"):
        print("bench_ledger needs PostgreSQL (DATABASE_URL=postgres://...)", file=sys.stderr)
        return 2
    ensure_database(url)
    setup_django(url)
    print(f"{args.workers} worker processes, {args.seconds:g} s per phase, database {urlparse(url).path[1:]}")
    ratio, explicit, anomalies = scenario("own account per worker", shared=False, workers=args.workers,
                                          seconds=args.seconds)
    shared_ratio, shared_explicit, shared_anomalies = scenario("one shared account    ", shared=True,
                                                               workers=args.workers, seconds=args.seconds)
    total = anomalies + shared_anomalies
    print(f"ratio {ratio:.2f} against the two-UPDATE floor (target >= 0.5), {explicit:.2f} against "
          f"BEGIN/UPDATE/COMMIT; one shared account: {shared_ratio:.2f} and {shared_explicit:.2f}; anomalies {total}"
          + ("" if total == 0 else ": ANOMALIES"))
    return 0 if total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
