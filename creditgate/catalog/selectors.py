"""Reads of the catalog that the rest of the code uses. Nothing else queries the catalog tables
for routing or pricing decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from creditgate.catalog.models import (
    AIModelConfig,
    GlobalIntegrationSettings,
    IntegrationProvider,
    ModelType,
    QualityTier,
)


def global_settings_get() -> GlobalIntegrationSettings:
    obj, _ = GlobalIntegrationSettings.objects.get_or_create(id=GlobalIntegrationSettings.SINGLETON_ID)
    return obj


def _not_retired(today: dt.date | None = None) -> Q:
    today = today or timezone.localdate()
    return Q(retires_on__isnull=True) | Q(retires_on__gt=today)


def _servable_provider() -> Q:
    """An active provider with a key; with the sandbox on, a keyless active provider too."""
    q = Q(provider__is_active=True)
    if not settings.CREDITGATE_SANDBOX:
        q &= ~Q(provider__api_key_encrypted="")
    return q


def model_default_text() -> AIModelConfig | None:
    """The admin's default text model if it can be served now, else None."""
    return (AIModelConfig.objects.select_related("provider")
            .filter(_not_retired() & _servable_provider(), model_type=ModelType.TEXT, is_default=True,
                    is_active=True)
            .first())


def models_servable_by_tier() -> dict[str, AIModelConfig]:
    """{tier: model} for every tier that can be served right now, in display order."""
    rows = (AIModelConfig.objects.select_related("provider")
            .filter(_not_retired() & _servable_provider(), model_type=ModelType.IMAGE, is_active=True,
                    quality_tier__isnull=False))
    by_tier = {m.quality_tier: m for m in rows}
    return {t: by_tier[t] for t in QualityTier.values if t in by_tier}


@dataclass(frozen=True)
class Routing:
    """What the charge path routes and prices by. Shared between requests: read-only."""

    settings: GlobalIntegrationSettings
    text_model: AIModelConfig | None  # the default text model, if it can be served now
    image_models: dict[str, AIModelConfig]  # {tier: model} for the tiers that can be served now


def routing_get() -> Routing:
    """The settings and the servable models, read from the database once per catalog version
    per process (every catalog change and the next retirement date invalidate it), so pricing
    and creating a job cost no catalog query."""
    from creditgate.catalog.ai_config_cache import catalog_memo

    # What is servable depends on CREDITGATE_SANDBOX, a per-process setting, not data.
    return catalog_memo(f"routing:sandbox={int(bool(settings.CREDITGATE_SANDBOX))}", lambda: Routing(
        settings=global_settings_get(), text_model=model_default_text(), image_models=models_servable_by_tier()))


def provider_get(provider_id: str) -> IntegrationProvider | None:
    return IntegrationProvider.objects.filter(provider_id=provider_id).first()


def models_retiring(within_days: int = 30) -> QuerySet[AIModelConfig]:
    """Active models whose retirement date has passed or falls within the window."""
    limit = timezone.localdate() + dt.timedelta(days=within_days)
    return AIModelConfig.objects.filter(is_active=True, retires_on__isnull=False, retires_on__lte=limit)


def model_next_retirement() -> dt.date | None:
    """The nearest future retirement date of an active model: the served tiers change that day."""
    return (AIModelConfig.objects.filter(is_active=True, retires_on__gt=timezone.localdate())
            .order_by("retires_on").values_list("retires_on", flat=True).first())


def providers_with_stored_key() -> QuerySet[IntegrationProvider]:
    return IntegrationProvider.objects.exclude(api_key_encrypted="").order_by("provider_id")
