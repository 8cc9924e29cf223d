"""Writes to accounts, the ledger and holds. Every change of a counter appends the ledger entry
that explains it in the same transaction.

Locking (PostgreSQL with several processes, and SQLite): every counter change is ONE conditional
statement, `UPDATE credits_account SET available = available + %s, held = held + %s WHERE id = %s
AND available >= %s RETURNING available, held`. The check and the change cannot be separated:
PostgreSQL takes the row lock for the UPDATE, and under READ COMMITTED a writer that waited for a
concurrent one re-evaluates the WHERE clause against the row version that one committed, so two
processes can never both pass `available >= amount` on the same credits. Compared with
`select_for_update()` followed by an UPDATE it is one round trip less while the row is locked,
which is what bounds throughput on a busy account; the CHECK (available >= 0) is the backstop.
On SQLite the IMMEDIATE transaction mode (settings) serializes writers anyway.

Holds leave `active` exactly once through `UPDATE ... WHERE state = 'active'`: capture, release
and the expiry sweep can race, only the one whose UPDATE matched the row moves credits. Settling
locks the hold row, then the account row; placing locks the account row, then claims the new
hold's key; no lock is taken in the other order, so the racers cannot deadlock.

Money-moving functions run in `transaction.atomic(durable=True)`: they can never be nested in a
longer transaction that would keep the account row locked (or, worse, span a provider call).
`hold_place` is the exception, see its docstring.

Why holds have a PostgreSQL-only path: placing and capturing a hold is the hot path of every
generation request. Written as ORM calls plus conditional UPDATEs in BEGIN/COMMIT, a hold + capture
pair took 8 to 10 round trips, and bench/bench_ledger.py (8 processes, 2 shared cores) measured
~270 pairs/s on own accounts and ~145 on one shared account. On PostgreSQL each of `hold_place`
and the settlement is now ONE statement (data-modifying CTEs: the conditional counter UPDATE, the
hold row, the ledger entries), which is its own transaction in autocommit mode: ~510-640 and
~380-420 pairs/s on the same machine (a bare one-row UPDATE baseline: ~3500-4300/s). Sent as
server-side prepared statements (planned once per connection, not on every call) they went from
~1650 to ~3050 pairs/s on own accounts on a later, faster machine (baseline ~11000/s). SQLite has no
data-modifying CTEs and serializes writers anyway; it keeps the step-by-step version, next to the
statement, and the same tests run on both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from creditgate.core.errors import IdempotencyConflict, InsufficientCredits, InvalidRequest
from creditgate.credits.models import Account, AccountMember, EntryKind, Hold, HoldState, LedgerEntry

# Far above any real purchase, far below BIGINT: an absurd amount is a 400, never an overflow (500).
MAX_AMOUNT = 10**12


def _check_amount(amount, *, allow_negative: bool = False, allow_zero: bool = False) -> int:
    ok = isinstance(amount, int) and not isinstance(amount, bool) and abs(amount) <= MAX_AMOUNT
    ok = ok and (amount > 0 or (allow_zero and amount == 0) or (allow_negative and amount < 0))
    if not ok:
        sign = "a non-zero" if allow_negative else "a positive"
        raise InvalidRequest(f"The amount must be {sign} whole number of credits.",
                             details={"amount": [f"Must be {sign} integer up to {MAX_AMOUNT}."]})
    return amount


def _counters_move(*, account_id: int, available_delta: int, held_delta: int) -> tuple[int, int] | None:
    """Apply both deltas if `available` stays >= 0; the counters after, or None if it would not."""
    table = connection.ops.quote_name(Account._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET available = available + %s, held = held + %s "
            f"WHERE id = %s AND available + %s >= 0 RETURNING available, held",
            [available_delta, held_delta, account_id, available_delta],
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def _available_now(account_id: int) -> int:
    return Account.objects.filter(pk=account_id).values_list("available", flat=True).first() or 0


# --- Accounts --------------------------------------------------------------------------------


def account_create(*, name: str, owner=None) -> Account:
    with transaction.atomic():
        account = Account.objects.create(name=name[:150])
        if owner is not None:
            AccountMember.objects.create(account=account, user=owner)
    return account


def account_for_user(*, user) -> Account:
    """The user's account; creates the personal one if missing."""
    if get_user_model().credit_membership.is_cached(user):
        # Loaded with the user (credits.authentication): no query. Missing: created below.
        member = getattr(user, "credit_membership", None)
    else:
        member = AccountMember.objects.select_related("account").filter(user=user).first()
    if member:
        return member.account
    try:
        return account_create(name=user.get_username(), owner=user)
    except IntegrityError:
        # A concurrent request created it first (the membership's user is unique).
        return AccountMember.objects.select_related("account").get(user=user).account


def account_member_add(*, account: Account, user) -> AccountMember:
    """Move a user into `account`. Refused if the user's own account still has credits or holds."""
    with transaction.atomic():
        current = AccountMember.objects.select_related("account").filter(user=user).first()
        if current and current.account_id == account.pk:
            return current
        if current:
            old = Account.objects.select_for_update().get(pk=current.account_id)
            if old.available or old.held:
                raise InvalidRequest(f"{user} still has credits in their own account.",
                                     details={"user": ["The user's current account is not empty."]})
            current.account = account
            current.save(update_fields=["account"])
            user.credit_membership = current  # account_for_user trusts a membership loaded with the user
            return current
        return AccountMember.objects.create(account=account, user=user)


# --- Grants and adjustments ------------------------------------------------------------------

_GRANT_KINDS = {EntryKind.GRANT, EntryKind.REFUND, EntryKind.ADJUSTMENT}


def credits_grant(*, account: Account, amount: int, actor=None, reason: str = "", kind: str = "grant",
                  reference: str = "") -> LedgerEntry:
    """Add credits (grant, refund) or correct the balance (adjustment, may be negative but never
    below what is available: held credits belong to running requests)."""
    if kind not in _GRANT_KINDS:
        raise InvalidRequest(f"Unknown kind {kind!r}.", details={"kind": [f"Must be one of {sorted(_GRANT_KINDS)}."]})
    amount = _check_amount(amount, allow_negative=(kind == EntryKind.ADJUSTMENT))
    with transaction.atomic(durable=True):
        after = _counters_move(account_id=account.pk, available_delta=amount, held_delta=0)
        if after is None:
            available = _available_now(account.pk)
            raise InvalidRequest(f"Cannot remove {-amount} credits: only {available} are available.",
                                 details={"amount": [f"At most {available} credits can be removed."]})
        entry = LedgerEntry.objects.create(
            account_id=account.pk, kind=kind, amount=amount, available_delta=amount, held_delta=0,
            available_after=after[0], held_after=after[1], actor=actor, reason=reason[:500],
            reference=reference[:200])
    account.available, account.held = after
    return entry


# --- Holds -----------------------------------------------------------------------------------
#
# Placing and settling a hold are each ONE rule with two implementations, kept side by side: on
# PostgreSQL one statement (data-modifying CTEs, see the module docstring for why), elsewhere the
# same steps as separate statements in one transaction. Both take the same steps in the same
# order, write the same rows, and share the checks before and the Python after; the whole test
# suite runs on both databases.

_PLACE_SQL = f"""
WITH acc AS (
    UPDATE {Account._meta.db_table} SET available = available - %(amount)s, held = held + %(amount)s
    WHERE id = %(account_id)s AND available >= %(amount)s
    RETURNING id, available, held
), h AS (
    INSERT INTO {Hold._meta.db_table} (account_id, amount, captured_amount, state, idempotency_key, fingerprint,
                                       reference, rate, created_at, expires_at, settled_at)
    SELECT acc.id, %(amount)s, 0, %(state)s, %(key)s, %(fingerprint)s, %(reference)s, %(rate)s, %(now)s,
           %(expires_at)s, NULL
    FROM acc
    RETURNING id
), e AS (
    INSERT INTO {LedgerEntry._meta.db_table} (account_id, kind, amount, available_delta, held_delta,
                                              available_after, held_after, hold_id, actor_id, reason, reference,
                                              rate, created_at)
    SELECT acc.id, %(kind)s, 0, -%(amount)s, %(amount)s, acc.available, acc.held, h.id, NULL, '', %(reference)s,
           %(rate)s, %(now)s
    FROM acc, h
)
SELECT h.id, acc.available, acc.held FROM acc, h
"""

# The capture entry (ord 1) is inserted before the release entry (ord 2), so it gets the lower id,
# as in the step-by-step version. The capture records the rate of what was delivered when given.
_SETTLE_SQL = f"""
WITH h AS (
    UPDATE {Hold._meta.db_table} SET state = %(state)s, captured_amount = %(captured)s, settled_at = %(now)s
    WHERE id = %(hold_id)s AND state = %(active)s AND amount >= %(captured)s
    RETURNING id, account_id, amount, amount - %(captured)s AS returned, reference, rate
), acc AS (
    UPDATE {Account._meta.db_table} AS a SET available = a.available + h.returned, held = a.held - h.amount
    FROM h WHERE a.id = h.account_id
    RETURNING a.id, a.available, a.held
), e AS (
    INSERT INTO {LedgerEntry._meta.db_table} (account_id, kind, amount, available_delta, held_delta,
                                              available_after, held_after, hold_id, actor_id, reason, reference,
                                              rate, created_at)
    SELECT acc.id, x.kind, x.amount, x.available_delta, x.held_delta, x.available_after, x.held_after, h.id,
           NULL, %(reason)s, h.reference, x.rate, %(now)s
    FROM h, acc, LATERAL (VALUES
        (1, %(capture_kind)s, -%(captured)s, 0, -%(captured)s, acc.available - h.returned, acc.held + h.returned,
         COALESCE(%(rate)s, h.rate)),
        (2, %(release_kind)s, 0, h.returned, -h.returned, acc.available, acc.held, h.rate)
    ) AS x (ord, kind, amount, available_delta, held_delta, available_after, held_after, rate)
    WHERE (x.ord = 1 AND %(captured)s > 0) OR (x.ord = 2 AND h.returned > 0)
    ORDER BY x.ord
)
SELECT h.id FROM h
"""


def _one_statement() -> bool:
    return connection.vendor == "postgresql"


def _write_scope(*, one_statement: bool, durable: bool):
    """The transaction a hold write runs in.

    One statement in autocommit mode is its own transaction: BEGIN and COMMIT around it would be
    two more round trips for nothing. Inside a caller's atomic block it still gets `atomic()`: a
    savepoint, so a failed statement leaves the caller's transaction usable, and, when durable,
    Django's RuntimeError if that block is a longer transaction rather than a test's.
    """
    if one_statement and connection.get_autocommit():
        return contextlib.nullcontext()
    return transaction.atomic(durable=durable)


def hold_place(*, account: Account, amount: int, idempotency_key: str, fingerprint: str,
               reference: str = "", rate: dict | None = None) -> tuple[Hold, bool]:
    """Reserve `amount` credits; returns (hold, created).

    The same key with the same fingerprint returns the first hold and charges nothing again;
    the same key with another fingerprint is a conflict. Short of credits: InsufficientCredits,
    nothing written. Not durable on purpose: the generation app creates its job row and the hold
    in one short transaction (never across a provider call); inside it this runs in a savepoint,
    so a lost race on the key leaves the caller's transaction usable.
    """
    amount = _check_amount(amount)
    if not idempotency_key or len(idempotency_key) > 300:
        raise InvalidRequest("The idempotency key must be 1 to 300 characters.",
                             details={"idempotency_key": ["Must be 1 to 300 characters."]})
    now = timezone.now()
    hold = Hold(account_id=account.pk, amount=amount, idempotency_key=idempotency_key, fingerprint=fingerprint,
                reference=reference[:200], rate=rate, created_at=now,
                expires_at=now + dt.timedelta(seconds=settings.CREDITGATE_HOLD_TTL_SECONDS))
    one_statement = _one_statement()
    try:
        # Optimistic: no read before the write. A replayed key fails the hold row's unique
        # constraint (after the first request committed, if it was concurrent), and only then is
        # the first hold looked up.
        with _write_scope(one_statement=one_statement, durable=False):
            after = _hold_insert_statement(hold) if one_statement else _hold_insert_steps(hold)
    except IntegrityError:
        existing = _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint)
        if existing:
            return existing, False
        raise
    if after is None:
        # Nothing was written. The account is checked before the key is claimed, so a replay
        # arriving after the account ran short lands here, not on the unique constraint.
        available, replayed = (Account.objects.filter(pk=account.pk).annotate(
            replayed=Subquery(Hold.objects.filter(account_id=OuterRef("pk"), idempotency_key=idempotency_key)
                              .values("pk")[:1]))
            .values_list("available", "replayed").first() or (0, None))
        if replayed:
            return _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint), False
        raise InsufficientCredits(required=amount, available=available)
    account.available, account.held = after
    return hold, True


def _prepared_fetchone(sql: str, params: dict):
    """Run one of the hot statements above as a server-side prepared statement.

    Django binds parameters on the client, so PostgreSQL parses and plans every statement it is
    sent; for these three-table CTEs planning costs more than executing. A server-binding cursor
    with prepare=True has each connection plan each statement once (settings: prepare_threshold).
    Errors are translated as Django's own cursors do, so an IntegrityError is Django's. Django's
    query log and execute_wrappers (DEBUG's connection.queries, assertNumQueries) do not see them.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def _hold_insert_statement(hold: Hold) -> tuple[int, int] | None:
    """PostgreSQL: counters, hold row and ledger entry in one statement; the counters after, or
    None if the account is short (then nothing was written)."""
    row = _prepared_fetchone(_PLACE_SQL, {
        "amount": hold.amount, "account_id": hold.account_id, "state": HoldState.ACTIVE,
        "key": hold.idempotency_key, "fingerprint": hold.fingerprint, "reference": hold.reference,
        "rate": Hold._meta.get_field("rate").get_db_prep_save(hold.rate, connection),
        "now": hold.created_at, "expires_at": hold.expires_at, "kind": EntryKind.HOLD})
    if row is None:
        return None
    hold.pk = row[0]
    hold._state.adding, hold._state.db = False, connection.alias  # as if loaded: saving it again updates
    return row[1], row[2]


def _hold_insert_steps(hold: Hold) -> tuple[int, int] | None:
    """Other databases: the same steps as `_hold_insert_statement`, one statement each, in the
    caller's transaction (SQLite's IMMEDIATE mode serializes writers)."""
    after = _counters_move(account_id=hold.account_id, available_delta=-hold.amount, held_delta=hold.amount)
    if after is None:
        return None
    hold.save(force_insert=True)
    LedgerEntry.objects.create(
        account_id=hold.account_id, kind=EntryKind.HOLD, amount=0, available_delta=-hold.amount,
        held_delta=hold.amount, available_after=after[0], held_after=after[1], hold=hold, reference=hold.reference,
        rate=hold.rate)
    return after


def _hold_replayed(*, account: Account, idempotency_key: str, fingerprint: str) -> Hold | None:
    hold = Hold.objects.filter(account_id=account.pk, idempotency_key=idempotency_key).first()
    if hold and hold.fingerprint != fingerprint:
        raise IdempotencyConflict()
    return hold


def _hold_settle(*, hold_id, state: str, captured: int = 0, rate: dict | None = None, reason: str = "",
                 now: dt.datetime | None = None) -> bool:
    """Move an active hold to `state`, capturing `captured` and releasing the rest; False if it
    had already left `active` (then nothing happens)."""
    now = now or timezone.now()
    one_statement = _one_statement()
    settle = _hold_settle_statement if one_statement else _hold_settle_steps
    with _write_scope(one_statement=one_statement, durable=True):
        settled = settle(hold_id=hold_id, state=state, captured=captured, rate=rate, reason=reason[:500], now=now,
                         release_kind=EntryKind.EXPIRE if state == HoldState.EXPIRED else EntryKind.RELEASE)
    if settled:
        return True
    hold = Hold.objects.filter(pk=hold_id).only("amount", "state").first()
    if hold is None:
        raise InvalidRequest("No such hold.", details={"hold_id": ["Unknown hold."]})
    if hold.state == HoldState.ACTIVE:  # active, so the amount was the mismatch
        raise InvalidRequest(f"Cannot capture {captured} credits of a hold of {hold.amount}.",
                             details={"amount": [f"Must be from 0 to {hold.amount}."]})
    return False


def _hold_settle_statement(*, hold_id, state: str, captured: int, rate: dict | None, reason: str,
                           now: dt.datetime, release_kind: str) -> bool:
    """PostgreSQL: the exactly-once gate, the counters and the entries in one statement."""
    return _prepared_fetchone(_SETTLE_SQL, {
        "state": state, "captured": captured, "now": now, "hold_id": hold_id, "active": HoldState.ACTIVE,
        "reason": reason, "capture_kind": EntryKind.CAPTURE, "release_kind": release_kind,
        "rate": LedgerEntry._meta.get_field("rate").get_db_prep_save(rate, connection)}) is not None


def _hold_settle_steps(*, hold_id, state: str, captured: int, rate: dict | None, reason: str,
                       now: dt.datetime, release_kind: str) -> bool:
    """Other databases: the same steps as `_hold_settle_statement`, one statement each."""
    table = connection.ops.quote_name(Hold._meta.db_table)
    # The conditional UPDATE is the exactly-once gate: a racer that comes second matches no row.
    # RETURNING saves reading the hold again while the transaction is open.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, captured_amount = %s, settled_at = %s "
            f"WHERE id = %s AND state = %s AND amount >= %s RETURNING account_id, amount, reference, rate",
            [state, captured, now, hold_id, HoldState.ACTIVE, captured])
        row = cursor.fetchone()
    if row is None:
        return False
    account_id, amount, reference, hold_rate = row
    if isinstance(hold_rate, str):  # raw cursors hand JSON back as text
        hold_rate = json.loads(hold_rate)
    returned = amount - captured
    after = _counters_move(account_id=account_id, available_delta=returned, held_delta=-amount)
    if after is None:  # impossible: available only grows here; the CHECK would have fired first
        raise RuntimeError(f"hold {hold_id}: the account refused a release")
    common = dict(account_id=account_id, hold_id=hold_id, reference=reference, reason=reason)
    entries = []
    if captured:
        entries.append(LedgerEntry(
            kind=EntryKind.CAPTURE, amount=-captured, available_delta=0, held_delta=-captured,
            available_after=after[0] - returned, held_after=after[1] + returned,
            rate=rate if rate is not None else hold_rate, **common))
    if returned:
        entries.append(LedgerEntry(
            kind=release_kind, amount=0, available_delta=returned, held_delta=-returned, available_after=after[0],
            held_after=after[1], rate=hold_rate, **common))
    LedgerEntry.objects.bulk_create(entries)
    return True


def hold_capture(*, hold_id, amount: int, rate: dict | None = None) -> bool:
    """Charge `amount` (0..hold.amount) of an active hold and release the rest.

    True if this call settled the hold; False if it was already captured, released or expired.
    `rate`, when given, is the rate of what was delivered; the capture entry records it.
    """
    amount = _check_amount(amount, allow_zero=True)
    if amount == 0:
        return _hold_settle(hold_id=hold_id, state=HoldState.RELEASED, reason="nothing was charged")
    return _hold_settle(hold_id=hold_id, state=HoldState.CAPTURED, captured=amount, rate=rate)


def hold_release(*, hold_id, reason: str = "") -> bool:
    """Give back all of an active hold. Same exactly-once rule as `hold_capture`."""
    return _hold_settle(hold_id=hold_id, state=HoldState.RELEASED, reason=reason)


def holds_release_stale(*, now: dt.datetime | None = None) -> int:
    """The reaper: expire every active hold past its `expires_at`; returns how many this call expired."""
    now = now or timezone.now()
    stale = list(Hold.objects.filter(state=HoldState.ACTIVE, expires_at__lt=now)
                 .order_by("expires_at").values_list("pk", flat=True)[:10000])
    return sum(_hold_settle(hold_id=pk, state=HoldState.EXPIRED, reason="the hold expired", now=now)
               for pk in stale)
