"""The catalog's admin pages, with what only providers know: each model's and provider's circuit
breaker, resetting the breakers, checking the providers' model lists now, and "Test key".

The catalog admin's classes are extended here and registered in their place (catalog sits below
providers, so it cannot show breakers itself).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from creditgate.catalog import admin as catalog_admin
from creditgate.catalog.models import AIModelConfig, ImageTier, IntegrationProvider
from creditgate.providers import breaker
from creditgate.providers import services as provider_services


def _breaker_label(model: AIModelConfig) -> str:
    """The breakers that decide whether this model is called now: its provider's and its own."""
    provider, own = breaker.breaker_state(model.provider_id), breaker.breaker_state(model.provider_id, model.model_name)
    if provider.state != "closed":
        return f"provider {provider.label}"
    return own.label


def _replace(model, admin_class) -> None:
    """Register `admin_class` for `model` in place of the catalog's own."""
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


class TierModelsInline(catalog_admin.TierModelsInline):
    fields = [*catalog_admin.TierModelsInline.fields, "breaker_state"]
    readonly_fields = [*catalog_admin.TierModelsInline.readonly_fields, "breaker_state"]

    @admin.display(description="Circuit breaker")
    def breaker_state(self, obj: AIModelConfig) -> str:
        return _breaker_label(obj)


class ImageTierAdmin(catalog_admin.ImageTierAdmin):
    inlines = [TierModelsInline]


class AIModelConfigAdmin(catalog_admin.AIModelConfigAdmin):
    list_display = ["provider_and_breaker" if c == "provider" else c
                    for c in catalog_admin.AIModelConfigAdmin.list_display]
    actions = [*catalog_admin.AIModelConfigAdmin.actions, "check_lifecycle"]

    @admin.display(description="Provider", ordering="provider")
    def provider_and_breaker(self, obj: AIModelConfig):
        """The provider, and the circuit breaker that decides whether the model is called now."""
        return format_html('{}<br><small class="cg-quiet">breaker {}</small>', obj.provider,
                           _breaker_label(obj))

    @admin.action(description="Check the providers' model lists now")
    def check_lifecycle(self, request, queryset):
        report = provider_services.model_lifecycle_check()
        for line in report.lines():
            if line.startswith("WARNING: "):
                continue  # the list's own warnings show each tier at risk
            self.message_user(request, line.strip(), level=messages.WARNING if "!" in line or "COULD NOT" in line
                              else messages.INFO)


class IntegrationProviderAdmin(catalog_admin.IntegrationProviderAdmin):
    list_display = [*catalog_admin.IntegrationProviderAdmin.list_display, "breaker_state"]
    actions = ["test_key", "reset_breakers"]

    def changelist_view(self, request, extra_context=None):
        # The sandbox answering in production (issue 22): said on the page where keys are entered.
        if request.method == "GET":
            warning = provider_services.sandbox_warning()
            if warning:
                self.message_user(request, warning, level=messages.WARNING)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Circuit breaker")
    def breaker_state(self, obj: IntegrationProvider) -> str:
        """The provider's own breaker, and any of its models' that is not plainly closed."""
        parts = [breaker.breaker_state(obj.provider_id).label]
        parts += [f"{s.model_name}: {s.label}" for s in breaker.breakers_list()
                  if s.provider_id == obj.provider_id and s.model_name and s.state != "closed"]
        return "; ".join(parts)

    @admin.action(description="Reset circuit breakers (the provider is back)")
    def reset_breakers(self, request, queryset):
        for provider in queryset:
            for status in breaker.breakers_list():
                if status.provider_id == provider.provider_id:
                    breaker.breaker_reset(provider.provider_id, status.model_name or None)
            self.message_user(request, f"{provider}: circuit breakers closed.", level=messages.SUCCESS)

    @admin.action(description="Test key")
    def test_key(self, request, queryset):
        for provider in queryset:
            result = provider_services.provider_check_credentials(provider_id=provider.provider_id)
            name = str(provider)
            message = result.message if result.message.startswith(name) else f"{name}: {result.message}"
            self.message_user(request, message, level=messages.SUCCESS if result.ok else messages.ERROR)


_replace(ImageTier, ImageTierAdmin)
_replace(AIModelConfig, AIModelConfigAdmin)
_replace(IntegrationProvider, IntegrationProviderAdmin)
