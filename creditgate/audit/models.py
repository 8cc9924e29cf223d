"""The configuration's history.

django-simple-history keeps one historical table per tracked model (created in this app by
`tracking.config_history`): every version of every row, with who and when. `ConfigChange` is the
one list across all of them that an operator reads: one row per recorded change, holding what
changed as before/after pairs and a pointer to the historical row it came from. It is written in
the same transaction as that row (`signals.py`), from the historical rows only, so it can never
hold a column the history does not keep (a provider's key is never one).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models


class ChangeAction(models.TextChoices):
    CREATED = "+", "Created"
    CHANGED = "~", "Changed"
    DELETED = "-", "Deleted"


class ConfigChange(models.Model):
    changed_at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+", help_text="Empty: a command, a migration or a shell.")
    action = models.CharField(max_length=1, choices=ChangeAction.choices)
    object_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField("object", max_length=200)
    # [{"field": "credits_per_image", "label": "Credits per image", "old": 15, "new": 18}, ...]
    changes = models.JSONField(default=list, blank=True)
    history_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+",
                                     help_text="The historical model that holds the full version.")
    history_id = models.BigIntegerField()

    class Meta:
        verbose_name = "configuration change"
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["-changed_at", "-id"], name="config_change_newest_idx"),
            models.Index(fields=["object_type", "object_id", "-changed_at"], name="config_change_object_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["history_type", "history_id"], name="config_change_one_per_version"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.object_repr} at {self.changed_at:%Y-%m-%d %H:%M}"
