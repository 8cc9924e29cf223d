"""Accounts with their balances (read-only), a grant/adjust form that goes through the ledger
service with the admin as actor, and the ledger and holds read-only; a ledger entry's page links
each rate it was charged at to the catalog version that set it."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from creditgate.audit.admin import version_url
from creditgate.catalog import history as catalog_history
from creditgate.core.errors import ApplicationError
from creditgate.credits import services, team
from creditgate.credits.models import (
    Account,
    AccountMember,
    ApiKey,
    EntryKind,
    Hold,
    Invitation,
    LedgerEntry,
    MemberRole,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AccountMemberInline(admin.TabularInline):
    """The account's members. Adding one is the "Add a member" button (credits.team's rules: one
    account per user, whose own account is kept for them); removing one, roles and hand-overs are
    the Team page's (the API's), which keep an owner on every account."""

    model = AccountMember
    fk_name = "account"
    extra = 0
    fields = ["user", "role", "monthly_cap", "home_account", "joined_at"]
    readonly_fields = ["user", "role", "home_account", "joined_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AddMemberForm(forms.Form):
    user = forms.CharField(label="Username or email")
    role = forms.ChoiceField(choices=MemberRole.choices, initial=MemberRole.MEMBER)
    monthly_cap = forms.IntegerField(required=False, min_value=0, help_text="Credits per month; empty: no cap.")

    def clean_user(self):
        value = self.cleaned_data["user"].strip()
        users = get_user_model().objects.filter(Q(username=value) | Q(email__iexact=value))
        if len(users) != 1:
            raise forms.ValidationError("No user with this username or email." if not users else
                                        "Several users have this email: use the username.")
        return users[0]


class GrantForm(forms.Form):
    kind = forms.ChoiceField(choices=[(EntryKind.GRANT, "Grant (add credits)"),
                                      (EntryKind.ADJUSTMENT, "Adjustment (may be negative)"),
                                      (EntryKind.REFUND, "Refund")])
    amount = forms.IntegerField()
    reason = forms.CharField(max_length=500, help_text="Recorded in the ledger with your name.")


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "balance", "available", "held", "created_at"]
    search_fields = ["name", "members__user__username", "members__user__email"]
    readonly_fields = ["available", "held", "balance", "created_at", "grant_link", "add_member_link"]
    fields = ["name", "balance", "available", "held", "created_at", "grant_link", "add_member_link"]
    inlines = [AccountMemberInline]

    def has_delete_permission(self, request, obj=None):
        return False  # an account with history is kept; PROTECT would refuse anyway

    @admin.display(description="Credits")
    def grant_link(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return format_html('<a class="button" href="{}">Grant or adjust credits</a>',
                           reverse("admin:credits_account_grant", args=[obj.pk]))

    @admin.display(description="Members")
    def add_member_link(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return format_html('<a class="button" href="{}">Add a member</a>',
                           reverse("admin:credits_account_add_member", args=[obj.pk]))

    def get_urls(self):
        return [path("<int:account_id>/grant/", self.admin_site.admin_view(self.grant_view),
                     name="credits_account_grant"),
                path("<int:account_id>/add-member/", self.admin_site.admin_view(self.add_member_view),
                     name="credits_account_add_member"), *super().get_urls()]

    def add_member_view(self, request, account_id):
        """An existing user joins this account (credits.team.member_join: their own account is
        kept, with its credits, and given back when they leave)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        account = get_object_or_404(Account, pk=account_id)
        form = AddMemberForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            user = form.cleaned_data["user"]
            try:
                team.member_join(user=user, account=account, role=form.cleaned_data["role"],
                                 monthly_cap=form.cleaned_data["monthly_cap"])
            except ApplicationError as exc:
                form.add_error("user", exc.message)
            else:
                self.message_user(request, f"{user} is now a {form.cleaned_data['role']} of {account}.",
                                  messages.SUCCESS)
                return redirect("admin:credits_account_change", account.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "account": account,
                   "form": form, "title": f"Add a member: {account}"}
        return TemplateResponse(request, "admin/credits/account/add_member.html", context)

    def grant_view(self, request, account_id):
        if not self.has_change_permission(request):
            raise PermissionDenied
        account = get_object_or_404(Account, pk=account_id)
        form = GrantForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.credits_grant(account=account, amount=form.cleaned_data["amount"], actor=request.user,
                                       reason=form.cleaned_data["reason"], kind=form.cleaned_data["kind"])
            except ApplicationError as exc:
                form.add_error("amount", exc.message)
            else:
                self.message_user(request, f"Recorded {form.cleaned_data['kind']} of {form.cleaned_data['amount']} "
                                           f"credits for {account}.", messages.SUCCESS)
                return redirect("admin:credits_account_change", account.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "account": account,
                   "form": form, "title": f"Grant or adjust credits: {account}"}
        return TemplateResponse(request, "admin/credits/account/grant.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "account", "kind", "amount", "available_after", "held_after", "actor",
                    "reason", "reference"]
    list_filter = ["kind"]
    search_fields = ["account__name", "reference", "reason"]
    list_select_related = ["account", "actor"]
    readonly_fields = ["rate_origin"]

    @admin.display(description="Rate set by")
    def rate_origin(self, entry: LedgerEntry):
        """Each catalog rate in the entry's snapshot, linked to the history version that set it."""
        # A job's entries are priced when its hold is placed: the capture charges the rate held.
        priced_at = entry.hold.created_at if entry.hold is not None else entry.created_at
        origins = catalog_history.rate_origins(rate=entry.rate, at=priced_at)
        if not origins:
            return "—"
        lines = []
        for origin in origins:
            where = f" ({origin.tier_label} tier)" if origin.tier else ""
            rate = f"{origin.model_name}{where}: {origin.field.replace('_', ' ')} {origin.price}"
            if origin.introduced_by is None:
                lines.append(format_html("{} (the configuration history does not reach back to {})", rate,
                                         priced_at.strftime("%Y-%m-%d %H:%M")))
                continue
            version = origin.introduced_by
            when = version.history_date.strftime("%Y-%m-%d %H:%M")
            if version.history_user:
                how = f"set on {when} by {version.history_user.get_username()}"
            elif version.history_change_reason:  # e.g. the baseline: "recorded when the history began"
                how = f"{version.history_change_reason} ({when})"
            else:
                how = f"set on {when} by a command or shell"
            object_id = origin.object_id
            assert object_id is not None  # it is introduced_by's
            url = version_url(object_type=ContentType.objects.get_for_model(origin.tracked_model),
                              object_id=object_id, history_id=version.history_id)
            lines.append(format_html('{}, {}: <a href="{}">version #{}</a>', rate, how, url, version.history_id))
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Members' API keys: what they are and when they were used; the key itself is never stored.
    Revoking (final) is an action; owners do the rest on the team page."""

    list_display = ["name", "hint", "member", "monthly_cap", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "member__user__username", "member__account__name"]
    list_select_related = ["member__user", "member__account"]
    exclude = ["hashed_key"]
    actions = ["revoke"]

    @admin.display(description="Key starts with")
    def hint(self, key: ApiKey) -> str:
        return f"{services.API_KEY_MARKER}{key.prefix}…"

    @admin.action(description="Revoke the selected keys (final)")
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "account", "amount", "captured_amount", "state", "user", "api_key",
                    "spend_month", "reference", "expires_at", "settled_at"]
    list_filter = ["state"]
    search_fields = ["account__name", "reference", "idempotency_key"]
    list_select_related = ["account"]


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    """Invitations to join an account (owners send and revoke them on the Team page)."""

    list_display = ["email", "account", "role", "monthly_cap", "invited_by", "created_at", "expires_at",
                    "accepted_at", "revoked_at"]
    list_filter = ["role"]
    search_fields = ["email", "account__name"]
    exclude = ["token_hash"]
