"""Buying credits: the packs an operator sells, the Stripe Checkout Sessions users start, the
payments that arrive, the Stripe events received, and the low-balance emails sent.

The rule that matters most is a constraint: `Payment.checkout` is unique, and a payment row is
written in the same transaction as the ledger grant of its credits (services.py). So a Checkout
Session is paid for in credits exactly once, however many times, in whatever order and however
concurrently Stripe (or anyone replaying a signed event) delivers its events.

Amounts of money are integers in the currency's smallest unit (cents for USD, yen for JPY), as
Stripe counts them; credits are integers, as in the ledger.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from creditgate.audit.tracking import config_history
from creditgate.credits.models import Account

# Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal): their
# amounts are whole units; every other currency here counts hundredths.
ZERO_DECIMAL_CURRENCIES = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())


def money_display(amount: int, currency: str) -> str:
    """`500, "usd"` -> "5.00 USD"; `500, "jpy"` -> "500 JPY"."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{amount:,} {currency.upper()}"
    return f"{amount // 100:,}.{amount % 100:02d} {currency.upper()}"


class CreditPack(models.Model):
    """What users can buy: a number of credits for a price. Set up by an operator in the admin."""

    name = models.CharField(max_length=100, help_text="Shown on the page and on Stripe's payment page.")
    credits = models.PositiveBigIntegerField(help_text="Credits added to the buyer's account once paid.")
    price_amount = models.PositiveBigIntegerField(
        "price", help_text="In the currency's smallest unit: 500 is 5.00 USD (for JPY, 500 is 500 yen).")
    currency = models.CharField(max_length=3, default="usd", help_text="ISO 4217 code in lower case, e.g. usd, eur.")
    is_active = models.BooleanField(default=True, help_text="Only active packs are offered.")
    position = models.PositiveSmallIntegerField(default=0, help_text="Packs are listed by this, then by price.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # A price change is a configuration change: who made it and when is recorded.
    history = config_history(excluded_fields=["updated_at"])

    class Meta:
        verbose_name = "credit pack"
        ordering = ["position", "price_amount", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="pack_credits_positive",
                                   violation_error_message="A pack has at least 1 credit."),
            models.CheckConstraint(condition=Q(price_amount__gt=0), name="pack_price_positive",
                                   violation_error_message="A pack's price is above 0."),
            models.CheckConstraint(condition=Q(currency__regex=r"^[a-z]{3}$"), name="pack_currency_iso",
                                   violation_error_message="The currency is a three-letter ISO code in lower case, "
                                                           "e.g. usd."),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits, {self.price_display})"

    @property
    def price_display(self) -> str:
        return money_display(self.price_amount, self.currency)


class CheckoutStatus(models.TextChoices):
    OPEN = "open", "Open"          # waiting for the user on Stripe's page
    PAID = "paid", "Paid"          # its payment arrived and its credits were granted
    EXPIRED = "expired", "Expired"  # abandoned: Stripe expired it unpaid
    FAILED = "failed", "Failed"    # Stripe refused to create it, or an asynchronous payment failed


class CheckoutSession(models.Model):
    """A Stripe Checkout Session started by a user for a pack, with what it sells as of then (a
    later change of the pack does not change what this session grants)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="checkout_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="checkout_sessions")
    credits = models.BigIntegerField()
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # Empty until Stripe has answered (a session that failed to be created never gets one).
    stripe_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    url = models.URLField(max_length=2000, blank=True, default="")
    status = models.CharField(max_length=8, choices=CheckoutStatus.choices, default=CheckoutStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "checkout session"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0) & Q(amount__gt=0), name="checkout_amounts_positive"),
            models.CheckConstraint(condition=Q(status__in=CheckoutStatus.values), name="checkout_status_valid"),
            models.CheckConstraint(condition=Q(status=CheckoutStatus.PAID, paid_at__isnull=False)
                                   | (~Q(status=CheckoutStatus.PAID) & Q(paid_at__isnull=True)),
                                   name="checkout_paid_iff_paid_at"),
        ]
        indexes = [models.Index(fields=["account", "-created_at"], name="checkout_account_newest_idx")]

    def __str__(self) -> str:
        return f"checkout {self.stripe_session_id or self.pk} ({self.credits} credits, {self.status})"

    @property
    def amount_display(self) -> str:
        return money_display(self.amount, self.currency)


class DisputeOutcome(models.TextChoices):
    WON = "won", "Won: credits given back"
    LOST = "lost", "Lost"


class Payment(models.Model):
    """Money received for a Checkout Session, and what refunds and disputes later took back.

    Written in the same transaction as the ledger grant of its credits (reference
    `stripe:<session id>`); `checkout` is unique, so a session is paid for in credits once.
    """

    checkout = models.OneToOneField(CheckoutSession, on_delete=models.PROTECT, related_name="payment")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payments")
    credits = models.BigIntegerField()
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True, default="")
    # The largest figures Stripe reported so far (its refund events carry the charge's running
    # total, so a late or repeated event never lowers them).
    amount_refunded = models.BigIntegerField(default=0)
    amount_disputed = models.BigIntegerField(default=0)
    # Credits taken back so far for refunds and disputes: the refunded share of `credits`.
    credits_reversed = models.BigIntegerField(default=0)
    # How the charge's dispute closed (a charge has at most one): won gives back what it took
    # (`amount_disputed` back to 0, for good: a late or repeated event of it changes nothing).
    dispute_outcome = models.CharField(max_length=4, choices=DisputeOutcome.choices, blank=True, default="")
    paid_at = models.DateTimeField()

    class Meta:
        ordering = ["-paid_at"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0) & Q(amount__gt=0), name="payment_amounts_positive"),
            models.CheckConstraint(condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount"))
                                   & Q(amount_disputed__gte=0) & Q(amount_disputed__lte=F("amount")),
                                   name="payment_reversals_within_amount"),
            models.CheckConstraint(condition=Q(credits_reversed__gte=0) & Q(credits_reversed__lte=F("credits")),
                                   name="payment_credits_reversed_within_credits"),
            models.CheckConstraint(condition=Q(dispute_outcome__in=["", *DisputeOutcome.values]),
                                   name="payment_dispute_outcome_valid"),
            models.CheckConstraint(condition=~Q(dispute_outcome=DisputeOutcome.WON) | Q(amount_disputed=0),
                                   name="payment_dispute_won_takes_nothing"),
        ]

    def __str__(self) -> str:
        return f"payment of {self.amount_display} for {self.credits} credits ({self.account})"

    @property
    def amount_display(self) -> str:
        return money_display(self.amount, self.currency)

    @property
    def ledger_reference(self) -> str:
        """What the ledger entries of this payment (its grant, its take-backs) carry as reference."""
        return payment_reference(self.checkout.stripe_session_id)


def payment_reference(stripe_session_id: str | None) -> str:
    if not stripe_session_id:  # a paid checkout always has its session's id; never reference "stripe:None"
        raise ValueError("A payment's reference needs its Checkout Session's id.")
    return f"stripe:{stripe_session_id}"


class EventOutcome(models.TextChoices):
    FULFILLED = "fulfilled", "Credits granted"
    ALREADY_FULFILLED = "already_fulfilled", "Already granted by another delivery"
    REVERSED = "reversed", "Credits taken back"
    RESTORED = "restored", "Credits given back"
    NO_CHANGE = "no_change", "Nothing left to change"
    PENDING = "pending", "Waiting for its payment"
    CLOSED = "closed", "Session closed unpaid"
    REPORTED = "reported", "Reported: not honoured"
    IGNORED = "ignored", "Not a type we act on"


class StripeEvent(models.Model):
    """One Stripe event received with a valid signature, and what it did. Events whose signature
    fails are refused before anything is written (and logged). A report (`problem`) is an event
    that should have come with money and was not honoured: an unknown session, an amount or
    currency that does not match, an unpaid session, a refund of an unknown payment."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=EventOutcome.choices)
    problem = models.CharField(max_length=40, blank=True, default="",
                               help_text="Why a reported event was not honoured (a machine code).")
    message = models.TextField(blank=True, default="")
    stripe_object_id = models.CharField(max_length=255, blank=True, default="")
    payment_intent = models.CharField(max_length=255, blank=True, default="", db_index=True)
    checkout = models.ForeignKey(CheckoutSession, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="events")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    data = models.JSONField(default=dict, help_text="The event's object as Stripe sent it.")
    stripe_created_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    deliveries = models.PositiveIntegerField(default=1, help_text="How many times it was delivered.")

    class Meta:
        verbose_name = "Stripe event"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=EventOutcome.values), name="stripe_event_outcome_valid"),
            models.CheckConstraint(condition=Q(outcome=EventOutcome.REPORTED) | Q(problem=""),
                                   name="stripe_event_problem_only_when_reported"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.outcome})"


class LowBalanceEmail(models.Model):
    """One low-balance email: written when a capture crossed the account's threshold (one per
    crossing: credits.services), sent by a task through Resend; one that Resend did not take is
    tried again by a periodic task, a bounded number of times (services.low_balance_emails_retry)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="low_balance_emails")
    to = models.EmailField()
    available = models.BigIntegerField(help_text="Available credits right after the capture.")
    threshold = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # When it was last tried or handed to the sender for another try: the periodic retry
    # (services.low_balance_emails_retry) waits CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS after it.
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True, default="", help_text="Resend's id for the email.")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "low-balance email"
        ordering = ["-created_at", "-id"]
        # The periodic retry's search: the few unsent ones.
        indexes = [models.Index(fields=["created_at"], condition=Q(sent_at__isnull=True),
                                name="low_balance_email_unsent_idx")]

    def __str__(self) -> str:
        return f"low-balance email to {self.to} ({'sent' if self.sent_at else 'not sent'})"


class Shortfall(Account):
    """Accounts that owe a shortfall (refunded or disputed credits already spent), for the admin."""

    class Meta:
        proxy = True
        verbose_name = "shortfall"
