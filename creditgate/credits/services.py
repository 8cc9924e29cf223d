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
locks the hold row, then the account row, then the member's (and the API key's) monthly spending
row; placing locks the account row, claims the new hold's key, then locks the same spending rows
(the member's cap is one more conditional UPDATE, see "Members' and API keys' monthly spending"
below); no lock is taken in another order, so the racers cannot deadlock.

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
import logging
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, OuterRef, QuerySet, Subquery, Value, When
from django.utils import timezone
from rest_framework_api_key.crypto import KeyGenerator

from creditgate.core import metrics
from creditgate.core.errors import (
    ApiKeyCapExceeded,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    MemberCapExceeded,
    PermissionDenied,
    ShortfallOwed,
)
from creditgate.core.text import has_visible_character
from creditgate.credits import events, selectors
from creditgate.credits.models import (
    Account,
    AccountMember,
    ApiKey,
    ApiKeySpend,
    EntryKind,
    Hold,
    HoldState,
    LedgerEntry,
    MemberRole,
    MemberSpend,
)

logger = logging.getLogger(__name__)

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


# The ledger's statements, one constant each, with the tables' names written out (no SQL is built at
# run time); test_services checks the names against the models' db_table.

# Each counter move is one of these conditional UPDATEs (the module docstring's statement, with
# what each operation also needs). A hold is placed only while no shortfall is owed.
_HOLD_COUNTERS_MOVE_SQL = ("UPDATE credits_account SET available = available + %s, held = held + %s "
                           "WHERE id = %s AND available + %s >= 0 AND shortfall = 0 RETURNING available, held")
# Settling also says whether the account is now below its armed low-balance threshold.
_SETTLE_COUNTERS_MOVE_SQL = ("UPDATE credits_account SET available = available + %s, held = held + %s "
                             "WHERE id = %s AND available + %s >= 0 "
                             "RETURNING available, held, low_balance_armed AND available < low_balance_threshold")
_LOW_BALANCE_DISARM_SQL = ("UPDATE credits_account SET low_balance_armed = %s WHERE id = %s AND low_balance_armed "
                           "RETURNING available, low_balance_threshold, low_balance_email")
# A grant to an account that owes nothing; it re-arms the low-balance alert when it lifts
# `available` to the threshold.
_GRANT_COUNTERS_MOVE_SQL = ("UPDATE credits_account SET available = available + %s, low_balance_armed = CASE "
                            "WHEN %s AND available + %s >= low_balance_threshold THEN %s ELSE low_balance_armed END "
                            "WHERE id = %s AND available + %s >= 0 AND shortfall = 0 RETURNING available, held")
# Under the account's row lock (the split was computed from the counters before).
_GRANT_PAYING_SHORTFALL_SQL = ("UPDATE credits_account SET available = available + %s, shortfall = shortfall - %s, "
                               "low_balance_armed = low_balance_armed OR %s WHERE id = %s AND shortfall >= %s "
                               "RETURNING available, held")
_TAKE_BACK_SQL = ("UPDATE credits_account SET available = available - %s, shortfall = shortfall + %s "
                  "WHERE id = %s AND available >= %s RETURNING available, held")
_HOLD_INSERT_SQL = ("INSERT INTO credits_hold (account_id, amount, captured_amount, state, idempotency_key, "
                    "fingerprint, reference, rate, created_at, expires_at, settled_at, user_id, api_key_id, "
                    "spend_month) "
                    "VALUES (%s, %s, 0, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s) RETURNING id")
_HOLD_SETTLE_SQL = ("UPDATE credits_hold SET state = %s, captured_amount = %s, settled_at = %s "
                    "WHERE id = %s AND state = %s AND amount >= %s "
                    "RETURNING account_id, amount, reference, rate, user_id, api_key_id, spend_month")
_ENTRY_INSERT_SQL = ("INSERT INTO credits_ledgerentry (account_id, kind, amount, available_delta, held_delta, "
                     "available_after, held_after, hold_id, actor_id, reason, reference, rate, created_at) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s)")
_ENTRY_INSERT_2_SQL = ("INSERT INTO credits_ledgerentry (account_id, kind, amount, available_delta, held_delta, "
                       "available_after, held_after, hold_id, actor_id, reason, reference, rate, created_at) "
                       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s), "
                       "(%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s)")


def _execute(sql: str, params: list) -> tuple | None:
    """Run one of the ledger's statements above; its first row, if it returns one.

    The same SQL runs on both databases. On PostgreSQL, as every statement (settings: server-side
    binding), it is prepared once a connection has run it a few times: parsed once, not at every
    money move (each run is still planned for its values, settings say why).
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


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
            AccountMember.objects.create(account=account, user=owner, role=MemberRole.OWNER)
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


def account_member_add(*, account: Account, user, role: str = MemberRole.MEMBER,
                       monthly_cap: int | None = None) -> AccountMember:
    """Bring a user into `account` with `role` (the admin's "Add a member", tests, shells). The
    rules are credits.team's: the user's own account is kept, with its credits, and given back
    when they leave; a user in a team with others must leave it first."""
    from creditgate.credits import team  # team builds on this module

    return team.member_join(user=user, account=account, role=role, monthly_cap=monthly_cap)


# --- Members: roles and monthly caps (owners manage them) --------------------------------------

_UNCHANGED = object()


def member_for_user(*, user) -> AccountMember:
    """The user's membership (their personal account's, created if missing)."""
    account_for_user(user=user)
    if get_user_model().credit_membership.is_cached(user) and getattr(user, "credit_membership", None):
        return user.credit_membership
    return AccountMember.objects.select_related("account", "user").get(user=user)


def _owner_check(actor_member: AccountMember, account_id: int, what: str) -> None:
    if actor_member.account_id != account_id or not actor_member.is_owner:
        raise PermissionDenied(f"Only an owner of the account can {what}.")


def owner_check(*, user, what: str) -> AccountMember:
    """The user's membership if they own their account; PermissionDenied (403) saying they cannot
    do `what` otherwise."""
    member = member_for_user(user=user)
    _owner_check(member, member.account_id, what)
    return member


def _cap_clean(cap, field: str = "monthly_cap") -> int | None:
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_AMOUNT:
        raise InvalidRequest(f"A monthly cap must be a whole number of credits from 0 to {MAX_AMOUNT}, or empty.",
                             details={field: [f"Must be an integer from 0 to {MAX_AMOUNT}, or null."]})
    return cap


def member_update(*, actor, member: AccountMember, monthly_cap=_UNCHANGED, role=_UNCHANGED) -> AccountMember:
    """An owner sets a member's monthly cap (None: no cap) and/or role. The account always keeps
    an owner: the last one cannot be made a member. A lower cap never touches what is already
    held: it refuses the next hold that would pass it."""
    actor_member = member_for_user(user=actor)
    _owner_check(actor_member, member.account_id, "change members' caps and roles")
    fields = []
    if monthly_cap is not _UNCHANGED:
        member.monthly_cap = _cap_clean(monthly_cap)
        fields.append("monthly_cap")
    with transaction.atomic():
        if role is not _UNCHANGED:
            if role not in MemberRole.values:
                raise InvalidRequest("Unknown role.",
                                     details={"role": [f"Must be one of {', '.join(MemberRole.values)}."]})
            # The account's row lock orders concurrent role changes, so two owners cannot demote
            # each other at once and leave the account without one.
            Account.objects.select_for_update().filter(pk=member.account_id).first()
            if role == MemberRole.MEMBER and member.is_owner and not AccountMember.objects.filter(
                    account_id=member.account_id, role=MemberRole.OWNER).exclude(pk=member.pk).exists():
                raise InvalidRequest("The account must keep an owner: make someone else an owner first.",
                                     details={"role": ["The last owner cannot be made a member."]})
            member.role = role
            fields.append("role")
        if fields:
            member.save(update_fields=fields)
    return member


# --- API keys: several named keys per member, stored hashed -----------------------------------
#
# Key material comes from djangorestframework-api-key's KeyGenerator: a random 8-character prefix
# that finds the row and a 32-character secret (about 190 bits), hashed with its SHA-512 key hasher
# (fast and safe for random keys, unlike a password hasher) and compared in constant time. We use
# its generator and hasher, not its models: its primary key is "prefix.hash", which would become
# the foreign key of every hold, and its permission class serves keyless machine clients, where a
# key here acts as a member (an authentication class, credits.authentication). The key a client
# sends is "cg_" + prefix + "." + secret: the marker lets secret scanners recognise a leaked key.

API_KEY_MARKER = "cg_"
_key_generator = KeyGenerator(prefix_length=8, secret_key_length=32)


class ApiKeyRejected(Exception):
    """A presented API key that does not authenticate (malformed, unknown or revoked)."""


def api_key_create(*, actor, member: AccountMember, name: str, monthly_cap: int | None = None
                   ) -> tuple[ApiKey, str]:
    """A new key for `member`: (the row, the key itself). The key is returned only here, never
    stored or shown again. An owner makes keys for any member; a member for themself."""
    actor_member = member_for_user(user=actor)
    if actor_member.pk != member.pk:
        _owner_check(actor_member, member.account_id, "make API keys for other members")
    name = _key_name_clean(name)
    cap = _cap_clean(monthly_cap)
    for _ in range(3):
        key, prefix, hashed = _key_generator.generate()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(member=member, account_id=member.account_id, name=name,
                                                prefix=prefix, hashed_key=hashed, monthly_cap=cap,
                                                created_by=actor)
            return api_key, API_KEY_MARKER + key
        except IntegrityError:  # the prefix was taken (about one chance in 10^14 per key in use)
            continue
    raise RuntimeError("could not find a free API key prefix")


def _key_name_clean(name) -> str:
    """1 to 100 characters, one of them visible (core/text.py), without surrounding whitespace."""
    if not has_visible_character(name) or len(name.strip()) > 100:
        raise InvalidRequest("An API key needs a name of 1 to 100 characters, one of them visible.",
                             details={"name": ["Must be 1 to 100 characters, one of them visible."]})
    return name.strip()


def _key_manage_check(actor, api_key: ApiKey, what: str) -> None:
    actor_member = member_for_user(user=actor)
    if actor_member.pk != api_key.member_id or actor_member.account_id != api_key.account_id:
        _owner_check(actor_member, api_key.account_id, what)


def _cap_or_none(cap):
    return float("inf") if cap is None else cap


def api_key_update(*, actor, api_key: ApiKey, name=_UNCHANGED, monthly_cap=_UNCHANGED) -> ApiKey:
    """Rename a key or change its monthly cap.

    Who may change what (the README's "Who may change what"): an owner of the key's account
    changes anything on any of its keys. A member, on their own keys, renames them and may
    *lower* a cap (or set one where there is none), never raise or remove one, whoever set it:
    a cap an owner put on a member's key binds that member. A refused change changes nothing."""
    _key_manage_check(actor, api_key, "change other members' API keys")
    actor_member = member_for_user(user=actor)
    is_owner = actor_member.is_owner and actor_member.account_id == api_key.account_id
    fields = []
    new_name = api_key.name
    if name is not _UNCHANGED:
        new_name = _key_name_clean(name)
        fields.append("name")
    new_cap = api_key.monthly_cap
    if monthly_cap is not _UNCHANGED:
        new_cap = _cap_clean(monthly_cap)
        if not is_owner and _cap_or_none(new_cap) > _cap_or_none(api_key.monthly_cap):
            current = "no cap" if api_key.monthly_cap is None else f"a cap of {api_key.monthly_cap} credits"
            raise PermissionDenied(
                f"Only an owner can raise or remove an API key's monthly cap; this key has {current}, "
                f"and you may only lower it.",
                code="cap_change_not_allowed",
                details={"monthly_cap": ["A member may lower their key's cap, never raise or remove it."]})
        fields.append("monthly_cap")
    if fields:
        api_key.name, api_key.monthly_cap = new_name, new_cap
        api_key.save(update_fields=fields)
    return api_key


def api_key_revoke(*, actor, api_key: ApiKey) -> ApiKey:
    """From now on the key answers 401. Its history (holds, spending) stays; revoking is final."""
    _key_manage_check(actor, api_key, "revoke other members' API keys")
    if api_key.revoked_at is None:
        now = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
        api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


# Recording the time of every request would be a write per request; a minute is precise enough
# for "last used".
API_KEY_LAST_USED_PRECISION = dt.timedelta(seconds=60)


def api_key_authenticate(*, presented: str) -> ApiKey:
    """The live key a client presented, loaded with its member, user and account; records when it
    was last used. ApiKeyRejected if it is malformed, unknown or revoked."""
    if not presented.startswith(API_KEY_MARKER) or "." not in presented:
        raise ApiKeyRejected("Invalid API key.")
    key = presented[len(API_KEY_MARKER):]
    prefix = key.partition(".")[0]
    api_key = (ApiKey.objects.select_related("member__user", "member__account")
               .filter(prefix=prefix).first())
    if api_key is None or not _key_generator.verify(key, api_key.hashed_key):
        raise ApiKeyRejected("Invalid API key.")
    if api_key.revoked_at is not None:
        raise ApiKeyRejected("This API key was revoked.")
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= API_KEY_LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    api_key.member.user.credit_membership = api_key.member  # account_for_user: no query
    return api_key


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


def credits_grant_first(*, user, amount: int, reason: str = "") -> tuple[int, int]:
    """Grant the user's account `amount` credits unless it ever had a grant; returns (credits
    granted now, credits available). For the demo: running it again neither piles up credits nor
    tops up what the user spent trying it. Under the account's row lock, so two at once grant once."""
    account = account_for_user(user=user)
    granted = 0
    with transaction.atomic(durable=True):
        Account.objects.select_for_update().filter(pk=account.pk).values_list("pk", flat=True).get()
        if not LedgerEntry.objects.filter(account_id=account.pk, kind=EntryKind.GRANT).exists():
            credits_grant_within(account=account, amount=amount, reason=reason)
            granted = amount
    return granted, selectors.balance_get(account=account)["available"]


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
        available, _held, shortfall, threshold = (Account.objects.select_for_update().filter(pk=account.pk)
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
               reference: str = "", rate: dict | None = None, expires: bool = True, user=None,
               api_key: ApiKey | None = None, savepoint: bool = True) -> tuple[Hold, bool]:
    """Reserve `amount` credits; returns (hold, created).

    `user`: the member who spends it (and `api_key`, the key the request came with): the hold
    counts in their spending this month, and is refused with MemberCapExceeded / ApiKeyCapExceeded
    (402, nothing written) when it would pass the member's or the key's monthly cap.

    The same key with the same fingerprint returns the first hold and charges nothing again;
    the same key with another fingerprint is a conflict. Short of credits: InsufficientCredits;
    a refund's shortfall owed: ShortfallOwed; either way nothing written (inside a caller's
    transaction, the attempt runs in a savepoint, so a replayed key leaves the caller's transaction
    usable). `expires=False`: the hold belongs to an owner that always settles it (a generation
    job, whose recovery acts on the job's lease), so no age ever expires it; otherwise
    the sweep expires it after CREDITGATE_HOLD_TTL_SECONDS.

    `savepoint=False`, for a caller whose transaction is one unit with the hold (a job's creation):
    no savepoint around the attempt (two statements fewer), and a key replayed concurrently raises
    the hold's IntegrityError instead of returning the first hold: the caller's transaction is then
    spoiled, and the caller recognises the replay once it has rolled back.
    """
    amount = _check_amount(amount)
    if not idempotency_key or len(idempotency_key) > 300:
        raise InvalidRequest("The idempotency key must be 1 to 300 characters.",
                             details={"idempotency_key": ["Must be 1 to 300 characters."]})
    now = timezone.now()
    hold = Hold(account_id=account.pk, amount=amount, idempotency_key=idempotency_key, fingerprint=fingerprint,
                reference=reference[:200], rate=rate, created_at=now,
                expires_at=now + dt.timedelta(seconds=settings.CREDITGATE_HOLD_TTL_SECONDS) if expires else None,
                user_id=user.pk if user is not None else None, api_key_id=api_key.pk if api_key is not None else None,
                spend_month=selectors.spending_month(at=now) if user is not None else None)
    try:
        # Optimistic: no read before the write. The account row is locked by the conditional
        # UPDATE first; a replayed key then fails the hold row's unique constraint (after the
        # first request committed, if it was concurrent), and only then is the first hold read.
        with transaction.atomic(savepoint=savepoint):
            after = _execute(_HOLD_COUNTERS_MOVE_SQL, [-amount, amount, hold.account_id, -amount])
            if after is not None:
                rate_db, now_db = _db(_RATE, rate), _db(_WHEN, now)
                inserted = _execute(_HOLD_INSERT_SQL, [
                    hold.account_id, amount, HoldState.ACTIVE, idempotency_key, fingerprint, hold.reference, rate_db,
                    now_db, _db(_WHEN, hold.expires_at), hold.user_id, hold.api_key_id, hold.spend_month])
                assert inserted is not None  # INSERT ... RETURNING always returns its row
                hold.pk = inserted[0]
                try:
                    _spending_hold(hold)  # the member's (and the key's) monthly cap
                except _OverCap as over:  # the 402 is read now; raising it rolls all of the hold back
                    raise _cap_exceeded(over, hold) from None
                _execute(_ENTRY_INSERT_SQL, [hold.account_id, EntryKind.HOLD, 0, -amount, amount, after[0], after[1],
                                             hold.pk, "", hold.reference, rate_db, now_db])
                # As if loaded from the database (Model.from_db): a later save() updates this row.
                hold = Hold.from_db(connection.alias, [f.attname for f in Hold._meta.concrete_fields],
                                    [getattr(hold, f.attname) for f in Hold._meta.concrete_fields])
    except IntegrityError:
        if not savepoint:
            raise
        existing = _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint)
        if existing:
            return existing, False
        raise
    except (MemberCapExceeded, ApiKeyCapExceeded):
        metrics.holds.labels("refused").inc()
        raise
    if after is None:
        # Nothing was written. The account is checked before the key is claimed, so a replay
        # arriving after the account ran short lands here, not on the unique constraint.
        available, shortfall, replayed = (Account.objects.filter(pk=account.pk).annotate(
            replayed=Subquery(Hold.objects.filter(account_id=OuterRef("pk"), idempotency_key=idempotency_key)
                              .values("pk")[:1]))
            .values_list("available", "shortfall", "replayed").first() or (0, 0, None))
        if replayed:
            existing = _hold_replayed(account=account, idempotency_key=idempotency_key, fingerprint=fingerprint)
            assert existing is not None  # the query above just found it, and holds are never deleted
            return existing, False
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
    account_id, amount, reference, hold_rate, *spender = row
    if isinstance(hold_rate, str):  # SQLite hands JSON back as text
        hold_rate = json.loads(hold_rate)
    returned = amount - captured
    after = _execute(_SETTLE_COUNTERS_MOVE_SQL, [returned, -amount, account_id, returned])
    if after is None:  # impossible: available only grows here; the CHECK would have fired first
        raise RuntimeError(f"hold {hold_id}: the account refused a release")
    if captured and after[2]:
        _low_balance_disarm(account_id)
    _spending_settle(hold_id, account_id, amount, captured, *spender)
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


# --- Members' and API keys' monthly spending ------------------------------------------------
#
# A hold placed for a member adds its amount to the member's row for the month (and the API
# key's) with ONE conditional UPDATE each, right after the account's, in the same transaction:
# the row lock serialises concurrent holds of one member exactly as the account row does for the
# balance, and the WHERE clause is re-evaluated against the committed row (see the module
# docstring), so no two holds can both pass a cap on the same credits. Lock order: the account
# row, then the member's row, then the key's; settling takes the hold first, then the same order.
# A month's row is created on its first hold (INSERT ... ON CONFLICT DO NOTHING, then the UPDATE
# again). A cap is read from its own row in the statement: a change of cap applies at once.

# (the UPDATE that holds within the cap, the INSERT of the month's row, the UPDATE that settles)
_MEMBER_SPEND_SQL = (
    ("UPDATE credits_memberspend SET held = held + %s WHERE account_id = %s AND user_id = %s AND month = %s AND "
    "COALESCE(held + spent + %s <= (SELECT monthly_cap FROM credits_accountmember "
    "WHERE account_id = %s AND user_id = %s), TRUE) RETURNING held"),
    ("INSERT INTO credits_memberspend (account_id, user_id, month, held, spent) VALUES (%s, %s, %s, 0, 0) "
    "ON CONFLICT (account_id, user_id, month) DO NOTHING"),
    ("UPDATE credits_memberspend SET held = held - %s, spent = spent + %s "
    "WHERE account_id = %s AND user_id = %s AND month = %s RETURNING held"),
)
_KEY_SPEND_SQL = (
    ("UPDATE credits_apikeyspend SET held = held + %s WHERE api_key_id = %s AND month = %s AND "
    "COALESCE(held + spent + %s <= (SELECT monthly_cap FROM credits_apikey WHERE id = %s), TRUE) RETURNING held"),
    ("INSERT INTO credits_apikeyspend (api_key_id, month, held, spent) VALUES (%s, %s, 0, 0) "
    "ON CONFLICT (api_key_id, month) DO NOTHING"),
    ("UPDATE credits_apikeyspend SET held = held - %s, spent = spent + %s "
     "WHERE api_key_id = %s AND month = %s RETURNING held"),
)


class _OverCap(Exception):
    """Inside hold_place's transaction: a cap refused the hold (everything it wrote rolls back)."""

    def __init__(self, whose: str):
        self.whose = whose


def _spending_hold(hold: Hold) -> None:
    if hold.user_id is None:
        return
    month = _db(Hold._meta.get_field("spend_month"), hold.spend_month)
    budgets = [("member", _MEMBER_SPEND_SQL, [hold.account_id, hold.user_id, month],
                [hold.account_id, hold.user_id])]
    if hold.api_key_id is not None:
        budgets.append(("api_key", _KEY_SPEND_SQL, [hold.api_key_id, month], [hold.api_key_id]))
    for whose, (hold_sql, create_sql, _), row_key, cap_key in budgets:
        params = [hold.amount, *row_key, hold.amount, *cap_key]
        if _execute(hold_sql, params) is None:
            _execute(create_sql, row_key)  # the month's first hold; or the cap refused it
            if _execute(hold_sql, params) is None:
                raise _OverCap(whose)


def _spending_settle(hold_id, account_id, amount: int, captured: int, user_id, api_key_id, month) -> None:
    if user_id is None:
        return
    moved = [_execute(_MEMBER_SPEND_SQL[2], [amount, captured, account_id, user_id, month])]
    if api_key_id is not None:
        moved.append(_execute(_KEY_SPEND_SQL[2], [amount, captured, api_key_id, month]))
    if None in moved:  # only by hand-made rows; never block the settlement over it, the audit reports it
        logger.error("hold %s: its monthly spending row is missing", hold_id)


def _cap_exceeded(over: _OverCap, hold: Hold) -> MemberCapExceeded | ApiKeyCapExceeded:
    """The 402 of a refused hold, with the numbers as they are: read inside the hold's transaction
    before it rolls back (still usable: a cap refuses by a conditional UPDATE that matched no row,
    not by a database error), from the spending row and the cap that refusal left unchanged."""
    month = hold.spend_month
    # Caps apply only to a member's hold, which always has its spending month (_spending_hold).
    assert hold.user_id is not None and month is not None
    row: QuerySet[ApiKeySpend] | QuerySet[MemberSpend]
    error: type[ApiKeyCapExceeded] | type[MemberCapExceeded]
    if over.whose == "api_key":
        assert hold.api_key_id is not None  # only a hold made with a key meets the key's cap
        cap = ApiKey.objects.filter(pk=hold.api_key_id).values_list("monthly_cap", flat=True).first()
        row = ApiKeySpend.objects.filter(api_key_id=hold.api_key_id, month=month)
        error = ApiKeyCapExceeded
    else:
        cap = (AccountMember.objects.filter(account_id=hold.account_id, user_id=hold.user_id)
               .values_list("monthly_cap", flat=True).first())
        row = MemberSpend.objects.filter(account_id=hold.account_id, user_id=hold.user_id, month=month)
        error = MemberCapExceeded
    held, spent = row.values_list("held", "spent").first() or (0, 0)
    return error(cap=cap if cap is not None else 0, spent=spent, held=held, required=hold.amount,
                 month=month.strftime("%Y-%m"))


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
