"""The one list of every configuration change (each model's own history is on its admin page,
"History"). Read-only: the history is never edited."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from creditgate.audit import selectors
from creditgate.audit.models import ConfigChange


def _shown(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def version_url(*, object_type, object_id: str, history_id: int) -> str | None:
    """The admin page of one past version (simple_history's), or None if the model has no admin."""
    try:
        return reverse(f"admin:{object_type.app_label}_{object_type.model}_simple_history",
                       args=[object_id, history_id])
    except NoReverseMatch:
        return None


class _ChangeList(ChangeList):
    def get_filters(self, request):
        # The date drill-down (?changed_at__year=9999&changed_at__month=12&changed_at__day=31): Django
        # computes the next day, month or year without a bound, so the calendar's last ones overflow
        # (a 500). An impossible date is a bad lookup, answered as Django answers those.
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


@admin.register(ConfigChange)
class ConfigChangeAdmin(admin.ModelAdmin):
    list_display = ["changed_at", "who", "what", "action", "changes_made", "version"]
    list_filter = [("object_type", admin.RelatedOnlyFieldListFilter), "action",
                   ("actor", admin.RelatedOnlyFieldListFilter)]
    date_hierarchy = "changed_at"
    search_fields = ["object_repr", "object_id", "actor__username"]
    list_per_page = 50

    def get_queryset(self, request):
        return selectors.config_changes_list()

    def get_changelist(self, request, **kwargs):
        return _ChangeList

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Who", ordering="actor__username")
    def who(self, obj: ConfigChange) -> str:
        return obj.actor.get_username() if obj.actor else "(a command or shell)"

    @admin.display(description="What", ordering="object_repr")
    def what(self, obj: ConfigChange):
        label = f"{capfirst(obj.object_type.name)}: {obj.object_repr}"
        try:
            url = reverse(f"admin:{obj.object_type.app_label}_{obj.object_type.model}_history", args=[obj.object_id])
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="Changes")
    def changes_made(self, obj: ConfigChange):
        if not obj.changes:
            return "—"
        return format_html("<ul style=\"margin:0;padding-left:1em\">{}</ul>", format_html_join(
            "", "<li><strong>{}</strong>: {} → {}</li>",
            ((c.get("label", c.get("field")), _shown(c.get("old")), _shown(c.get("new"))) for c in obj.changes)))

    @admin.display(description="Version")
    def version(self, obj: ConfigChange):
        url = version_url(object_type=obj.object_type, object_id=obj.object_id, history_id=obj.history_id)
        return format_html('<a href="{}">#{}</a>', url, obj.history_id) if url else f"#{obj.history_id}"
