"""Billing in the admin: the packs (editable, with their history), and read-only views of
checkout sessions, payments (with what refunds and disputes took back), Stripe events (the
reports among them), low-balance emails, and the accounts that owe a shortfall."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from simple_history.admin import SimpleHistoryAdmin

from creditgate.billing import services
from creditgate.billing.models import (
    CheckoutSession,
    CreditPack,
    EventOutcome,
    LowBalanceEmail,
    Payment,
    Shortfall,
    StripeEvent,
    money_display,
)
from creditgate.credits.admin import ReadOnlyAdmin
from creditgate.credits.models import EntryKind


def _ledger_link(text: str, **filters) -> str:
    return format_html('<a href="{}?{}">{}</a>', reverse("admin:credits_ledgerentry_changelist"),
                       urlencode(filters), text)


@admin.register(CreditPack)
class CreditPackAdmin(SimpleHistoryAdmin):
    list_display = ["name", "credits", "price", "is_active", "position"]
    list_filter = ["is_active", "currency"]
    list_editable = ["is_active", "position"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    fields = ["name", "credits", "price_amount", "currency", "is_active", "position", "created_at", "updated_at"]

    @admin.display(description="Price", ordering="price_amount")
    def price(self, obj: CreditPack) -> str:
        return obj.price_display

    def has_delete_permission(self, request, obj=None):
        # A pack someone started to buy is kept (PROTECT); deactivate it instead.
        return obj is None or not obj.checkout_sessions.exists()


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "pack", "credits", "price", "status", "stripe_session_id", "paid_at"]
    list_filter = ["status"]
    search_fields = ["stripe_session_id", "account__name", "id"]
    list_select_related = ["account", "pack"]

    @admin.display(description="Price", ordering="amount")
    def price(self, obj: CheckoutSession) -> str:
        return obj.amount_display


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["paid_at", "account", "credits", "paid", "refunded", "disputed", "credits_reversed", "entries"]
    search_fields = ["stripe_payment_intent_id", "stripe_charge_id", "checkout__stripe_session_id", "account__name"]
    list_select_related = ["account", "checkout"]

    @admin.display(description="Paid", ordering="amount")
    def paid(self, obj: Payment) -> str:
        return obj.amount_display

    @admin.display(description="Refunded")
    def refunded(self, obj: Payment) -> str:
        return money_display(obj.amount_refunded, obj.currency) if obj.amount_refunded else "—"

    @admin.display(description="Disputed")
    def disputed(self, obj: Payment) -> str:
        if obj.dispute_outcome:  # closed: won (given back, nothing disputed any more) or lost
            amount = money_display(obj.amount_disputed, obj.currency) + ", " if obj.amount_disputed else ""
            return f"{amount}{obj.get_dispute_outcome_display().lower()}"
        return money_display(obj.amount_disputed, obj.currency) if obj.amount_disputed else "—"

    @admin.display(description="Ledger")
    def entries(self, obj: Payment) -> str:
        return _ledger_link("entries", reference=obj.ledger_reference)


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Reported or waiting")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(outcome__in=[EventOutcome.REPORTED, EventOutcome.PENDING])
        return queryset


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "type", "outcome", "problem", "message", "deliveries", "checkout", "payment"]
    list_filter = [NeedsAttentionFilter, "outcome", "problem", "type"]
    search_fields = ["event_id", "stripe_object_id", "payment_intent", "checkout__stripe_session_id"]
    list_select_related = ["checkout", "payment"]


@admin.register(LowBalanceEmail)
class LowBalanceEmailAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "to", "available", "threshold", "sent_at", "attempts", "last_attempt_at",
                    "last_error"]
    list_filter = [("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["to", "account__name", "message_id"]
    list_select_related = ["account"]
    actions = ["send_again"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # the list and its action; a row itself stays read-only

    @admin.action(description="Send the unsent ones now")
    def send_again(self, request, queryset):
        unsent = list(queryset.filter(sent_at__isnull=True).values_list("pk", flat=True))
        for pk in unsent:
            services.low_balance_email_hand_over(email_id=pk)
        self.message_user(request, f"{len(unsent)} email(s) handed to the sender.", messages.SUCCESS)


@admin.register(Shortfall)
class ShortfallAdmin(ReadOnlyAdmin):
    """Accounts owing credits that a refund or dispute took back after they were spent. They can
    place no new hold; the next grant (a purchase, or one from the account's page) pays it first."""

    list_display = ["name", "shortfall", "available", "held", "taken_back", "account_link"]
    search_fields = ["name", "members__user__username", "members__user__email"]
    ordering = ["-shortfall"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(shortfall__gt=0)

    @admin.display(description="Entries")
    def taken_back(self, obj) -> str:
        return _ledger_link("take-backs", account__id__exact=obj.pk, kind__exact=EntryKind.CLAWBACK)

    @admin.display(description="Account")
    def account_link(self, obj) -> str:
        return format_html('<a href="{}">grant or adjust</a>', reverse("admin:credits_account_change", args=[obj.pk]))
