"""How a configuration model gets its history: one line on the model,

    history = config_history(excluded_fields=["updated_at"])

then `manage.py makemigrations audit` (the historical table lives in this app, so adding one never
touches the tracked app's migrations). Every save and delete of the model, from the admin, a
service, a command or a shell, then writes a row with the values after the change, who made it
(the logged-in admin, through simple_history's request middleware) and when; `signals.py` adds
the change's diff to the one list of all changes (`ConfigChange`).

Why django-simple-history: it is the maintained library of the field (Jazzband, releases every
few months, Django 5.2 supported) and works on SQLite, the embedded default, and PostgreSQL alike.
django-pghistory records through PostgreSQL triggers, which would also catch `queryset.update()`
and raw SQL, but it needs PostgreSQL, and the project must run on SQLite. The price of an
ORM-level history: a `queryset.update()` or `bulk_update()` on a tracked model is not recorded, so
services change tracked rows with `save()` (see `catalog.services.model_make_default`).

Never track a secret: list the columns that hold one (or something derived from one, such as a
key's masked hint) in `excluded_fields`; they then have no column in the historical table at all.
"""

from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords

HISTORY_APP = "audit"


def config_history(*, excluded_fields: list[str] | None = None, bases: tuple = ()) -> HistoricalRecords:
    """The history descriptor for a configuration model (see the module docstring)."""
    return HistoricalRecords(app=HISTORY_APP, excluded_fields=list(excluded_fields or []),
                             bases=(*bases, models.Model))


class KeyChange(models.TextChoices):
    REPLACED = "replaced", "key replaced"
    CLEARED = "cleared", "key cleared"
    REENCRYPTED = "reencrypted", "key re-encrypted (same key)"


class KeyChangeFields(models.Model):
    """Extra column of a historical table whose model holds an API key: what happened to the key,
    never the key, its ciphertext or its hint.

    The model says what happened by setting `_key_change` (a `KeyChange` value) on the instance
    before saving it; `signals.py` copies it into the history row.
    """

    api_key_change = models.CharField("API key", max_length=12, blank=True, default="",
                                      choices=KeyChange.choices)

    class Meta:
        abstract = True


class SigningSecretChange(models.TextChoices):
    REPLACED = "replaced", "signing secret replaced"
    CLEARED = "cleared", "signing secret cleared"
    REENCRYPTED = "reencrypted", "signing secret re-encrypted (same secret)"


class SigningSecretChangeFields(models.Model):
    """Like KeyChangeFields, for a model's second secret (a webhook signing secret): what happened
    to it, never the secret. The model sets `_signing_secret_change` before saving."""

    signing_secret_change = models.CharField("signing secret", max_length=12, blank=True, default="",
                                             choices=SigningSecretChange.choices)

    class Meta:
        abstract = True
