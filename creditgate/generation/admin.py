from django.contrib import admin
from django.utils.html import format_html

from creditgate.generation.models import Job, JobImage, ProviderCall

# Shown and read-only alike; tuples, which both attributes' declared types accept.
_IMAGE_FIELDS = ("index", "file", "width", "height", "provider_image_id", "cost_usd")
_CALL_FIELDS = ("started_at", "run_and_try", "asked", "outcome", "error", "provider_request_id", "latency", "tokens",
                "cost")


class JobImageInline(admin.TabularInline):
    model = JobImage
    extra = 0
    can_delete = False
    fields = readonly_fields = _IMAGE_FIELDS

    def has_add_permission(self, request, obj=None):
        return False


class ProviderCallInline(admin.TabularInline):
    """Every request the job made to a provider, retries and failures included: why a job failed
    and what it cost us, on the job's page."""

    model = ProviderCall
    verbose_name = "provider call (each try)"
    verbose_name_plural = "provider calls (each try, retries included)"
    extra = 0
    can_delete = False
    fields = readonly_fields = _CALL_FIELDS
    ordering = ["started_at", "try_number"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Run / try")
    def run_and_try(self, call: ProviderCall) -> str:
        return f"{call.attempt} / {call.try_number}"

    @admin.display(description="Asked")
    def asked(self, call: ProviderCall) -> str:
        what = f"{call.units_requested} image{'s' if call.units_requested != 1 else ''}" if call.kind == "image" \
            else "text"
        size = f" {call.size}" if call.size else ""
        return f"{call.provider_id} {call.model_name}: {what}{size}"

    @admin.display(description="Outcome")
    def outcome(self, call: ProviderCall) -> str:
        delivered = f", {call.units_delivered} delivered" if call.kind == "image" and call.units_delivered else ""
        finish = f" ({call.finish_reason})" if call.finish_reason else ""
        return f"{call.get_status_display()}{delivered}{finish}"

    @admin.display(description="Error")
    def error(self, call: ProviderCall):
        if not call.error_code:
            return "—"
        provider = " ".join(str(p) for p in (call.provider_status, call.provider_error_code) if p)
        return format_html("{}<br><small>{} {}</small>", call.error_code, call.error_class,
                           f"(provider: {provider})" if provider else "")

    @admin.display(description="Latency")
    def latency(self, call: ProviderCall) -> str:
        return f"{call.latency_ms} ms" if call.latency_ms is not None else "—"

    @admin.display(description="Tokens in / out")
    def tokens(self, call: ProviderCall) -> str:
        if call.prompt_tokens is None and call.completion_tokens is None:
            return "—"
        return f"{call.prompt_tokens or 0} / {call.completion_tokens or 0}"

    @admin.display(description="Cost (USD)")
    def cost(self, call: ProviderCall):
        if call.cost_usd is None:
            return call.get_cost_source_display() or "—"
        return format_html("${}<br><small>{}</small>", f"{call.cost_usd:.6f}", call.get_cost_source_display())


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through the charge path."""

    list_display = ["id", "kind", "status", "user", "tier", "image_count", "credits_held", "credits_charged",
                    "created_at"]
    list_filter = ["kind", "status", "tier", "image_provider_id", "text_provider_id"]
    search_fields = ["id", "user__username", "prompt"]
    inlines = [ProviderCallInline, JobImageInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
