"""The catalog's configuration history read back: which version of a model or a tier set the price a
ledger entry carries. Here, not in audit, because it reads catalog rows and audit sits below catalog."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q

from creditgate.audit.models import ConfigChange
from creditgate.catalog.models import AIModelConfig, ImageTier, QualityTier

# The rate keys `credits.pricing` writes into a price's snapshot that are catalog columns.
RATE_PRICE_FIELDS = ("credits_per_image", "tokens_per_credit")


class HistoricalVersion(Protocol):
    """What we read of a simple_history version row (the package ships no types)."""

    history_id: int
    history_date: dt.datetime
    history_user: Any  # the user who saved it, or None (a command, a shell, the baseline)
    history_change_reason: str | None


@dataclass(frozen=True)
class RateOrigin:
    """Where one rate of a ledger entry's snapshot came from.

    `in_force`: the model's version (a historical row) in force when the entry was priced;
    `introduced_by`: the version that set the price the entry carries (None when the history does
    not reach back that far); `change`: that version's line in the list of all changes.
    """

    model_name: str
    field: str
    price: int
    in_force: HistoricalVersion | None
    introduced_by: HistoricalVersion | None
    change: ConfigChange | None
    # Where the price lives: the model's row (tokens per credit), or its tier's (credits per image).
    tracked_model: type[Model] = AIModelConfig
    tier: str | None = None

    @property
    def tier_label(self) -> str | None:
        return QualityTier(self.tier).label if self.tier in QualityTier.values else self.tier

    @property
    def object_id(self) -> str | None:
        """The tracked row's key in the versions (for links to their history pages)."""
        version = self.introduced_by or self.in_force
        return None if version is None else str(getattr(version, self.tracked_model._meta.pk.attname))

    @property
    def matches(self) -> bool:
        """The version in force carries the snapshot's price (False: an inconsistency to look into)."""
        return self.in_force is not None and getattr(self.in_force, self.field) == self.price


def _rate_parts(rate: dict | None) -> list[dict]:
    if not isinstance(rate, dict):
        return []
    if isinstance(rate.get("parts"), list):  # pricing.price_total: an article's text and images
        return [part for part in rate["parts"] if isinstance(part, dict)]
    return [rate]


def rate_origins(*, rate: dict | None, at: dt.datetime) -> list[RateOrigin]:
    """For each model rate in a ledger entry's snapshot, the catalog version that set it.

    `at`: when the entry was priced (for a job's entries, when its hold was placed: the capture
    charges the rate held). A few queries per rate, whatever the size of the history.
    """
    origins = []
    for part in _rate_parts(rate):
        name = part.get("model")
        field = next((f for f in RATE_PRICE_FIELDS if f in part), None)
        if not name or field is None:
            continue
        price = part[field]
        # By name as it was then: the version rows keep the name the model had at that time.
        model_version = (AIModelConfig.history.filter(model_name=name, history_date__lte=at)
                         .order_by("-history_date", "-history_id").first())
        if field == "credits_per_image":
            # An image's price is its tier's: the tier the model was in then, as it was then.
            tier = model_version.quality_tier_id if model_version is not None else None
            versions_of = ImageTier.history.filter(tier=tier) if tier else ImageTier.history.none()
            tracked: type[AIModelConfig] | type[ImageTier] = ImageTier
        else:
            tier, tracked = None, AIModelConfig
            versions_of = AIModelConfig.history.filter(id=model_version.id) if model_version else None
        in_force = (versions_of.filter(history_date__lte=at).order_by("-history_date", "-history_id").first()
                    if versions_of is not None else None)
        introduced = None
        if in_force is not None and getattr(in_force, field) == price:
            versions = versions_of.filter(history_id__lte=in_force.history_id)
            other_price = versions.filter(~Q(**{field: price}) | Q(**{f"{field}__isnull": True}))
            last_other = other_price.order_by("-history_id").values_list("history_id", flat=True).first()
            same = versions.filter(**{field: price})
            if last_other is not None:
                same = same.filter(history_id__gt=last_other)
            introduced = same.order_by("history_id").first()
        change = None
        if introduced is not None:
            change = ConfigChange.objects.filter(history_type=ContentType.objects.get_for_model(tracked.history.model),
                                                 history_id=introduced.history_id).first()
        origins.append(RateOrigin(model_name=name, field=field, price=price, in_force=in_force,
                                  introduced_by=introduced, change=change, tracked_model=tracked, tier=tier))
    return origins
