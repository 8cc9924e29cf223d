"""Accounts, the append-only ledger, and holds.

The account row stores two counters, `available` (spendable) and `held` (reserved by active
holds). They change only in the transaction that appends the ledger entry explaining the
change, and each entry records its deltas and the counters after it, so the counters can always
be re-derived from the ledger (`manage.py check_ledger`). CHECK constraints make a negative
counter impossible whatever code path runs; on PostgreSQL a trigger (migration 0002) refuses
UPDATE and DELETE on ledger rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Account(models.Model):
    """The billing unit. Every user has one (a personal account when the user is created)."""

    name = models.CharField(max_length=150)
    available = models.BigIntegerField(default=0, editable=False)
    held = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(available__gte=0), name="account_available_not_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name or f"account {self.pk}"

    @property
    def balance(self) -> int:
        return self.available + self.held


class AccountMember(models.Model):
    """A user's membership: one account per user, several users per account."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="members")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_membership")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "member"

    def __str__(self) -> str:
        return f"{self.user} in {self.account}"


class HoldState(models.TextChoices):
    ACTIVE = "active", "Active"
    CAPTURED = "captured", "Captured"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Hold(models.Model):
    """Credits reserved for one request. Leaves `active` exactly once (see services)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    amount = models.BigIntegerField()
    captured_amount = models.BigIntegerField(default=0)
    state = models.CharField(max_length=10, choices=HoldState.choices, default=HoldState.ACTIVE)
    idempotency_key = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=128, blank=True, default="")
    reference = models.CharField(max_length=200, blank=True, default="")
    rate = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Empty: the hold's owner (a job) always settles it; it never expires by age.")
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="hold_key_unique_per_account"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(condition=Q(captured_amount__gte=0) & Q(captured_amount__lte=F("amount")),
                                   name="hold_captured_within_amount"),
            models.CheckConstraint(condition=Q(state="captured") | Q(captured_amount=0),
                                   name="hold_only_captured_has_captured_amount"),
            models.CheckConstraint(condition=Q(state__in=HoldState.values), name="hold_state_valid"),
            models.CheckConstraint(condition=(Q(state="active") & Q(settled_at__isnull=True))
                                   | (~Q(state="active") & Q(settled_at__isnull=False)),
                                   name="hold_settled_iff_not_active"),
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="hold_state_expiry_idx")]

    def __str__(self) -> str:
        return f"hold {self.pk} ({self.amount}, {self.state})"


class EntryKind(models.TextChoices):
    GRANT = "grant", "Grant"
    HOLD = "hold", "Hold"
    CAPTURE = "capture", "Capture"
    RELEASE = "release", "Release"
    EXPIRE = "expire", "Expiry"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"


class LedgerEntry(models.Model):
    """One change of an account's counters. Never updated or deleted.

    `amount` is the change of the balance (available + held): a grant adds, a capture spends,
    while a hold or a release only moves credits between available and held (amount 0).
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=12, choices=EntryKind.choices)
    amount = models.BigIntegerField()
    available_delta = models.BigIntegerField()
    held_delta = models.BigIntegerField()
    available_after = models.BigIntegerField()
    held_after = models.BigIntegerField()
    hold = models.ForeignKey(Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="entries")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                              related_name="+")
    reason = models.CharField(max_length=500, blank=True, default="")
    reference = models.CharField(max_length=200, blank=True, default="")
    rate = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=EntryKind.values), name="entry_kind_valid"),
            models.CheckConstraint(condition=Q(amount=F("available_delta") + F("held_delta")),
                                   name="entry_amount_is_balance_change"),
            models.CheckConstraint(condition=Q(available_after__gte=0) & Q(held_after__gte=0),
                                   name="entry_counters_not_negative"),
        ]
        indexes = [models.Index(fields=["account", "-id"], name="entry_account_newest_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} ({self.account_id})"

    def save(self, *args, **kwargs):
        # Append-only: the ORM may insert a row, never rewrite one (PostgreSQL's trigger covers raw SQL).
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger entries are append-only.")
