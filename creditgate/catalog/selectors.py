"""Reads of the catalog that the rest of the code uses. Nothing else queries the catalog tables
for routing or pricing decisions."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from creditgate.catalog.ai_config_cache import CHECK_SECONDS, catalog_memo
from creditgate.catalog.models import (
    AIModelConfig,
    GlobalIntegrationSettings,
    ImageTier,
    IntegrationProvider,
    ModelLifecycle,
    ModelType,
    ProviderListing,
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


def _servable_models() -> QuerySet[AIModelConfig]:
    """Active, not retired, on a servable provider, with what routing and pricing read loaded."""
    return (AIModelConfig.objects.select_related("provider", "quality_tier")
            .filter(_not_retired() & _servable_provider(), is_active=True))


def model_default_text() -> AIModelConfig | None:
    """The admin's default text model if it can be served now, else None."""
    return _servable_models().filter(model_type=ModelType.TEXT, is_default=True).first()


def models_text_ordered() -> list[AIModelConfig]:
    """The text models that can be served now, in order of service: the default first, then the
    backups (the other active text models) by priority, then name."""
    return list(_servable_models().filter(model_type=ModelType.TEXT)
                .order_by("-is_default", "priority", "model_name"))


def models_servable_ordered() -> dict[str, list[AIModelConfig]]:
    """{tier: its models that can be served now, by priority then name} for every tier with at
    least one, in display order (cheapest tier first). All of a tier's models carry its price."""
    rows = (_servable_models().filter(model_type=ModelType.IMAGE, quality_tier__isnull=False)
            .order_by("priority", "model_name"))
    by_tier: dict[str, list[AIModelConfig]] = {}
    for model in rows:
        assert model.quality_tier_id is not None  # the query keeps only models with a tier
        by_tier.setdefault(model.quality_tier_id, []).append(model)
    return {t: by_tier[t] for t in QualityTier.values if t in by_tier}


def models_serving_tier(tier: str) -> list[AIModelConfig]:
    """The models that can serve `tier` right now, by priority then name, read from the database
    (not the routing memo): what a job about to call a provider must use. One query on the small
    catalog table, with the provider that is called loaded."""
    return list(_servable_models().filter(model_type=ModelType.IMAGE, quality_tier_id=tier)
                .order_by("priority", "model_name"))


def models_servable_by_tier() -> dict[str, AIModelConfig]:
    """{tier: the first model to serve it} for every tier that can be served right now, in display order."""
    return {tier: models[0] for tier, models in models_servable_ordered().items()}


@dataclass(frozen=True)
class Routing:
    """What the charge path routes and prices by. Shared between requests: read-only.

    "Servable" here is the catalog's view (active, not retired, provider usable); whether a
    provider is failing right now is the circuit breaker's (creditgate.providers.breaker), asked
    at call time.
    """

    settings: GlobalIntegrationSettings
    text_model: AIModelConfig | None  # the first of text_models_ordered: the default when it can be served
    image_models: dict[str, AIModelConfig]  # {tier: the first of image_models_ordered[tier]}: price and serve by it
    # The text models in order of service: the default, then its backups. () if none can be served.
    text_models_ordered: tuple[AIModelConfig, ...] = ()
    # {tier: (its models in order of service)}: the first, then its backups, all at the tier's price.
    image_models_ordered: dict[str, tuple[AIModelConfig, ...]] = field(default_factory=dict)

    def __post_init__(self):
        # A Routing built with only the first models (a test, older code) routes to exactly those.
        if not self.text_models_ordered and self.text_model is not None:
            object.__setattr__(self, "text_models_ordered", (self.text_model,))
        if not self.image_models_ordered and self.image_models:
            object.__setattr__(self, "image_models_ordered", {t: (m,) for t, m in self.image_models.items()})


def _routing_build() -> tuple[Routing, float | None]:
    ordered = {tier: tuple(models) for tier, models in models_servable_ordered().items()}
    text = tuple(models_text_ordered())
    routing = Routing(settings=global_settings_get(), text_model=text[0] if text else None,
                      image_models={tier: models[0] for tier, models in ordered.items()},
                      text_models_ordered=text, image_models_ordered=ordered)
    return routing, catalog_changes_at()


# How far behind a change made through the services `routing_get()` may be (in another process).
ROUTING_MAX_LAG_SECONDS = CHECK_SECONDS


def routing_get() -> Routing:
    """The settings and the servable models, read from the database once per catalog version
    per process (every catalog change and the next retirement date invalidate it), so pricing
    and creating a job cost no catalog query."""
    # What is servable depends on CREDITGATE_SANDBOX, a per-process setting, not data.
    return catalog_memo(f"routing:sandbox={int(bool(settings.CREDITGATE_SANDBOX))}", _routing_build)


def model_display_names() -> dict[str, str]:
    """{model_name: display_name} of every model in the catalog, retired ones included (a job's
    images keep the model that made them): what users read instead of a provider's id. Read once
    per catalog version per process."""
    return catalog_memo("display-names", lambda: ({name: shown or name for name, shown in
                                                   AIModelConfig.objects.values_list("model_name", "display_name")},
                                                  None))


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


def catalog_changes_at() -> float | None:
    """When (time.time()) the served models next change by the calendar alone: the start of the
    next retirement date, at least a second from now; None if no retirement is planned."""
    day = model_next_retirement()
    if day is None:
        return None
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min)).timestamp()
    return max(start, time.time() + 1.0)


def providers_with_stored_key() -> QuerySet[IntegrationProvider]:
    """Providers with a stored API key or signing secret (what key rotation re-encrypts)."""
    return (IntegrationProvider.objects.exclude(api_key_encrypted="", signing_secret_encrypted="")
            .order_by("provider_id"))


# --- Model lifecycle: what the providers said, and what it means for the tiers -------------------

def models_by_provider() -> dict[str, list[AIModelConfig]]:
    """Every catalog model, active or not, grouped by provider (the lifecycle check asks each
    provider about its own)."""
    grouped: dict[str, list[AIModelConfig]] = {}
    for model in AIModelConfig.objects.select_related("provider").order_by("provider_id", "model_name"):
        grouped.setdefault(model.provider_id, []).append(model)
    return grouped


@dataclass(frozen=True)
class ModelEnd:
    model: AIModelConfig
    on: dt.date | None  # None: a retirement announced without a date
    why: str


def model_end(model: AIModelConfig) -> ModelEnd | None:
    """When `model` stops being served, by what is known: the catalog's retirement date, or what
    its provider said (no longer offered; a retirement announced). None if nothing is known."""
    ends: list[ModelEnd] = []
    if model.retires_on is not None:
        ends.append(ModelEnd(model, model.retires_on, f"retires on {model.retires_on} (catalog)"))
    lifecycle: ModelLifecycle | None = getattr(model, "lifecycle", None)
    if lifecycle is not None and lifecycle.status == ProviderListing.GONE:
        ends.append(ModelEnd(model, lifecycle.since,
                             f"no longer offered by {model.provider_id} (since {lifecycle.since})"))
    elif lifecycle is not None and lifecycle.status == ProviderListing.RETIRING:
        ends.append(ModelEnd(model, lifecycle.shutdown_on,
                             f"{model.provider_id} retires it on {lifecycle.shutdown_on}" if lifecycle.shutdown_on
                             else f"{model.provider_id} announced its retirement (no date given)"))
    # The earliest known end; an end without a date counts as the nearest (it may be any day).
    return min(ends, key=lambda e: e.on or dt.date.min) if ends else None


@dataclass(frozen=True)
class ServiceAtRisk:
    """A tier (or text) whose every active model is going away within the warning window."""

    key: str                # the tier ("basic"), or "text"
    label: str              # "the Basic tier", "text generation"
    ends_on: dt.date | None  # when its last model goes (None: at a date nobody gave)
    ends: tuple[ModelEnd, ...]

    @property
    def message(self) -> str:
        today = timezone.localdate()
        if self.ends_on is None:
            when, act = "may lose its last model any day", "now"
        elif self.ends_on <= today:
            when, act = f"has lost its last model ({self.ends_on})", "now"
        else:
            when, act = f"loses its last model on {self.ends_on}, in {(self.ends_on - today).days} days", "before then"
        reasons = "; ".join(f"{e.model.model_name}: {e.why}" for e in self.ends)
        return (f"{self.label[0].upper()}{self.label[1:]} {when}: {reasons}. Add or activate another model {act}; "
                f"nothing is changed without you.")


def services_at_risk(*, within_days: int) -> list[ServiceAtRisk]:
    """The tiers, and text, that are served now but whose every active model ends within
    `within_days` (or has ended) by model_end. A tier with no active model is not listed: it is
    not offered, by the operator's choice or since its last model went."""
    limit = timezone.localdate() + dt.timedelta(days=within_days)
    active = list(AIModelConfig.objects.select_related("provider", "lifecycle").filter(is_active=True))
    groups: list[tuple[str, str, list[AIModelConfig]]] = [
        (tier.tier, f"the {tier} tier", [m for m in active if m.quality_tier_id == tier.tier])
        for tier in ImageTier.objects.all()]
    groups.sort(key=lambda g: QualityTier.values.index(g[0]) if g[0] in QualityTier.values else 99)
    groups.append(("text", "text generation", [m for m in active if m.model_type == ModelType.TEXT]))
    risks = []
    for key, label, models in groups:
        ends = [e for e in (model_end(m) for m in models) if e is not None]
        if not models or len(ends) < len(models) or any(e.on is not None and e.on > limit for e in ends):
            continue  # a model without an end, or one that ends after the limit, keeps it served
        dated = [e.on for e in ends if e.on is not None]
        ends_on = None if len(dated) < len(ends) else max(dated)
        risks.append(ServiceAtRisk(key=key, label=label, ends_on=ends_on, ends=tuple(ends)))
    return risks
