"""Reads of accounts and the ledger, and the ledger audit behind `manage.py check_ledger`."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Max, Q, QuerySet, Sum, Window
from django.utils import timezone

from creditgate.core.errors import NotFound
from creditgate.core.snapshot import snapshot
from creditgate.credits.models import (
    Account,
    AccountMember,
    ApiKey,
    ApiKeySpend,
    EntryKind,
    Hold,
    HoldState,
    Invitation,
    LedgerEntry,
    MemberSpend,
)


def balance_get(*, account: Account) -> dict:
    """balance = available + held; available is spendable, held is reserved by running requests."""
    available, held = Account.objects.filter(pk=account.pk).values_list("available", "held").get()
    return {"balance": available + held, "held": held, "available": available}


def ledger_list(*, account: Account) -> QuerySet[LedgerEntry]:
    """The account's entries, newest first."""
    return LedgerEntry.objects.filter(account=account).order_by("-id")


def ledger_visible(*, viewer: AccountMember) -> QuerySet[LedgerEntry]:
    """The ledger lines `viewer` may see, newest first, each annotated with the member whose job it
    belongs to (`job_user_id`, `job_username`; None for a line of no job).

    An owner sees the account's whole ledger. A member sees the lines of their own jobs (hold,
    capture, release) and the account's own lines, which belong to no job and no member (grants,
    purchases, refunds, take-backs, adjustments: they change the balance every member spends
    from, which members see anyway); never another member's job. Who ran a job is the job's user
    (through its hold: holds placed before teams name no spender, their jobs do).
    """
    lines = LedgerEntry.objects.filter(account_id=viewer.account_id).order_by("-id").annotate(
        job_user_id=F("hold__job__user_id"), job_username=F("hold__job__user__username"))
    if not viewer.is_owner:
        lines = lines.filter(Q(hold__isnull=True) | Q(hold__job__user_id=viewer.user_id))
    return lines


@snapshot()
def ledger_check() -> list[str]:
    """Every inconsistency between the stored counters, the ledger and the holds; empty == clean.

    Aggregates in the database, so it reads each table once whatever the number of accounts, and
    reads them all in one snapshot, so work settling meanwhile is not reported as a break.
    """
    problems: list[str] = []
    sums = {row["account_id"]: row for row in LedgerEntry.objects.values("account_id").annotate(
        available=Sum("available_delta"), held=Sum("held_delta"), shortfall=Sum("shortfall_delta"))}
    active_held = dict(Hold.objects.filter(state=HoldState.ACTIVE).values("account_id")
                       .annotate(total=Sum("amount")).values_list("account_id", "total"))
    newest = LedgerEntry.objects.values("account_id").annotate(newest=Max("id")).values("newest")
    last_after = {e.account_id: (e.available_after, e.held_after) for e in
                  LedgerEntry.objects.filter(pk__in=newest).only("account_id", "available_after", "held_after")}

    for account in Account.objects.order_by("pk").only("pk", "name", "available", "held", "shortfall").iterator():
        label = f"account {account.pk} ({account.name})"
        row = sums.get(account.pk, {"available": 0, "held": 0, "shortfall": 0})
        if account.available < 0 or account.held < 0 or account.shortfall < 0:
            problems.append(f"{label}: negative counter (available {account.available}, held {account.held}, "
                            f"shortfall {account.shortfall})")
        # The shortfall (credits a refund took back after they were spent) re-derives from the
        # clawback and shortfall-payment entries like the other counters.
        if account.shortfall != row["shortfall"]:
            problems.append(f"{label}: shortfall is {account.shortfall} but the ledger sums to {row['shortfall']}")
        if account.available != row["available"]:
            problems.append(f"{label}: available is {account.available} but the ledger sums to {row['available']}")
        if account.held != row["held"]:
            problems.append(f"{label}: held is {account.held} but the ledger sums to {row['held']}")
        if account.held != active_held.get(account.pk, 0):
            problems.append(f"{label}: held is {account.held} but its active holds total "
                            f"{active_held.get(account.pk, 0)}")
        after = last_after.get(account.pk)
        if after is not None and after != (account.available, account.held):
            problems.append(f"{label}: the newest entry says available {after[0]}, held {after[1]}; "
                            f"the account says {account.available}, {account.held}")

    negative = LedgerEntry.objects.filter(Q(available_after__lt=0) | Q(held_after__lt=0)).count()
    if negative:
        problems.append(f"{negative} ledger entries record a negative counter")
    problems.extend(_shortfall_check())
    problems.extend(_holds_check())
    problems.extend(_spending_check())
    return problems


def _shortfall_check() -> list[str]:
    """The shortfall's running sum, entry by entry: never negative (no payment beyond what was
    owed), and no hold placed while it was above 0 (new work is refused until it is paid)."""
    running = Window(Sum("shortfall_delta"), partition_by=[F("account_id")], order_by=F("id").asc())
    rows = (LedgerEntry.objects.annotate(owed=running)
            .filter(Q(owed__lt=0) | Q(owed__gt=0, kind=EntryKind.HOLD))
            .order_by("id").values_list("id", "account_id", "kind", "owed")[:20])
    return [f"ledger entry {pk} (account {account_id}, {kind}): "
            + ("the shortfall goes negative" if owed < 0 else f"a hold placed while {owed} credits were owed")
            for pk, account_id, kind, owed in rows]


def _holds_check() -> list[str]:
    """Each hold's entries must match its state: placed once; an active hold still fully held;
    a settled one no longer held at all, charged exactly its captured amount."""
    by_hold: defaultdict[int, dict[str, int]] = defaultdict(lambda: {"held": 0, "charged": 0, "placed": 0})
    rows = (LedgerEntry.objects.filter(hold__isnull=False).values("hold_id")
            .annotate(held=Sum("held_delta"), charged=Sum("amount", filter=Q(kind=EntryKind.CAPTURE)),
                      placed=Sum("held_delta", filter=Q(kind=EntryKind.HOLD))))
    for row in rows:
        by_hold[row["hold_id"]] = {"held": row["held"] or 0, "charged": -(row["charged"] or 0),
                                   "placed": row["placed"] or 0}
    problems = []
    for hold in Hold.objects.order_by("pk").only("pk", "amount", "captured_amount", "state").iterator():
        seen = by_hold[hold.pk]
        label = f"hold {hold.pk} ({hold.state}, {hold.amount})"
        if seen["placed"] != hold.amount:
            problems.append(f"{label}: its hold entries reserve {seen['placed']}")
        expected_held = hold.amount if hold.state == HoldState.ACTIVE else 0
        if seen["held"] != expected_held:
            problems.append(f"{label}: its entries leave {seen['held']} held, expected {expected_held}")
        if seen["charged"] != hold.captured_amount:
            problems.append(f"{label}: its entries charge {seen['charged']}, the hold captured "
                            f"{hold.captured_amount}")
    return problems


def _spending_check() -> list[str]:
    """Every member's and API key's monthly row must equal what its holds say: `held` the sum of
    its active holds, `spent` the sum of what its captured holds charged."""
    problems = []
    scopes = [
        ("member", MemberSpend.objects.all(), ("account_id", "user_id", "month"), Q(user__isnull=False),
         ("account_id", "user_id", "spend_month")),
        ("API key", ApiKeySpend.objects.all(), ("api_key_id", "month"), Q(api_key__isnull=False),
         ("api_key_id", "spend_month")),
    ]
    for label, rows, row_key, holds_filter, hold_key in scopes:
        expected = {tuple(r[k] for k in hold_key): (r["held"] or 0, r["spent"] or 0) for r in
                    Hold.objects.filter(holds_filter).values(*hold_key).annotate(
                        held=Sum("amount", filter=Q(state=HoldState.ACTIVE)),
                        spent=Sum("captured_amount", filter=Q(state=HoldState.CAPTURED)))}
        for row in rows.values(*row_key, "held", "spent").iterator():
            key = tuple(row[k] for k in row_key)
            held, spent = expected.pop(key, (0, 0))
            if row["held"] < 0 or row["spent"] < 0 or (row["held"], row["spent"]) != (held, spent):
                problems.append(f"{label} spending {_spending_label(key)}: held {row['held']}, spent {row['spent']}; "
                                f"its holds say held {held}, spent {spent}")
        for key, (held, spent) in expected.items():
            problems.append(f"{label} spending {_spending_label(key)}: no row, but its holds say held {held}, "
                            f"spent {spent}")
    return problems


def _spending_label(key: tuple) -> str:
    *ids, month = key
    return "/".join(str(i) for i in ids) + f" in {month:%Y-%m}"


# --- Members' monthly spending ------------------------------------------------------------


def spending_month(*, at: dt.datetime | None = None) -> dt.date:
    """The calendar month `at` falls in (its first day), in CREDITGATE_SPENDING_TIME_ZONE: the month
    a hold placed then counts in."""
    local = timezone.localtime(at or timezone.now(), zoneinfo.ZoneInfo(settings.CREDITGATE_SPENDING_TIME_ZONE))
    return local.date().replace(day=1)


@dataclass(frozen=True)
class Spending:
    """What a member (or an API key) used in a month: spent, and held by running jobs."""

    month: dt.date
    spent: int = 0
    held: int = 0

    @property
    def used(self) -> int:
        return self.spent + self.held


def members_list(*, viewer: AccountMember) -> list[tuple[AccountMember, Spending]]:
    """The viewer's account's members with their spending this month: every member for an owner,
    only themself for a member."""
    month = spending_month()
    members = AccountMember.objects.filter(account_id=viewer.account_id).select_related("user").order_by(
        "joined_at", "pk")
    if not viewer.is_owner:
        members = members.filter(pk=viewer.pk)
    spends = {row["user_id"]: Spending(month, row["spent"], row["held"]) for row in
              MemberSpend.objects.filter(account_id=viewer.account_id, month=month).values("user_id", "spent", "held")}
    return [(m, spends.get(m.user_id, Spending(month))) for m in members]


def member_get(*, viewer: AccountMember, member_id) -> AccountMember:
    """A member of the viewer's account (an owner sees all, a member only themself); 404 otherwise."""
    if not isinstance(member_id, int):  # not an id: no such member
        raise NotFound("No such member.")
    member = AccountMember.objects.select_related("user", "account").filter(
        pk=member_id, account_id=viewer.account_id).first()
    if member is None or not (viewer.is_owner or member.pk == viewer.pk):
        raise NotFound("No such member.")
    return member


def api_keys_list(*, viewer: AccountMember) -> list[tuple[ApiKey, Spending]]:
    """The API keys the viewer manages (an owner: the account's; a member: their own), newest
    first, with what each used this month."""
    month = spending_month()
    managed = ApiKey.objects.filter(account_id=viewer.account_id).select_related("member__user")
    if not viewer.is_owner:
        managed = managed.filter(member=viewer)
    keys = list(managed.order_by("-created_at", "-pk"))
    spends = {row["api_key_id"]: Spending(month, row["spent"], row["held"]) for row in
              ApiKeySpend.objects.filter(api_key__in=keys, month=month).values("api_key_id", "spent", "held")}
    return [(k, spends.get(k.pk, Spending(month))) for k in keys]


def api_key_get(*, viewer: AccountMember, key_id) -> ApiKey:
    if not isinstance(key_id, int):  # not an id: no such key
        raise NotFound("No such API key.")
    key = ApiKey.objects.select_related("member__user", "member").filter(
        pk=key_id, account_id=viewer.account_id).first()
    if key is None or not (viewer.is_owner or key.member_id == viewer.pk):
        raise NotFound("No such API key.")
    return key


def api_key_spending(*, api_key: ApiKey) -> Spending:
    month = spending_month()
    row = ApiKeySpend.objects.filter(api_key=api_key, month=month).values("spent", "held").first()
    return Spending(month, row["spent"], row["held"]) if row else Spending(month)


def member_spending(*, member: AccountMember) -> Spending:
    month = spending_month()
    row = (MemberSpend.objects.filter(account_id=member.account_id, user_id=member.user_id, month=month)
           .values("spent", "held").first())
    return Spending(month, row["spent"], row["held"]) if row else Spending(month)


def invitations_pending(*, account) -> list[Invitation]:
    """The account's invitations whose link still works, newest first."""
    return list(Invitation.objects.filter(account=account, accepted_at__isnull=True, revoked_at__isnull=True,
                                          expires_at__gt=timezone.now()).select_related("invited_by"))


def invitation_get(*, account, invitation_id) -> Invitation:
    invitation = Invitation.objects.select_related("account", "invited_by").filter(
        pk=invitation_id, account=account).first() if isinstance(invitation_id, int) else None
    if invitation is None:
        raise NotFound("No such invitation.")
    return invitation
