"""Reads of the configuration history (the readers of one app's versions live in that app: the
catalog's rate origins are catalog.history)."""

from __future__ import annotations

from django.db.models import QuerySet

from creditgate.audit.models import ConfigChange


def config_changes_list() -> QuerySet[ConfigChange]:
    return ConfigChange.objects.select_related("actor", "object_type").order_by("-changed_at", "-id")

