"""Writes of billing: starting a checkout, Stripe's webhook events (fulfilment, refunds and
disputes), and the low-balance email.

**Credits are granted by the webhook only**, never by the page the user returns to: the return
proves nothing, a signed `checkout.session.completed` (or `async_payment_succeeded`) whose
session is ours, paid, and for exactly the pack's amount and currency does.

**Exactly once per Checkout Session** rests on a constraint: the fulfilment inserts the session's
`Payment` row (unique per session) and then grants its credits through the ledger, in ONE
transaction. Any other delivery of any event for that session, sequential or concurrent, in any
process, fails that insert (PostgreSQL makes the second insert wait for the first transaction and
then refuses it) and grants nothing. The event's own id is recorded too (a repeated delivery is
answered from its row), but the grant does not depend on it.

**Refunds and disputes** take back the refunded share of the pack's credits: credits × (amount
refunded + amount disputed) / amount paid, rounded down, minus what was already taken back for
that payment. Stripe's refund events carry the charge's running total, so a repeated or late
event takes nothing twice. The ledger takes what is available and records the rest as the
account's shortfall (credits.services.credits_take_back): no counter goes negative, no new hold
is placed while it is owed, and the next purchase pays it first. A refund or dispute that arrives
before its payment waits (`pending`) and is applied in the payment's own transaction.

A dispute closed in our favour (`charge.dispute.closed`, status `won`, or an inquiry's
`warning_closed`) gives back what it took: `amount_disputed` returns to 0 for good (the payment's
`dispute_outcome`), and the difference from what was taken back is granted (ledger kind `refund`,
the payment's reference), which pays first any shortfall the dispute left. A repeated or late
`charge.dispute.created` then takes nothing; one closed as lost takes what its opening would have
and nothing more.

**Reports**: a signed event that should have brought money and cannot (an unknown session, an
amount or currency that does not match, an unpaid session) grants nothing, is logged as a warning
and kept as a `StripeEvent` row with its `problem` for the admin.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from creditgate.billing import selectors, stripe_gateway
from creditgate.billing.errors import PaymentsUnavailable
from creditgate.billing.models import (
    CheckoutSession,
    CheckoutStatus,
    DisputeOutcome,
    EventOutcome,
    LowBalanceEmail,
    Payment,
    StripeEvent,
    payment_reference,
)
from creditgate.core import runtime
from creditgate.core.errors import InvalidRequest
from creditgate.credits import services as credits_services
from creditgate.credits.models import Account, EntryKind
from creditgate.providers import email as emails

logger = logging.getLogger(__name__)

# Billing's tasks, by name (core.runtime hands them to Celery or to this process's runner).
SEND_LOW_BALANCE_EMAIL = "creditgate.billing.tasks.send_low_balance_email"
# One more try of an email the first task's retries could not send (no retries of its own).
RETRY_LOW_BALANCE_EMAIL = "creditgate.billing.tasks.retry_low_balance_email"
# Periodic (Celery beat, or the in-process sweeper): hands the emails still owed to RETRY_LOW_BALANCE_EMAIL.
RETRY_LOW_BALANCE_EMAILS = "creditgate.billing.tasks.retry_low_balance_emails"

# Our own ids on Stripe's objects, so an event can be traced back even before we stored the session's id.
METADATA_CHECKOUT = "creditgate_checkout"
METADATA_ACCOUNT = "creditgate_account"


# --- Checkout --------------------------------------------------------------------------------


def checkout_create(*, user, pack_id: int, site_url: str) -> CheckoutSession:
    """Start buying a pack: a Stripe Checkout Session for the pack's price, as the pack is now.

    Returns the session with the URL of Stripe's payment page; Stripe sends the user back to
    `site_url` with `?checkout=<id>` either way. PaymentsUnavailable (503) when Stripe cannot be
    used; the session is then kept as failed, and nothing was charged.
    """
    account = credits_services.account_for_user(user=user)
    pack = selectors.pack_for_sale_get(pack_id=pack_id)
    checkout = CheckoutSession.objects.create(account=account, user=user, pack=pack, credits=pack.credits,
                                              amount=pack.price_amount, currency=pack.currency)
    back = f"{site_url.rstrip('/')}/?checkout={checkout.pk}"
    try:
        created = stripe_gateway.checkout_session_create(
            checkout_id=str(checkout.pk), pack_name=pack.name, credits=pack.credits, amount=pack.price_amount,
            currency=pack.currency, success_url=back, cancel_url=f"{back}&cancelled=1",
            customer_email=getattr(user, "email", "") or "",
            metadata={METADATA_CHECKOUT: str(checkout.pk), METADATA_ACCOUNT: str(account.pk)})
    except PaymentsUnavailable:
        CheckoutSession.objects.filter(pk=checkout.pk).update(status=CheckoutStatus.FAILED)
        raise
    # Conditional: a webhook may already have matched the session by its metadata and stored its id.
    CheckoutSession.objects.filter(pk=checkout.pk, stripe_session_id__isnull=True).update(
        stripe_session_id=created.id, url=created.url, expires_at=created.expires_at)
    checkout.refresh_from_db()
    logger.info("checkout %s: Stripe session %s for %s (%s credits)", checkout.pk, created.id,
                checkout.amount_display, checkout.credits)
    return checkout


# --- Stripe's webhook ------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    type: str
    outcome: str
    duplicate: bool = False


class _Duplicate(Exception):
    """This event id was recorded already (an earlier or concurrent delivery)."""


def stripe_webhook_handle(*, payload: bytes, signature: str | None) -> WebhookResult:
    """Verify a delivery of Stripe's webhook and act on its event, once.

    WebhookSignatureInvalid (400) for a missing, wrong or stale signature: nothing is written.
    Otherwise the event is recorded with what it did, in the transaction that did it.
    """
    event = stripe_gateway.event_verify(payload=payload, signature=signature)
    obj = event["data"]["object"]
    created = event.get("created")
    handler = _HANDLERS.get(event["type"], _ignore)
    try:
        with transaction.atomic(durable=True):
            try:
                with transaction.atomic():
                    record = StripeEvent.objects.create(
                        event_id=event["id"][:255], type=event["type"][:100], outcome=EventOutcome.IGNORED, data=obj,
                        stripe_object_id=str(obj.get("id") or "")[:255],
                        stripe_created_at=(dt.datetime.fromtimestamp(created, tz=dt.UTC)
                                           if isinstance(created, int) else None))
            except IntegrityError:
                raise _Duplicate from None
            handler(record, obj)
            record.save()
    except _Duplicate:
        StripeEvent.objects.filter(event_id=event["id"]).update(deliveries=F("deliveries") + 1)
        outcome = StripeEvent.objects.filter(event_id=event["id"]).values_list("outcome", flat=True).first()
        logger.info("stripe event %s (%s) delivered again: nothing done", event["id"], event["type"])
        return WebhookResult(event_id=event["id"], type=event["type"], outcome=outcome or "", duplicate=True)
    if record.outcome == EventOutcome.REPORTED:
        logger.warning("stripe event %s (%s) not honoured: %s: %s", record.event_id, record.type, record.problem,
                       record.message)
    else:
        logger.info("stripe event %s (%s): %s", record.event_id, record.type, record.outcome)
    return WebhookResult(event_id=record.event_id, type=record.type, outcome=record.outcome)


def _report(record: StripeEvent, problem: str, message: str) -> None:
    record.outcome, record.problem, record.message = EventOutcome.REPORTED, problem, message


def _ignore(record: StripeEvent, obj: dict) -> None:
    record.outcome, record.message = EventOutcome.IGNORED, "creditgate does not act on this type of event."


def _checkout_for(session: dict) -> CheckoutSession | None:
    """Our checkout of a Stripe session: by its id, or (its id never stored: the process stopped
    between Stripe's answer and our write) by the checkout id we put in its metadata."""
    session_id = str(session.get("id") or "")
    checkout = CheckoutSession.objects.select_related("pack", "account").filter(stripe_session_id=session_id).first()
    if checkout is not None or not session_id:
        return checkout
    try:
        ours = uuid.UUID(str((session.get("metadata") or {}).get(METADATA_CHECKOUT)))
    except ValueError:
        return None
    CheckoutSession.objects.filter(pk=ours, stripe_session_id__isnull=True).update(
        stripe_session_id=session_id[:255], url=str(session.get("url") or "")[:2000])
    return (CheckoutSession.objects.select_related("pack", "account")
            .filter(pk=ours, stripe_session_id=session_id).first())


def _session_paid(record: StripeEvent, session: dict) -> None:
    """checkout.session.completed / async_payment_succeeded: grant the pack's credits, once."""
    checkout = _checkout_for(session)
    record.checkout = checkout
    record.payment_intent = str(session.get("payment_intent") or "")[:255]
    if checkout is None:
        return _report(record, "unknown_session", f"No checkout of ours is Stripe session {session.get('id')!r}; "
                                                  "nothing was granted.")
    if session.get("payment_status") != "paid":
        return _report(record, "unpaid", f"The session's payment status is {session.get('payment_status')!r}, not "
                                         "paid; credits come when Stripe reports it paid.")
    currency = str(session.get("currency") or "").lower()
    if currency != checkout.currency:
        return _report(record, "currency_mismatch", f"Paid in {currency or 'no currency'!s}, but the checkout is in "
                                                    f"{checkout.currency}; nothing was granted.")
    if session.get("amount_total") != checkout.amount:
        return _report(record, "amount_mismatch",
                       f"Paid {session.get('amount_total')!r}, but the checkout costs "
                       f"{checkout.amount} ({checkout.amount_display}); nothing was granted.")
    _fulfil(record, checkout, payment_intent=record.payment_intent or None)


def _fulfil(record: StripeEvent, checkout: CheckoutSession, *, payment_intent: str | None) -> None:
    now = timezone.now()
    try:
        with transaction.atomic():  # the exactly-once gate: one payment row per session
            payment = Payment.objects.create(checkout=checkout, account_id=checkout.account_id,
                                             credits=checkout.credits, amount=checkout.amount,
                                             currency=checkout.currency,
                                             stripe_payment_intent_id=payment_intent, paid_at=now)
    except IntegrityError:
        record.outcome = EventOutcome.ALREADY_FULFILLED
        record.payment = Payment.objects.filter(checkout=checkout).first()
        record.message = "This session's credits were granted by an earlier delivery."
        return
    if payment_intent:
        _payment_intent_lock(payment_intent)  # after the gate: duplicates still race on the constraint
    credits_services.credits_grant_within(
        account=checkout.account, amount=checkout.credits, reason=f"Bought {checkout.pack.name}",
        reference=payment_reference(checkout.stripe_session_id))
    CheckoutSession.objects.filter(pk=checkout.pk).update(status=CheckoutStatus.PAID, paid_at=now)
    record.outcome, record.payment = EventOutcome.FULFILLED, payment
    record.message = f"Granted {checkout.credits} credits for {checkout.amount_display}."
    if payment_intent:
        # Refunds or disputes of this payment that arrived before it did.
        early_events = StripeEvent.objects.filter(outcome=EventOutcome.PENDING, payment_intent=payment_intent)
        for early in early_events.order_by("id"):
            _REVERSALS[early.type](early, early.data, payment=payment)
            early.save()


def _session_closed(record: StripeEvent, session: dict) -> None:
    """checkout.session.expired / async_payment_failed: the session will not be paid."""
    checkout = _checkout_for(session)
    record.checkout = checkout
    if checkout is None:
        record.outcome, record.message = EventOutcome.IGNORED, "Not a session of ours."
        return
    status = CheckoutStatus.EXPIRED if record.type == "checkout.session.expired" else CheckoutStatus.FAILED
    CheckoutSession.objects.filter(pk=checkout.pk, status=CheckoutStatus.OPEN).update(status=status)
    record.outcome, record.message = EventOutcome.CLOSED, f"The session is {status}; nothing was paid."


def _payment_intent_lock(payment_intent: str) -> None:
    """Serialize, per payment intent, a fulfilment with a refund or dispute of it arriving at the
    same moment: without it, the refund could find no payment yet (not committed) while the
    fulfilment finds no pending refund yet (not committed either), and the refund would wait for
    ever. A PostgreSQL transaction-scoped advisory lock; SQLite runs one writer at a time anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                           [f"creditgate-payment-intent:{payment_intent}"])


def _payment_of(record: StripeEvent, obj: dict, payment: Payment | None) -> Payment | None:
    """The payment a refund or dispute concerns (locked for this transaction), by payment intent."""
    record.payment_intent = str(obj.get("payment_intent") or "")[:255]
    if payment is not None:
        return payment
    if not record.payment_intent:
        return None
    _payment_intent_lock(record.payment_intent)
    return Payment.objects.select_for_update().select_related("checkout").filter(
        stripe_payment_intent_id=record.payment_intent).first()


def _charge_refunded(record: StripeEvent, charge: dict, *, payment: Payment | None = None) -> None:
    payment = _payment_of(record, charge, payment)
    if payment is None:
        return _wait_for_payment(record)
    refunded = charge.get("amount_refunded")
    if not isinstance(refunded, int) or refunded < 0:
        return _report(record, "bad_refund", f"The refund's amount_refunded is {refunded!r}.")
    _reverse(record, payment, currency=charge.get("currency"), refunded=refunded,
             charge_id=str(charge.get("id") or ""), what=f"refund of charge {charge.get('id')}")


def _dispute_created(record: StripeEvent, dispute: dict, *, payment: Payment | None = None) -> None:
    payment = _payment_of(record, dispute, payment)
    if payment is None:
        return _wait_for_payment(record)
    if payment.dispute_outcome == DisputeOutcome.WON:  # its closing came first (or again): nothing to take
        record.payment, record.outcome = payment, EventOutcome.NO_CHANGE
        record.message = "The dispute was already closed in our favour: nothing taken back."
        return
    disputed = dispute.get("amount")
    if not isinstance(disputed, int) or disputed < 0:
        return _report(record, "bad_dispute", f"The dispute's amount is {disputed!r}.")
    _reverse(record, payment, currency=dispute.get("currency"), disputed=disputed,
             charge_id=str(dispute.get("charge") or ""), what=f"dispute {dispute.get('id')}")


# Dispute statuses at which the merchant keeps the money: the dispute won, or an inquiry that
# closed without becoming a dispute (https://docs.stripe.com/api/disputes/object#dispute_object-status).
_DISPUTE_KEPT = {"won", "warning_closed"}


def _dispute_closed(record: StripeEvent, dispute: dict, *, payment: Payment | None = None) -> None:
    """charge.dispute.closed: won gives back what the dispute took, once; lost takes what the
    dispute's opening would have (nothing more if it came first)."""
    payment = _payment_of(record, dispute, payment)
    if payment is None:
        return _wait_for_payment(record)
    status = dispute.get("status")
    if status == "lost":
        if payment.dispute_outcome != DisputeOutcome.WON:
            payment.dispute_outcome = DisputeOutcome.LOST
        return _dispute_created(record, dispute, payment=payment)
    if status not in _DISPUTE_KEPT:
        return _report(record, "bad_dispute", f"The closed dispute's status is {status!r}.")
    record.payment = payment
    if str(dispute.get("currency") or "").lower() != payment.currency:
        return _report(record, "currency_mismatch", f"The dispute {dispute.get('id')} is in "
                                                    f"{dispute.get('currency')!r}, the payment in {payment.currency}.")
    payment.dispute_outcome, payment.amount_disputed = DisputeOutcome.WON, 0
    target = _credits_to_reverse(payment)
    give = payment.credits_reversed - target
    if give > 0:
        # A grant: it pays first what the account still owes (the dispute's take-back may have
        # made that shortfall), so the account ends as if the dispute had never been.
        credits_services.credits_grant_within(
            account=Account(pk=payment.account_id), amount=give, kind=EntryKind.REFUND,
            reason=f"Dispute {dispute.get('id')} closed in our favour: credits given back",
            reference=payment_reference(payment.checkout.stripe_session_id))
        payment.credits_reversed = target
        record.outcome = EventOutcome.RESTORED
        record.message = f"Gave back {give} credits."
    else:
        record.outcome, record.message = EventOutcome.NO_CHANGE, "Nothing to give back (given already, or never taken)."
    payment.save(update_fields=["dispute_outcome", "amount_disputed", "credits_reversed"])


def _credits_to_reverse(payment: Payment) -> int:
    """The refunded and disputed share of the payment's credits, rounded down (the refund rule)."""
    share = min(payment.amount, payment.amount_refunded + payment.amount_disputed)
    return payment.credits * share // payment.amount


def _wait_for_payment(record: StripeEvent) -> None:
    record.outcome = EventOutcome.PENDING
    record.message = (f"No payment with payment intent {record.payment_intent or '(none)'} yet: taken into account "
                      "when it arrives (a refund or dispute of a payment that is not ours stays here).")


def _reverse(record: StripeEvent, payment: Payment, *, currency, charge_id: str, what: str,
             refunded: int | None = None, disputed: int | None = None) -> None:
    """Take back the refunded and disputed share of the payment's credits not taken back yet."""
    record.payment = payment
    if str(currency or "").lower() != payment.currency:
        return _report(record, "currency_mismatch", f"The {what} is in {currency!r}, the payment in "
                                                    f"{payment.currency}; nothing was taken back.")
    if refunded is not None:
        payment.amount_refunded = max(payment.amount_refunded, min(refunded, payment.amount))
    if disputed is not None:
        payment.amount_disputed = max(payment.amount_disputed, min(disputed, payment.amount))
    if charge_id and not payment.stripe_charge_id:
        payment.stripe_charge_id = charge_id[:255]
    target = _credits_to_reverse(payment)
    take = target - payment.credits_reversed
    if take > 0:
        entry = credits_services.credits_take_back(
            account=Account(pk=payment.account_id), amount=take,
            reference=payment_reference(payment.checkout.stripe_session_id),
            reason=f"{what[0].upper()}{what[1:]} ({payment.amount_display} paid)")
        payment.credits_reversed = target
        owed = entry.shortfall_delta
        record.outcome = EventOutcome.REVERSED
        record.message = f"Took back {take} credits" + (f" ({owed} of them already spent: owed)" if owed else "") + "."
    else:
        record.outcome, record.message = EventOutcome.NO_CHANGE, "Already taken into account."
    payment.save(update_fields=["amount_refunded", "amount_disputed", "stripe_charge_id", "credits_reversed",
                                "dispute_outcome"])


_HANDLERS: dict[str, Callable[[StripeEvent, dict], None]] = {
    "checkout.session.completed": _session_paid,
    "checkout.session.async_payment_succeeded": _session_paid,
    "checkout.session.expired": _session_closed,
    "checkout.session.async_payment_failed": _session_closed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
    "charge.dispute.closed": _dispute_closed,
}
_REVERSALS = {"charge.refunded": _charge_refunded, "charge.dispute.created": _dispute_created,
              "charge.dispute.closed": _dispute_closed}


# --- Low-balance email ----------------------------------------------------------------------


def low_balance_alert_set(*, user, threshold: int | None, email: str | None = None) -> None:
    """The user's account emails `email` (default: the user's address) when a capture leaves it
    below `threshold` available credits; None switches it off."""
    account = credits_services.account_for_user(user=user)
    if threshold is not None and not (email or getattr(user, "email", "")):
        raise InvalidRequest("An email address is needed: give one, or add one to your profile.",
                             details={"email": ["This field is required when your profile has no email address."]})
    credits_services.account_low_balance_set(account=account, threshold=threshold,
                                             email=(email or getattr(user, "email", "") or ""))


def low_balance_email_hand_over(*, email_id: int) -> bool:
    """Hand one email to the task that sends it (with its retries); False if the broker refused
    (the row still says it is owed: the periodic retry comes back to it)."""
    return runtime.send(SEND_LOW_BALANCE_EMAIL, email_id, inline_retries=True)


def low_balance_email_create(*, account_id: int, available: int, threshold: int, email: str) -> LowBalanceEmail:
    """Record the email of one crossing (credits.events.low_balance_crossed, after the capture
    committed) and hand it to a task to send."""
    with transaction.atomic():
        row = LowBalanceEmail.objects.create(account_id=account_id, to=email, available=available, threshold=threshold)
        transaction.on_commit(lambda: low_balance_email_hand_over(email_id=row.pk))
    return row


def low_balance_email_send(*, email_id: int) -> bool:
    """Send one low-balance email through Resend; False if it was sent already. EmailNotSent is
    raised after recording the error, so the task retries it."""
    failure = None
    with transaction.atomic():
        # Locked while sending: a redelivered task waits, then finds it sent (the money's
        # transaction committed long ago; this lock is on this email's row only).
        row = LowBalanceEmail.objects.select_for_update().select_related("account").get(pk=email_id)
        if row.sent_at:
            return False
        row.attempts += 1
        row.last_attempt_at = timezone.now()
        try:
            row.message_id = emails.email_send(to=row.to, subject=_low_balance_subject(row),
                                               body=_low_balance_body(row))[:255]
            row.sent_at, row.last_error = timezone.now(), ""
        except emails.EmailNotSent as exc:
            row.last_error, failure = exc.message, exc
            logger.warning("low-balance email %s to account %s not sent (attempt %d): %s", row.pk, row.account_id,
                           row.attempts, exc.message)
        row.save(update_fields=["attempts", "last_attempt_at", "message_id", "sent_at", "last_error"])
    if failure is not None:
        raise failure
    logger.info("low-balance email %s sent to account %s", row.pk, row.account_id)
    return True


# How many owed emails one run of the periodic retry hands over (each is then one try on the sender).
LOW_BALANCE_RETRY_BATCH = 50


def low_balance_emails_retry(*, now: dt.datetime | None = None) -> int:
    """Hand the low-balance emails still owed to the sender for one more try each; returns how many.

    Owed (selectors.low_balance_emails_owed): not sent, tried fewer than
    CREDITGATE_LOW_BALANCE_EMAIL_MAX_ATTEMPTS times, last tried (or written) at least
    CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS ago, and still true: the account's alert is on and
    not re-armed by a top-up since, and no later crossing has its own email. Each is claimed by a
    conditional UPDATE of `last_attempt_at` before it is handed over, so concurrent runs (several
    processes' sweepers, beat) hand it over once per turn; the send itself locks the row and sends
    nothing that is sent already, so one crossing is never emailed twice.
    """
    now = now or timezone.now()
    handed = 0
    owed = list(selectors.low_balance_emails_owed(now=now).values_list("pk", flat=True)[:LOW_BALANCE_RETRY_BATCH])
    for email_id in owed:
        claimed = selectors.low_balance_emails_owed(now=now).filter(pk=email_id).update(last_attempt_at=now)
        if claimed and runtime.send(RETRY_LOW_BALANCE_EMAIL, email_id, inline_retries=True):
            handed += 1
    if handed:
        logger.info("low-balance emails: %d handed to the sender again", handed)
    return handed


def _low_balance_subject(row: LowBalanceEmail) -> str:
    return f"Your creditgate credits are running low ({row.available} left)"


def _low_balance_body(row: LowBalanceEmail) -> str:
    return (f"Hello,\n\n"
            f"The creditgate account {row.account} has {row.available} credits available, below the "
            f"{row.threshold} you asked to be told about.\n\n"
            f"Buy credits: {settings.CREDITGATE_PUBLIC_URL}/#buy\n\n"
            f"You will not get another email about this until the account has {row.threshold} credits or more "
            f"again and then goes below it.\n")
