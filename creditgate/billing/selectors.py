"""Reads of billing, and the payments' part of the reconciliation audit."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from creditgate.billing import stripe_gateway
from creditgate.billing.errors import PaymentsUnavailable
from creditgate.billing.models import (
    CheckoutSession,
    CheckoutStatus,
    CreditPack,
    LowBalanceEmail,
    Payment,
    payment_reference,
)
from creditgate.core.errors import InvalidRequest, NotFound
from creditgate.credits import services as credits_services
from creditgate.credits.models import Account, EntryKind, LedgerEntry


def payments_available() -> bool:
    """Whether Stripe can be used now: a key, or the sandbox serving it."""
    try:
        stripe_gateway.endpoint_get()
    except PaymentsUnavailable:
        return False
    return True


def packs_for_sale() -> QuerySet[CreditPack]:
    """The packs users can buy now: the active ones, or none while Stripe cannot be used."""
    if not payments_available():
        return CreditPack.objects.none()
    return CreditPack.objects.filter(is_active=True).order_by("position", "price_amount", "id")


def pack_for_sale_get(*, pack_id) -> CreditPack:
    pack = CreditPack.objects.filter(pk=pack_id, is_active=True).first() if isinstance(pack_id, int) else None
    if pack is None:
        raise InvalidRequest("There is no such credit pack for sale.",
                             details={"pack": ["Choose one of the packs from GET /api/v1/credits/packs/."]})
    return pack


def checkout_get(*, user, checkout_id) -> CheckoutSession:
    """One of the user's account's checkouts; NotFound for anyone else's (no difference shown)."""
    account = credits_services.account_for_user(user=user)
    checkout = CheckoutSession.objects.select_related("pack").filter(pk=checkout_id, account=account).first()
    if checkout is None:
        raise NotFound("No such checkout.")
    return checkout


def shortfall_get(*, account: Account) -> int:
    return Account.objects.filter(pk=account.pk).values_list("shortfall", flat=True).get()


def low_balance_alert_get(*, user) -> dict:
    """The user's account's low-balance email; `email` is where it goes (the user's own address
    until one is set, as the setting would use)."""
    account = credits_services.account_for_user(user=user)
    threshold, email, armed = (Account.objects.filter(pk=account.pk)
                               .values_list("low_balance_threshold", "low_balance_email", "low_balance_armed").get())
    return {"threshold": threshold, "email": email or getattr(user, "email", "") or "", "armed": bool(armed)}


def payments_audit() -> list[str]:
    """Payments against the ledger: each payment's credits granted exactly once under its
    reference, its take-backs (taken + owed, less what a won dispute gave back) equal to what it
    records as reversed, its checkout
    paid; and no Stripe grant without a payment. Empty == clean."""
    problems = []
    entries = {row["reference"]: row for row in LedgerEntry.objects.filter(reference__startswith="stripe:")
               .values("reference").annotate(
                   grants=Count("id", filter=Q(kind=EntryKind.GRANT)),
                   granted=Sum("amount", filter=Q(kind=EntryKind.GRANT)),
                   reversed=Sum(F("shortfall_delta") - F("amount"), filter=Q(kind=EntryKind.CLAWBACK)),
                   given_back=Sum("amount", filter=Q(kind=EntryKind.REFUND)))}
    seen = set()
    for payment in Payment.objects.select_related("checkout").order_by("pk").iterator():
        reference = payment_reference(payment.checkout.stripe_session_id)
        seen.add(reference)
        row = entries.get(reference, {"grants": 0, "granted": 0, "reversed": 0, "given_back": 0})
        label = f"payment {payment.pk} ({reference})"
        if row["grants"] != 1 or (row["granted"] or 0) != payment.credits:
            problems.append(f"{label}: {row['grants']} grant entries for {row['granted'] or 0} credits; "
                            f"expected one for {payment.credits}")
        # What its disputes won gave back (kind refund) undoes part of its take-backs.
        reversed_net = (row["reversed"] or 0) - (row["given_back"] or 0)
        if reversed_net != payment.credits_reversed:
            problems.append(f"{label}: its take-backs net of what was given back total {reversed_net} credits; the "
                            f"payment records {payment.credits_reversed}")
        if payment.checkout.status != CheckoutStatus.PAID:
            problems.append(f"{label}: its checkout is {payment.checkout.status}, not paid")
    for reference, row in entries.items():
        if reference not in seen and row["grants"]:
            problems.append(f"{reference}: {row['granted']} credits granted for a Stripe session with no payment")
    return problems


def low_balance_emails_owed(*, now: dt.datetime) -> QuerySet[LowBalanceEmail]:
    """Low-balance emails to try again now (services.low_balance_emails_retry), oldest first: not
    sent, tried fewer than CREDITGATE_LOW_BALANCE_EMAIL_MAX_ATTEMPTS times, not tried (nor written)
    in the last CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS, and still true: the account's alert is on
    and not re-armed (a top-up above the threshold since makes the email wrong), and no later
    crossing of the account has its own email."""
    since = now - dt.timedelta(seconds=settings.CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS)
    later = LowBalanceEmail.objects.filter(account_id=OuterRef("account_id"), pk__gt=OuterRef("pk"))
    return (LowBalanceEmail.objects
            .filter(sent_at__isnull=True, attempts__lt=settings.CREDITGATE_LOW_BALANCE_EMAIL_MAX_ATTEMPTS,
                    account__low_balance_threshold__isnull=False, account__low_balance_armed=False)
            .alias(tried=Coalesce("last_attempt_at", "created_at"))
            .filter(tried__lte=since)
            .exclude(Exists(later))
            .order_by("created_at", "id"))
