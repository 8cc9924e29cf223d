"""Webhook endpoints (the secret never shown) and the delivery log, read-only: owners manage
endpoints on the team page; operators look here when a customer asks where an event went."""

from django.contrib import admin

from creditgate.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "account", "description", "all_jobs", "is_active", "created_at"]
    list_filter = ["is_active", "all_jobs"]
    search_fields = ["url", "account__name", "description"]
    list_select_related = ["account"]
    fields = ["id", "account", "url", "description", "all_jobs", "is_active", "created_by", "created_at"]
    readonly_fields = ["id", "account", "url", "created_by", "created_at"]

    def has_add_permission(self, request):
        return False  # registered by an owner (the URL is checked, the secret shown to them once)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ("number", "started_at", "duration_ms", "status_code", "ok", "error",
                                "response_excerpt")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event_type", "event_id", "endpoint", "status", "attempts", "last_status_code",
                    "next_attempt_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["event_id", "endpoint__url", "job__id"]
    list_select_related = ["endpoint"]
    inlines = [WebhookAttemptInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None or request.method == "GET"
