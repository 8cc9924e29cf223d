"""Writes of the configuration history (django-simple-history writes the versions themselves)."""

from __future__ import annotations

import datetime as dt
import decimal

from django.contrib.contenttypes.models import ContentType
from django.db.models import AutoField, Field, Model
from django.utils.text import capfirst

from creditgate.audit.models import ChangeAction, ConfigChange


def _plain(value):
    """A field value as JSON: numbers and text as they are, decimals and dates as text."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return value


def config_change_record(*, version, instance: Model) -> ConfigChange | None:
    """Add the historical row `version` of `instance` to the one list of changes.

    The changes are `version` diffed against the object's previous version (for a creation, every
    field that has a value). A save that changed nothing is not listed (its version is kept).
    """
    model = type(instance)
    changes = []
    if version.history_type == ChangeAction.CREATED:
        for field in version.tracked_fields:
            value = getattr(version, field.attname)
            if field.editable and not isinstance(field, AutoField) and value not in (None, "", [], {}):
                changes.append({"field": field.name, "label": capfirst(field.verbose_name), "old": None,
                                "new": _plain(value)})
    elif version.history_type == ChangeAction.CHANGED:
        # By id, not by date (simple_history's prev_record): two saves may share a timestamp.
        previous = (type(version)._default_manager
                    .filter(**{model._meta.pk.attname: instance.pk}, history_id__lt=version.history_id)
                    .order_by("-history_id").first())
        if previous is not None:
            delta = version.diff_against(previous, foreign_keys_are_objs=False)
            for change in delta.changes:
                field = model._meta.get_field(change.field)
                assert isinstance(field, Field)  # a version tracks the model's own columns, not relations
                changes.append({"field": field.name, "label": capfirst(field.verbose_name),
                                "old": _plain(change.old), "new": _plain(change.new)})
    key_change = getattr(version, "api_key_change", "")
    if key_change:
        changes.append({"field": "api_key", "label": "API key", "old": None,
                        "new": version.get_api_key_change_display()})
    secret_change = getattr(version, "signing_secret_change", "")
    if secret_change:
        changes.append({"field": "signing_secret", "label": "Signing secret", "old": None,
                        "new": version.get_signing_secret_change_display()})
    if version.history_type == ChangeAction.CHANGED and not changes:
        return None
    return ConfigChange.objects.create(
        changed_at=version.history_date, actor_id=version.history_user_id, action=version.history_type,
        object_type=ContentType.objects.get_for_model(model), object_id=str(instance.pk),
        object_repr=str(instance)[:200], changes=changes,
        history_type=ContentType.objects.get_for_model(type(version)), history_id=version.history_id)
