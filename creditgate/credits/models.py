"""Accounts, the append-only ledger, and holds.

The account row stores two counters, `available` (spendable) and `held` (reserved by active
holds). They change only in the transaction that appends the ledger entry explaining the
change, and each entry records its deltas and the counters after it, so the counters can always
be re-derived from the ledger (`manage.py check_ledger`). CHECK constraints make a negative
counter impossible whatever code path runs; on PostgreSQL a trigger (migration 0002) refuses
UPDATE and DELETE on ledger rows.

A third counter, `shortfall`, holds credits a refund or a dispute took back beyond what was
available (they had been spent): it is owed, never a negative balance. It too changes only with
the entry that explains it (`shortfall_delta`), so it re-derives from the ledger like the others.

Members' monthly spending follows the same rule: a hold placed for a member (and the API key the
request used) also adds to that member's `MemberSpend` row for the month (and the key's
`ApiKeySpend`), in the hold's own transaction and with a conditional UPDATE against the cap; its
settlement moves the amount from held to spent (captured) or drops it (released, expired). So
`held` is always the sum of the active holds and `spent` the sum of what they captured
(`check_ledger` verifies both).
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
    shortfall = models.BigIntegerField(
        default=0, db_default=0, editable=False,
        help_text="Credits a refund or dispute took back after they were spent: owed. The next grant pays it "
                  "first; no new hold is placed while it is above 0.")
    # The owner's low-balance email (billing sends it): when a capture leaves `available` below
    # the threshold while the alert is armed, the capture's transaction disarms it (so one
    # crossing sends one email); a grant that leaves `available` at or above it re-arms it.
    low_balance_threshold = models.BigIntegerField(null=True, blank=True, editable=False)
    low_balance_email = models.EmailField(blank=True, default="", db_default="", editable=False)
    low_balance_armed = models.BooleanField(default=False, db_default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(available__gte=0), name="account_available_not_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_not_negative"),
            models.CheckConstraint(condition=Q(shortfall__gte=0), name="account_shortfall_not_negative"),
            models.CheckConstraint(condition=Q(low_balance_threshold__isnull=True) | Q(low_balance_threshold__gt=0),
                                   name="account_low_balance_threshold_positive"),
        ]

    def __str__(self) -> str:
        return self.name or f"account {self.pk}"

    @property
    def balance(self) -> int:
        return self.available + self.held


class MemberRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


class AccountMember(models.Model):
    """A user's membership: one account per user, several users per account.

    Owners manage the account (members' caps and roles, API keys, webhook endpoints); every member
    spends its credits, within the member's monthly cap when one is set.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="members")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_membership")
    role = models.CharField(max_length=10, choices=MemberRole.choices, default=MemberRole.MEMBER)
    monthly_cap = models.BigIntegerField(
        null=True, blank=True,
        help_text="Credits this member may use per calendar month (spent plus held by running jobs); "
                  "empty: no cap.")
    joined_at = models.DateTimeField(auto_now_add=True)
    # One account per user: joining a team moves the membership. The account the user was alone
    # in before (their own, with its credits and history) is kept here and given back when they
    # leave or are removed (credits.team).
    home_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The user's own account, kept while they are a member of another one; theirs again when they leave.")

    class Meta:
        verbose_name = "member"
        constraints = [
            models.CheckConstraint(condition=Q(role__in=MemberRole.values), name="member_role_valid"),
            models.CheckConstraint(condition=Q(monthly_cap__isnull=True) | Q(monthly_cap__gte=0),
                                   name="member_cap_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.account}"

    @property
    def is_owner(self) -> bool:
        return self.role == MemberRole.OWNER


class ApiKey(models.Model):
    """A member's named API key (`Authorization: Bearer cg_<prefix>.<secret>`).

    Only a hash of the key is stored (djangorestframework-api-key's SHA-512 key hasher); the key
    itself is shown once, when it is made. `prefix` finds the row, then the hash is compared in
    constant time. A revoked key stays (its holds and spending refer to it) and never works again.
    """

    member = models.ForeignKey(AccountMember, on_delete=models.PROTECT, related_name="api_keys")
    # The account the key was made in: a membership moves with its user when they join or leave a
    # team (their keys are revoked then), and the key stays listed where it was used.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=200, editable=False)
    monthly_cap = models.BigIntegerField(
        null=True, blank=True,
        help_text="Credits requests made with this key may use per calendar month; empty: only the member's cap.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(monthly_cap__isnull=True) | Q(monthly_cap__gte=0),
                                   name="api_key_cap_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (cg_{self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


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
    # Who spends it: the member (and the API key) whose monthly spending the hold counts in, and
    # that month (the month it was placed, in CREDITGATE_SPENDING_TIME_ZONE). Empty: nobody's.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                             related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, null=True, blank=True, related_name="holds")
    spend_month = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Empty: the hold's owner (a job) always settles it; "
                                                "it never expires by age.")
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
            models.CheckConstraint(condition=Q(user__isnull=True, spend_month__isnull=True, api_key__isnull=True)
                                   | Q(user__isnull=False, spend_month__isnull=False),
                                   name="hold_spender_has_month"),
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="hold_state_expiry_idx")]

    def __str__(self) -> str:
        return f"hold {self.pk} ({self.amount}, {self.state})"


class MemberSpend(models.Model):
    """A member's credits in one calendar month of one account: `held` by its active holds,
    `spent` by their captures. Changed only with the hold it explains, in the same transaction
    (credits.services); `manage.py check_ledger` re-derives both from the holds."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    month = models.DateField(help_text="The month's first day.")
    held = models.BigIntegerField(default=0)
    spent = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "member's monthly spending"
        verbose_name_plural = "members' monthly spending"
        constraints = [
            models.UniqueConstraint(fields=["account", "user", "month"], name="member_spend_unique"),
            models.CheckConstraint(condition=Q(held__gte=0) & Q(spent__gte=0), name="member_spend_not_negative"),
        ]

    def __str__(self) -> str:
        return f"account {self.account_id}, user {self.user_id}, {self.month:%Y-%m}"


class ApiKeySpend(models.Model):
    """The same for one API key: what requests made with it hold and spent in a month."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    month = models.DateField(help_text="The month's first day.")
    held = models.BigIntegerField(default=0)
    spent = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "API key's monthly spending"
        verbose_name_plural = "API keys' monthly spending"
        constraints = [
            models.UniqueConstraint(fields=["api_key", "month"], name="api_key_spend_unique"),
            models.CheckConstraint(condition=Q(held__gte=0) & Q(spent__gte=0), name="api_key_spend_not_negative"),
        ]

    def __str__(self) -> str:
        return f"API key {self.api_key_id}, {self.month:%Y-%m}"


class EntryKind(models.TextChoices):
    GRANT = "grant", "Grant"
    HOLD = "hold", "Hold"
    CAPTURE = "capture", "Capture"
    RELEASE = "release", "Release"
    EXPIRE = "expire", "Expiry"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"
    # A purchase refunded or disputed: the credits taken back (what was available; the rest owed).
    CLAWBACK = "clawback", "Taken back"
    # Credits of a grant (or available ones) that paid what a clawback could not take.
    SHORTFALL = "shortfall", "Shortfall paid"


class LedgerEntry(models.Model):
    """One change of an account's counters. Never updated or deleted.

    `amount` is the change of the balance (available + held): a grant adds, a capture spends,
    while a hold or a release only moves credits between available and held (amount 0).
    `shortfall_delta` is the change of the account's shortfall: a clawback adds what it could not
    take, a shortfall payment removes what it paid; every other entry leaves it alone.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=12, choices=EntryKind.choices)
    amount = models.BigIntegerField()
    available_delta = models.BigIntegerField()
    held_delta = models.BigIntegerField()
    available_after = models.BigIntegerField()
    held_after = models.BigIntegerField()
    # db_default: the ledger's own INSERT statements (services) name only the columns they set.
    shortfall_delta = models.BigIntegerField(default=0, db_default=0)
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
            # A clawback takes (amount <= 0) and may leave some owed; a shortfall payment spends
            # exactly what it pays off; nothing else touches the shortfall.
            models.CheckConstraint(
                condition=(Q(kind=EntryKind.CLAWBACK) & Q(amount__lte=0) & Q(held_delta=0) & Q(shortfall_delta__gte=0))
                | (Q(kind=EntryKind.SHORTFALL) & Q(shortfall_delta__lt=0) & Q(amount=F("shortfall_delta"))
                   & Q(held_delta=0))
                | (~Q(kind__in=[EntryKind.CLAWBACK, EntryKind.SHORTFALL]) & Q(shortfall_delta=0)),
                name="entry_shortfall_delta_by_kind"),
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


class InvitationState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class Invitation(models.Model):
    """An owner's invitation to join their account, sent by email (credits.team).

    The emailed link holds a random token; only its SHA-256 is stored. It is accepted once, by
    whoever is logged in with the link, before `expires_at`, unless an owner revoked it. The role
    and monthly cap are the owner's, set when inviting, and become the new member's.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=MemberRole.choices, default=MemberRole.MEMBER)
    monthly_cap = models.BigIntegerField(null=True, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=MemberRole.values), name="invitation_role_valid"),
            models.CheckConstraint(condition=Q(monthly_cap__isnull=True) | Q(monthly_cap__gte=0),
                                   name="invitation_cap_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.account}"

    def state(self, now) -> str:
        if self.accepted_at:
            return InvitationState.ACCEPTED
        if self.revoked_at:
            return InvitationState.REVOKED
        if self.expires_at <= now:
            return InvitationState.EXPIRED
        return InvitationState.PENDING
