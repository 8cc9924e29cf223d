"""The catalog's admin: "AI models", "Image tiers", "Providers" and the settings singleton.

What needs another app's knowledge is added by that app, which extends these classes and registers
its subclass in their place (the catalog sits below both): providers.admin adds the circuit
breakers, the providers' model-list check and "Test key"; reports.admin adds the cost drift warning.

Thin: rules are database constraints (shown as form errors through model validation) and
services; the admin only lays them out. An API key is taken through a write-only field and shown
only as its hint (`sk-…9f2c`); the stored ciphertext is never rendered.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters
from simple_history.admin import SimpleHistoryAdmin
from simple_history.manager import SIMPLE_HISTORY_REVERSE_ATTR_NAME

from creditgate.catalog import selectors, services
from creditgate.catalog.models import (
    AIModelConfig,
    GlobalIntegrationSettings,
    ImageTier,
    IntegrationProvider,
    ModelType,
    ProviderListing,
    QualityTier,
)
from creditgate.core.errors import ApplicationError

_INTEGRITY_MESSAGE = ("The change was refused by a database rule (probably a concurrent change): "
                      "nothing was saved. Reload the page and try again.")


def _retirement_text(model: AIModelConfig, today: dt.date) -> str | None:
    """"RETIRED" / "retires in 12 days" for an active model near or past its date, else None."""
    if not model.is_active or model.retires_on is None:
        return None
    days = (model.retires_on - today).days
    if days <= 0:
        return "RETIRED"
    if days <= settings.CREDITGATE_RETIREMENT_WARNING_DAYS:
        return "retires tomorrow" if days == 1 else f"retires in {days} days"
    return None


_FLAG = '<strong class="cg-flag">{}</strong>'


def _lifecycle_label(model: AIModelConfig):
    """What the provider said at the last lifecycle check (manage.py check_model_lifecycle)."""
    lifecycle = getattr(model, "lifecycle", None)
    if lifecycle is None:
        return "not checked"
    if lifecycle.status == ProviderListing.LISTED:
        return "offered"
    if lifecycle.status == ProviderListing.GONE:
        return format_html(_FLAG, f"GONE since {lifecycle.since}")
    return format_html(_FLAG, f"retiring {lifecycle.shutdown_on or '(no date)'}")


class _RefuseIntegrityErrorsMixin(admin.ModelAdmin):
    """Model validation catches every constraint before saving; a race between two admins can
    still reach the database. That is a message, not a 500. (Mixed in before SimpleHistoryAdmin,
    itself a ModelAdmin.)"""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except IntegrityError:
            self.message_user(request, _INTEGRITY_MESSAGE, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class TierModelsInline(admin.TabularInline):
    """A tier's models in order of service: the operator orders them here by priority."""

    model = AIModelConfig
    fk_name = "quality_tier"
    fields = ["priority", "model_name", "provider", "is_active", "retires_on", "provider_says"]
    readonly_fields = ["model_name", "provider", "is_active", "retires_on", "provider_says"]
    ordering = ["-is_active", "priority", "model_name"]
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = "model of this tier"
    verbose_name_plural = "Models of this tier, in order of service (active ones by priority, lowest first)"

    def has_add_permission(self, request, obj=None):
        return False  # a model is added on the AI models page, where all its fields are

    @admin.display(description="Provider says")
    def provider_says(self, obj: AIModelConfig):
        return _lifecycle_label(obj)


@admin.register(ImageTier)
class ImageTierAdmin(_RefuseIntegrityErrorsMixin, SimpleHistoryAdmin):
    """Tier prices, one per tier, whichever of its models serves an image (also editable above the
    AI models list)."""

    class Media:
        css = {"all": ["core/admin.css"]}

    list_display = ["__str__", "credits_per_image", "models_in_order"]
    list_display_links = ["__str__"]
    list_editable = ["credits_per_image"]
    readonly_fields = ["updated_at"]
    fields = ["tier", "credits_per_image", "updated_at"]
    inlines = [TierModelsInline]

    def get_readonly_fields(self, request, obj=None):
        return ["tier", "updated_at"] if obj else ["updated_at"]

    def has_add_permission(self, request):
        return ImageTier.objects.count() < len(QualityTier.values)

    def has_delete_permission(self, request, obj=None):
        return False  # its models would lose their price

    @admin.display(description="Active models, in order of service")
    def models_in_order(self, obj: ImageTier) -> str:
        names = [m.model_name for m in sorted((m for m in obj.models.all() if m.is_active),
                                              key=lambda m: (m.priority, m.model_name))]
        return " → ".join(names) or "— (no active model: the tier is not offered)"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("models")


class TierPricesForm(forms.Form):
    """Every tier's price, on the AI models page: the design note's two configuration pages (AI
    models, Providers) are enough to change what users pay."""

    def __init__(self, *args, tiers: list[ImageTier], **kwargs):
        super().__init__(*args, **kwargs)
        self.tiers = tiers
        for tier in tiers:
            self.fields[tier.tier] = forms.IntegerField(
                label=str(tier), min_value=1, initial=tier.credits_per_image,
                widget=forms.NumberInput(attrs={"class": "vIntegerField tier-price-input"}))

    def rows(self):
        """(tier, bound field, its active models in order of service) per tier."""
        for tier in self.tiers:
            models = sorted((m for m in tier.models.all() if m.is_active), key=lambda m: (m.priority, m.model_name))
            yield tier, self[tier.tier], " → ".join(m.display_name or m.model_name for m in models)


@admin.register(AIModelConfig)
class AIModelConfigAdmin(_RefuseIntegrityErrorsMixin, SimpleHistoryAdmin):
    class Media:
        css = {"all": ["core/admin.css"]}

    # Two facts per column where they belong together, and short headers: every column, "Active"
    # and "Retirement" included, fits beside the navigation and the filters at 1400 px.
    list_display = ["names", "serves", "provider", "credits", "default", "active", "retirement"]
    list_display_links = ["names"]
    list_filter = ["model_type", "provider", "quality_tier", "is_active", "is_default"]
    search_fields = ["model_name", "display_name"]
    list_select_related = ["provider", "quality_tier", "lifecycle"]
    actions = ["make_default", "adopt_provider_retirement"]
    readonly_fields = ["updated_at", "tier_price"]
    fieldsets = [
        (None, {"fields": ["model_name", "display_name", "model_type", "provider", "is_active", "is_default"]}),
        ("What users pay (credits)", {"fields": ["quality_tier", "tier_price", "priority", "tokens_per_credit"],
                                      "description": "Image models: a tier; every model of a tier is sold at "
                                                     "the tier's price (set above the AI models list, or on the "
                                                     "Image tiers page), and its "
                                                     "active models serve it by priority, lowest first. Text "
                                                     "models: tokens per credit, no tier; the active text models "
                                                     "other than the default are its backups, by priority."}),
        ("What we pay (USD, for margin reports)",
         {"fields": ["usd_per_image", "input_usd_per_1m_tokens", "output_usd_per_1m_tokens"]}),
        ("How to call it", {"fields": ["sizes", "max_images_per_call", "optional_params", "request_defaults",
                                       "max_output_tokens", "retires_on", "notes", "updated_at"]}),
    ]

    @admin.display(description="Model", ordering="model_name")
    def names(self, obj: AIModelConfig):
        return format_html('{}<br><small class="cg-quiet">{}</small>',
                           obj.model_name, obj.display_name)

    @admin.display(description="Serves", ordering="quality_tier")
    def serves(self, obj: AIModelConfig):
        """What it serves, and its priority there (lowest first): its tier's order, or the text backups'."""
        if obj.model_type == ModelType.IMAGE:
            what = f"{obj.quality_tier} images" if obj.quality_tier else "Images (no tier)"
        else:
            what = obj.get_model_type_display()
        if obj.model_type == ModelType.TEXT and obj.is_default:
            return what
        return format_html('{}<br><small class="cg-quiet">priority {}</small>', what,
                           obj.priority)

    @admin.display(description="Default", boolean=True, ordering="is_default")
    def default(self, obj: AIModelConfig) -> bool:
        return obj.is_default

    @admin.display(description="Active", boolean=True, ordering="is_active")
    def active(self, obj: AIModelConfig) -> bool:
        return obj.is_active

    @admin.display(description="Tier price")
    def tier_price(self, obj: AIModelConfig):
        tier = obj.quality_tier
        if tier is None:
            return "—"
        url = reverse("admin:catalog_aimodelconfig_changelist") + "#tier-prices"
        return format_html('{} credit{} per image (<a href="{}">change the {} tier\'s price</a>)',
                           tier.credits_per_image, "" if tier.credits_per_image == 1 else "s", url, tier)

    @admin.display(description="Credits")
    def credits(self, obj: AIModelConfig) -> str:
        if obj.model_type == ModelType.IMAGE and obj.credits_per_image is not None:
            return f"{obj.credits_per_image} / image"
        if obj.model_type == ModelType.TEXT and obj.tokens_per_credit is not None:
            return f"1 / {obj.tokens_per_credit} tokens"
        return "—"

    @admin.display(description="Retirement", ordering="retires_on")
    def retirement(self, obj: AIModelConfig):
        """The catalog's retirement date, and under it what the provider said at the last lifecycle check."""
        warning = _retirement_text(obj, timezone.localdate())
        if obj.retires_on is None:
            ours = "—"
        elif warning is None:
            ours = obj.retires_on.isoformat()
        else:
            ours = format_html('{} ' + _FLAG, obj.retires_on.isoformat(), warning)
        return format_html('{}<br><small class="cg-quiet">provider: {}</small>', ours,
                           _lifecycle_label(obj))

    def get_urls(self):
        return [path("tier-prices/", self.admin_site.admin_view(self.tier_prices_view),
                     name="catalog_aimodelconfig_tier_prices"), *super().get_urls()]

    def _tier_prices_form(self, data=None) -> TierPricesForm:
        return TierPricesForm(data, tiers=list(ImageTier.objects.prefetch_related("models")))

    def tier_prices_view(self, request):
        """POST from the tier prices box above the list: set every changed tier's price."""
        back = HttpResponseRedirect(reverse("admin:catalog_aimodelconfig_changelist"))
        if request.method != "POST" or not self.has_change_permission(request):
            return back
        form = self._tier_prices_form(request.POST)
        if not form.is_valid():
            for field, errors in form.errors.items():
                label = form.fields[field].label if field in form.fields else field
                self.message_user(request, f"{label}: {' '.join(str(e) for e in errors)} Nothing was saved.",
                                  level=messages.ERROR)
            return back
        try:
            changed = services.tier_prices_set(prices=form.cleaned_data)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return back
        if not changed:
            self.message_user(request, "No tier price changed.", level=messages.INFO)
        for tier in changed:
            self.message_user(request, f"The {QualityTier(tier).label} tier now costs "
                                       f"{form.cleaned_data[tier]} credit{'' if form.cleaned_data[tier] == 1 else 's'} "
                                       f"per image.", level=messages.SUCCESS)
        return back

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "tier_prices_form": self._tier_prices_form(),
                         "tier_prices_editable": self.has_change_permission(request)}
        if request.method == "GET":
            self.changelist_warnings(request)
        return super().changelist_view(request, extra_context)

    def changelist_warnings(self, request) -> None:
        """The messages above the list: tiers at risk, models retiring (apps that extend this admin add theirs)."""
        today = timezone.localdate()
        for risk in selectors.services_at_risk(within_days=settings.CREDITGATE_RETIREMENT_WARNING_DAYS):
            self.message_user(request, risk.message, level=messages.ERROR)
        for model in selectors.models_retiring(within_days=settings.CREDITGATE_RETIREMENT_WARNING_DAYS
                                               ).select_related("provider", "quality_tier"):
            what = (f"{model} ({model.model_name}), a model of the {model.quality_tier} tier,"
                    if model.quality_tier else
                    f"The {model.get_model_type_display().lower()} model {model} ({model.model_name})")
            assert model.retires_on is not None  # models_retiring: models with a retirement date
            when = ("has retired" if model.retires_on <= today
                    else f"retires in {(model.retires_on - today).days} days")
            self.message_user(request, f"{what[0].upper()}{what[1:]} {when} ({model.retires_on}).",
                              level=messages.WARNING)

    @admin.action(description="Adopt the provider's announced retirement date")
    def adopt_provider_retirement(self, request, queryset):
        for model in queryset.select_related("lifecycle"):
            try:
                services.model_adopt_provider_retirement(model=model)
            except ApplicationError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
            else:
                self.message_user(request, f"{model.model_name} retires on {model.retires_on}: it is not served "
                                           f"from that day.", level=messages.SUCCESS)

    @admin.action(description="Make default (of its type)")
    def make_default(self, request, queryset):
        by_type: dict[str, list[AIModelConfig]] = defaultdict(list)
        for model in queryset:
            by_type[model.model_type].append(model)
        for model_type, models in by_type.items():
            if len(models) > 1:
                self.message_user(request, f"Select one {model_type} model to make default, not {len(models)}.",
                                  level=messages.ERROR)
                continue
            model = models[0]
            try:
                services.model_make_default(model=model)
            except ApplicationError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
            except IntegrityError:
                self.message_user(request, _INTEGRITY_MESSAGE, level=messages.ERROR)
            else:
                self.message_user(request, f"{model} is now the default {model_type} model.", level=messages.SUCCESS)


class ProviderForm(forms.ModelForm):
    new_api_key = forms.CharField(
        label="New API key", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored key. Encrypted on save and never shown again.")
    clear_api_key = forms.BooleanField(label="Clear the stored key", required=False)
    new_signing_secret = forms.CharField(
        label="New signing secret", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stripe only: the webhook endpoint's signing secret (whsec_…). Leave empty to keep the stored "
                  "one. Encrypted on save and never shown again.")
    clear_signing_secret = forms.BooleanField(label="Clear the stored signing secret", required=False)
    base_url = forms.URLField(required=False, assume_scheme="https",
                              help_text=IntegrationProvider._meta.get_field("base_url").help_text)

    class Meta:
        model = IntegrationProvider
        fields = ["provider_id", "display_name", "is_active", "base_url"]

    def clean_new_api_key(self) -> str:
        try:
            return services.api_key_normalize(self.cleaned_data.get("new_api_key", ""))
        except ApplicationError as exc:
            raise ValidationError(exc.message) from None

    def clean_new_signing_secret(self) -> str:
        try:
            return services.api_key_normalize(self.cleaned_data.get("new_signing_secret", ""),
                                              field="signing_secret", what="a signing secret")
        except ApplicationError as exc:
            raise ValidationError(exc.message) from None

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns
        if cleaned.get("new_api_key") and cleaned.get("clear_api_key"):
            raise ValidationError("Either enter a new key or clear the stored one, not both.")
        if cleaned.get("new_signing_secret") and cleaned.get("clear_signing_secret"):
            raise ValidationError("Either enter a new signing secret or clear the stored one, not both.")
        return cleaned


@admin.register(IntegrationProvider)
class IntegrationProviderAdmin(_RefuseIntegrityErrorsMixin, SimpleHistoryAdmin):
    form = ProviderForm
    list_display = ["provider_id", "display_name", "is_active", "stored_key", "base_url"]
    list_filter = ["is_active"]

    # An error report (a 500 mailed to the admins, a debug page) must not carry the posted key.
    @method_decorator(sensitive_post_parameters("new_api_key", "new_signing_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_fields(self, request, obj=None):
        return ["provider_id", "display_name", "is_active", "base_url", "stored_key", "new_api_key",
                "clear_api_key", "stored_signing_secret", "new_signing_secret", "clear_signing_secret"]

    def get_readonly_fields(self, request, obj=None):
        # The primary key: changing it would create another provider, not rename this one.
        stored = ["stored_key", "stored_signing_secret"]
        return [*stored, "provider_id"] if obj else stored

    @admin.display(description="Stored key")
    def stored_key(self, obj: IntegrationProvider) -> str:
        if getattr(obj, SIMPLE_HISTORY_REVERSE_ATTR_NAME, None) is not None:
            # A past version (the history's page): simple_history would fill the columns it does not
            # keep from today's row; say so instead of showing today's hint as the past one.
            return "not kept in the history (only whether it was replaced or cleared)"
        return obj.api_key_hint or ("(set)" if obj.has_key else "—")

    @admin.display(description="Stored signing secret")
    def stored_signing_secret(self, obj: IntegrationProvider) -> str:
        if getattr(obj, SIMPLE_HISTORY_REVERSE_ATTR_NAME, None) is not None:
            return "not kept in the history (only whether it was replaced or cleared)"
        return obj.signing_secret_hint or ("(set)" if obj.has_signing_secret else "—")

    def set_history_delta_changes(self, request, historical_records, foreign_keys_are_objs=True):
        # The key is not a column of the history; what happened to it is (api_key_change).
        super().set_history_delta_changes(request, historical_records, foreign_keys_are_objs)
        for record in historical_records:
            if record.api_key_change:
                record.history_delta_changes = [*getattr(record, "history_delta_changes", []),
                                                {"field": "API key", "old": "—",
                                                 "new": record.get_api_key_change_display()}]
            if record.signing_secret_change:
                record.history_delta_changes = [*getattr(record, "history_delta_changes", []),
                                                {"field": "Signing secret", "old": "—",
                                                 "new": record.get_signing_secret_change_display()}]

    def save_model(self, request, obj, form, change):
        obj._history_user = request.user
        data = form.cleaned_data
        # None: unchanged; "": cleared.
        api_key = "" if data.get("clear_api_key") else (data.get("new_api_key") or None)
        secret = "" if data.get("clear_signing_secret") else (data.get("new_signing_secret") or None)
        if api_key is None and secret is None:
            super().save_model(request, obj, form, change)
        else:
            # One save for the form's fields and the secrets: one version in the configuration history.
            services.provider_update_secrets(provider=obj, api_key=api_key, signing_secret=secret, save_all_fields=True)

@admin.register(GlobalIntegrationSettings)
class GlobalIntegrationSettingsAdmin(_RefuseIntegrityErrorsMixin, SimpleHistoryAdmin):
    """One row: the list page opens it; it can be neither added twice nor deleted."""

    readonly_fields = ["updated_at"]

    def has_add_permission(self, request):
        return not GlobalIntegrationSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        row = selectors.global_settings_get()
        return HttpResponseRedirect(reverse("admin:catalog_globalintegrationsettings_change", args=[row.pk]))
