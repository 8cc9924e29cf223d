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
`hold_place` and `hold_settle` are the exceptions: a job places its hold in the transaction that
creates the job, and settles it in the transaction that records what was delivered and sets its
final state (generation.services), so the job and its money never disagree.

A refund or a dispute takes credits back (`credits_take_back`): what is available, the rest
recorded as the account's shortfall, never a negative counter. While a shortfall is owed the
hold's conditional UPDATE also requires `shortfall = 0`, so no new work starts on credits that
were refunded; the next grant pays the shortfall first. Those two read the account under its row
lock before their UPDATE: how a take-back splits into taken and owed (or a grant into paid and
kept) depends on the counters before, which RETURNING cannot give. Both are rare.

A capture that leaves `available` below the account's armed low-balance threshold disarms the
alert in the same transaction (one email per crossing, whatever races) and, once that commits,
sends `events.low_balance_crossed`; a grant that lifts `available` to the threshold re-arms it.

One implementation for both databases: placing a hold is the conditional account UPDATE, the
hold INSERT and the ledger INSERT; settling is the conditional hold UPDATE, the account UPDATE
and the ledger INSERT; portable SQL that PostgreSQL and SQLite both run (an earlier version
had one data-modifying CTE per operation on PostgreSQL beside these steps for SQLite: two
implementations of each rule. bench/bench_ledger.py measures what the single version costs).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from functools import partial

import psycopg

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, OuterRef, Subquery, Value, When
from django.utils import timezone

from creditgate.core import metrics
from creditgate.core.errors import IdempotencyConflict, InsufficientCredits, InvalidRequest, ShortfallOwed
from creditgate.credits import events
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


_ACCOUNT = Account._meta.db_table
_HOLD = Hold._meta.db_table
_ENTRY = LedgerEntry._meta.db_table
_ENTRY_COLUMNS = ("account_id, kind, amount, available_delta, held_delta, available_after, held_after, hold_id, "
                  "actor_id, reason, reference, rate, created_at")

# Each counter move is one of these conditional UPDATEs (the module docstring's statement, with
# what each operation also needs). A hold is placed only while no shortfall is owed.
_HOLD_COUNTERS_MOVE_SQL = (f"UPDATE {_ACCOUNT} SET available = available + %s, held = held + %s "
                           f"WHERE id = %s AND available + %s >= 0 AND shortfall = 0 RETURNING available, held")
# Settling also says whether the account is now below its armed low-balance threshold.
_SETTLE_COUNTERS_MOVE_SQL = (f"UPDATE {_ACCOUNT} SET available = available + %s, held = held + %s "
                             f"WHERE id = %s AND available + %s >= 0 "
                             f"RETURNING available, held, low_balance_armed AND available < low_balance_threshold")
_LOW_BALANCE_DISARM_SQL = (f"UPDATE {_ACCOUNT} SET low_balance_armed = %s WHERE id = %s AND low_balance_armed "
                           f"RETURNING available, low_balance_threshold, low_balance_email")
# A grant to an account that owes nothing; it re-arms the low-balance alert when it lifts
# `available` to the threshold.
_GRANT_COUNTERS_MOVE_SQL = (f"UPDATE {_ACCOUNT} SET available = available + %s, low_balance_armed = CASE "
                            f"WHEN %s AND available + %s >= low_balance_threshold THEN %s ELSE low_balance_armed END "
                            f"WHERE id = %s AND available + %s >= 0 AND shortfall = 0 RETURNING available, held")
# Under the account's row lock (the split was computed from the counters before).
_GRANT_PAYING_SHORTFALL_SQL = (f"UPDATE {_ACCOUNT} SET available = available + %s, shortfall = shortfall - %s, "
                               f"low_balance_armed = low_balance_armed OR %s WHERE id = %s AND shortfall >= %s "
                               f"RETURNING available, held")
_TAKE_BACK_SQL = (f"UPDATE {_ACCOUNT} SET available = available - %s, shortfall = shortfall + %s "
                  f"WHERE id = %s AND available >= %s RETURNING available, held")
_HOLD_INSERT_SQL = (f"INSERT INTO {_HOLD} (account_id, amount, captured_amount, state, idempotency_key, fingerprint, "
                    f"reference, rate, created_at, expires_at, settled_at) "
                    f"VALUES (%s, %s, 0, %s, %s, %s, %s, %s, %s, %s, NULL) RETURNING id")
_HOLD_SETTLE_SQL = (f"UPDATE {_HOLD} SET state = %s, captured_amount = %s, settled_at = %s "
                    f"WHERE id = %s AND state = %s AND amount >= %s RETURNING account_id, amount, reference, rate")
_ENTRY_INSERT_SQL = f"INSERT INTO {_ENTRY} ({_ENTRY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s)"
_ENTRY_INSERT_2_SQL = _ENTRY_INSERT_SQL + ", (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s)"


def _execute(sql: str, params: list) -> tuple | None:
    """Run one of the ledger's statements above; its first row, if it returns one.

    The same SQL runs on both databases. On PostgreSQL it is sent as a server-side prepared
    statement: each connection plans it once instead of on every call (Django binds parameters
    on the client, so PostgreSQL would otherwise parse and plan every money move; for these
    small statements planning costs about as much as executing). That is a choice of transport,
    not a second implementation. Errors are translated as Django's cursors do, and the statement
    is added to Django's query log when that is on (DEBUG, CaptureQueriesContext).
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description else None
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone() if cursor.description else None
    if connection.queries_logged:
        connection.queries_log.append({"sql": f"{sql} -- prepared, {params!r}",
                                       "time": f"{time.monotonic() - started:.3f}"})
    return row


def _db(field, value):
    """`value` as the database takes it for a column of `field` (JSON, datetimes)."""
    return field.get_db_prep_save(value, connection)


_RATE = LedgerEntry._meta.get_field("rate")
_WHEN = LedgerEntry._meta.get_field("created_at")


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
    below what is available: held credits belong to running requests), in a transaction of its
    own. A positive amount pays the account's shortfall first (see `credits_grant_within`)."""
    with transaction.atomic(durable=True):
        return credits_grant_within(account=account, amount=amount, actor=actor, reason=reason, kind=kind,
                                    reference=reference)


def credits_grant_within(*, account: Account, amount: int, actor=None, reason: str = "", kind: str = "grant",
                         reference: str = "") -> LedgerEntry:
    """`credits_grant` in the caller's transaction, which must exist: a purchase records its
    payment and grants its credits in ONE transaction (billing.services), so a payment is never
    without its credits, and its unique row makes a second grant for it impossible.

    Returns the grant's entry. If the account owes a shortfall, a positive amount (with what is
    available) pays it first, in a second entry (kind `shortfall`) right after the grant's.
    A grant that leaves `available` at or above the account's low-balance threshold re-arms it.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("credits_grant_within must run inside the caller's transaction")
    if kind not in _GRANT_KINDS:
        raise InvalidRequest(f"Unknown kind {kind!r}.", details={"kind": [f"Must be one of {sorted(_GRANT_KINDS)}."]})
    amount = _check_amount(amount, allow_negative=(kind == EntryKind.ADJUSTMENT))
    reason, reference = reason[:500], reference[:200]
    paid = 0
    after = _execute(_GRANT_COUNTERS_MOVE_SQL, [amount, amount > 0, amount, True, account.pk, amount])
    if after is None:
        # The account owes a shortfall, or an adjustment removes more than is available.
        available, held, shortfall, threshold = (Account.objects.select_for_update().filter(pk=account.pk)
                                                 .values_list("available", "held", "shortfall",
                                                              "low_balance_threshold").get())
        if available + amount < 0:
            raise InvalidRequest(f"Cannot remove {-amount} credits: only {available} are available.",
                                 details={"amount": [f"At most {available} credits can be removed."]})
        paid = min(shortfall, available + amount) if amount > 0 else 0
        rearm = amount > 0 and threshold is not None and available + amount - paid >= threshold
        after = _execute(_GRANT_PAYING_SHORTFALL_SQL, [amount - paid, paid, rearm, account.pk, paid])
        if after is None:  # impossible under the row lock
            raise RuntimeError(f"account {account.pk}: the grant's counters changed under its lock")
    entry = LedgerEntry.objects.create(
        account_id=account.pk, kind=kind, amount=amount, available_delta=amount, held_delta=0,
        available_after=after[0] + paid, held_after=after[1], actor=actor, reason=reason, reference=reference)
    if paid:
        LedgerEntry.objects.create(
            account_id=account.pk, kind=EntryKind.SHORTFALL, amount=-paid, available_delta=-paid, held_delta=0,
            shortfall_delta=-paid, available_after=after[0], held_after=after[1], actor=actor,
            reason="paid what a refund or dispute took back after it was spent", reference=reference)
    account.available, account.held = after
    return entry


def credits_take_back(*, account: Account, amount: int, reason: str = "", reference: str = "",
                      actor=None) -> LedgerEntry:
    """Take back `amount` credits that were granted for a payment now refunded or disputed, in
    the caller's transaction (billing records the reversal on the payment in the same one).

    Takes what is available, at most `amount`; held credits belong to running requests and stay.
    What cannot be taken is added to the account's shortfall: no counter ever goes negative, no
    new hold is placed until it is paid (ShortfallOwed), and the next grant pays it first.
    One entry (kind `clawback`): `amount` is what was taken (<= 0), `shortfall_delta` what is owed.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("credits_take_back must run inside the caller's transaction")
    amount = _check_amount(amount)
    # The split depends on what is available now: read it under the row lock, then one UPDATE.
    available = Account.objects.select_for_update().filter(pk=account.pk).values_list("available", flat=True).get()
    taken = min(available, amount)
    owed = amount - taken
    after = _execute(_TAKE_BACK_SQL, [taken, owed, account.pk, taken])
    if after is None:  # impossible under the row lock
        raise RuntimeError(f"account {account.pk}: the take-back's counters changed under its lock")
    entry = LedgerEntry.objects.create(
        account_id=account.pk, kind=EntryKind.CLAWBACK, amount=-taken, available_delta=-taken, held_delta=0,
        shortfall_delta=owed, available_after=after[0], held_after=after[1], actor=actor, reason=reason[:500],
        reference=reference[:200])
    account.available, account.held = after
    return entry


def account_low_balance_set(*, account: Account, threshold: int | None, email: str = "") -> None:
    """Set the account's low-balance email: below `threshold` available credits after a capture,
    one email to `email`; None switches it off. Armed only if the account is at or above the
    threshold now: set while already below, the first email waits for a top-up and a new crossing."""
    if threshold is None:
        Account.objects.filter(pk=account.pk).update(low_balance_threshold=None, low_balance_email="",
                                                     low_balance_armed=False)
        return
    threshold = _check_amount(threshold)
    if not email:
        raise InvalidRequest("An email address is needed for the low-balance email.",
                             details={"email": ["This field is required."]})
    Account.objects.filter(pk=account.pk).update(
        low_balance_threshold=threshold, low_balance_email=email[:254],
        low_balance_armed=Case(When(available__gte=threshold, then=Value(True)), default=Value(False)))


# --- Holds -----------------------------------------------------------------------------------
#
# Placing and settling a hold are each one short sequence of portable statements (a conditional
# UPDATE ... RETURNING and plain INSERTs) that PostgreSQL and SQLite both run: one implementation,
# the same rows, the same checks. See the module docstring for the locking argument.


def hold_place(*, account: Account, amount: int, idempotency_key: str, fingerprint: str,
               reference: str = "", rate: dict | None = None, expires: bool = True) -> tuple[Hold, bool]:
    """Reserve `amount` credits; returns (hold, created).

    The same key with the same fingerprint returns the first hold and charges nothing again;
    the same key with another fingerprint is a conflict. Short of credits: InsufficientCredits;
    a refund's shortfall owed: ShortfallOwed; either way nothing written (inside a caller's transaction, the attempt runs in a savepoint, so a replayed
    key leaves the caller's transaction usable). `expires=False`: the hold belongs to an owner that always settles it (a
    generation job, whose recovery acts on the job's lease), so no age ever expires it; otherwise
    the sweep expires it after CREDITGATE_HOLD_TTL_SECONDS.
    """
    amount = _check_amount(amount)
    if not idempotency_key or len(idempotency_key) > 300:
        raise InvalidRequest("The idempotency key must be 1 to 300 characters.",
                             details={"idempotency_key": ["Must be 1 to 300 characters."]})
    now = timezone.now()
    hold = Hold(account_id=account.pk, amount=amount, idempotency_key=idempotency_key, fingerprint=fingerprint,
                reference=reference[:200], rate=rate, created_at=now,
                expires_at=now + dt.timedelta(seconds=settings.CREDITGATE_HOLD_TTL_SECONDS) if expires else None)
    try:
        # Optimistic: no read before the write. The account row is locked by the conditional
        # UPDATE first; a replayed key then fails the hold row's unique constraint (after the
        # first request committed, if it was concurrent), and only then is the first hold read.
        with transaction.atomic():
            after = _execute(_HOLD_COUNTERS_MOVE_SQL, [-amount, amount, hold.account_id, -amount])
            if after is not None:
                rate_db, now_db = _db(_RATE, rate), _db(_WHEN, now)
                hold.pk = _execute(_HOLD_INSERT_SQL, [
                    hold.account_id, amount, HoldState.ACTIVE, idempotency_key, fingerprint, hold.reference, rate_db,
                    now_db, _db(_WHEN, hold.expires_at)])[0]
                _execute(_ENTRY_INSERT_SQL, [hold.account_id, EntryKind.HOLD, 0, -amount, amount, after[0], after[1],
                                             hold.pk, "", hold.reference, rate_db, now_db])
                hold._state.adding, hold._state.db = False, connection.alias  # as if loaded from the database
    except IntegrityError:
        existing = _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint)
        if existing:
            return existing, False
        raise
    if after is None:
        # Nothing was written. The account is checked before the key is claimed, so a replay
        # arriving after the account ran short lands here, not on the unique constraint.
        available, shortfall, replayed = (Account.objects.filter(pk=account.pk).annotate(
            replayed=Subquery(Hold.objects.filter(account_id=OuterRef("pk"), idempotency_key=idempotency_key)
                              .values("pk")[:1]))
            .values_list("available", "shortfall", "replayed").first() or (0, 0, None))
        if replayed:
            return _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint), False
        metrics.holds.labels("refused").inc()
        if shortfall:
            raise ShortfallOwed(shortfall=shortfall, available=available)
        raise InsufficientCredits(required=amount, available=available)
    account.available, account.held = after
    transaction.on_commit(metrics.holds.labels("placed").inc)
    return hold, True


def hold_replayed_get(*, account: Account, idempotency_key: str, fingerprint: str) -> Hold | None:
    """The hold placed earlier under this key, if any; IdempotencyConflict if it was for another
    request."""
    return _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint)


def _hold_replayed(*, account: Account, idempotency_key: str, fingerprint: str) -> Hold | None:
    hold = Hold.objects.filter(account_id=account.pk, idempotency_key=idempotency_key).first()
    if hold and hold.fingerprint != fingerprint:
        raise IdempotencyConflict()
    return hold


def hold_settle(*, hold_id, captured: int = 0, rate: dict | None = None, reason: str = "",
                expired: bool = False, now: dt.datetime | None = None) -> bool:
    """Move an active hold out of `active`: charge `captured` credits (0..amount) and give back
    the rest. False if it had already left `active` (then nothing happens).

    Runs in the caller's transaction, which must exist: a job's settlement records what was
    delivered, settles the hold and sets the job's final state in ONE transaction. Callers with
    nothing else to write use `hold_capture` / `hold_release`, which open their own.
    `rate`, when given, is the rate of what was delivered; the capture entry records it.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("hold_settle must run inside the caller's transaction")
    captured = _check_amount(captured, allow_zero=True)
    now = now or timezone.now()
    state = HoldState.CAPTURED if captured else (HoldState.EXPIRED if expired else HoldState.RELEASED)
    # The conditional UPDATE is the exactly-once gate: a racer that comes second matches no row.
    # It locks the hold row first, then the account row below (the lock order in the docstring).
    now_db = _db(_WHEN, now)
    row = _execute(_HOLD_SETTLE_SQL, [state, captured, now_db, hold_id, HoldState.ACTIVE, captured])
    if row is None:
        hold = Hold.objects.filter(pk=hold_id).only("amount", "state").first()
        if hold is None:
            raise InvalidRequest("No such hold.", details={"hold_id": ["Unknown hold."]})
        if hold.state == HoldState.ACTIVE:  # active, so the amount was the mismatch
            raise InvalidRequest(f"Cannot capture {captured} credits of a hold of {hold.amount}.",
                                 details={"amount": [f"Must be from 0 to {hold.amount}."]})
        return False
    account_id, amount, reference, hold_rate = row
    if isinstance(hold_rate, str):  # SQLite hands JSON back as text
        hold_rate = json.loads(hold_rate)
    returned = amount - captured
    after = _execute(_SETTLE_COUNTERS_MOVE_SQL, [returned, -amount, account_id, returned])
    if after is None:  # impossible: available only grows here; the CHECK would have fired first
        raise RuntimeError(f"hold {hold_id}: the account refused a release")
    if captured and after[2]:
        _low_balance_disarm(account_id)
    transaction.on_commit(metrics.holds.labels(HoldState.CAPTURED.value if captured else str(state)).inc)
    reason = reason[:500]
    # The capture entry comes first (the lower id), then the release of the rest.
    entries = []
    if captured:
        entries += [account_id, EntryKind.CAPTURE, -captured, 0, -captured, after[0] - returned, after[1] + returned,
                    hold_id, reason, reference, _db(_RATE, rate if rate is not None else hold_rate), now_db]
    if returned:
        entries += [account_id, EntryKind.EXPIRE if expired else EntryKind.RELEASE, 0, returned, -returned, after[0],
                    after[1], hold_id, reason, reference, _db(_RATE, hold_rate), now_db]
    _execute(_ENTRY_INSERT_2_SQL if captured and returned else _ENTRY_INSERT_SQL, entries)
    return True


def _low_balance_disarm(account_id: int) -> None:
    """A capture left the account below its armed threshold: disarm it in this transaction (a
    concurrent capture waits for the row and then finds it disarmed) and tell billing once the
    transaction commits. Rolled back, nothing is sent and the alert stays armed."""
    row = _execute(_LOW_BALANCE_DISARM_SQL, [False, account_id])
    if row:
        transaction.on_commit(partial(events.low_balance_crossed.send, sender=Account, account_id=account_id,
                                      available=row[0], threshold=row[1], email=row[2]), robust=True)


def hold_capture(*, hold_id, amount: int, rate: dict | None = None) -> bool:
    """Charge `amount` (0..hold.amount) of an active hold and release the rest, in a transaction
    of its own. True if this call settled the hold; False if it was already settled."""
    amount = _check_amount(amount, allow_zero=True)
    with transaction.atomic(durable=True):
        return hold_settle(hold_id=hold_id, captured=amount, rate=rate,
                           reason="" if amount else "nothing was charged")


def hold_release(*, hold_id, reason: str = "") -> bool:
    """Give back all of an active hold. Same exactly-once rule as `hold_capture`."""
    with transaction.atomic(durable=True):
        return hold_settle(hold_id=hold_id, reason=reason)


def holds_release_stale(*, now: dt.datetime | None = None) -> int:
    """Expire every active hold past its `expires_at`; returns how many this call expired.

    Holds placed with `expires=False` (a generation job's) have no expiry: their owner settles
    them, and its recovery acts on the job's lease, never on the hold's age.
    """
    now = now or timezone.now()
    stale = list(Hold.objects.filter(state=HoldState.ACTIVE, expires_at__lt=now)
                 .order_by("expires_at").values_list("pk", flat=True)[:10000])
    expired = 0
    for pk in stale:
        with transaction.atomic(durable=True):
            expired += hold_settle(hold_id=pk, expired=True, reason="the hold expired", now=now)
    return expired
