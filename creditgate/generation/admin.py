from django.contrib import admin

from creditgate.generation.models import Job, JobImage


class JobImageInline(admin.TabularInline):
    model = JobImage
    extra = 0
    can_delete = False
    fields = ["index", "file", "width", "height", "provider_image_id", "cost_usd"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through the charge path."""

    list_display = ["id", "kind", "status", "user", "tier", "image_count", "credits_held", "credits_charged",
                    "created_at"]
    list_filter = ["kind", "status", "tier", "image_provider_id", "text_provider_id"]
    search_fields = ["id", "user__username", "prompt"]
    inlines = [JobImageInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
