"""The ai-config payload: the catalog's tiers and text model that can be served now, which is the
catalog filtered by the circuit breakers. Here, not in catalog, because catalog sits below providers
(it knows models and keys, not whether a provider answers); the memo and its invalidation stay in
catalog.ai_config_cache, which every catalog write and every breaker change bumps."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.conf import settings

from creditgate.catalog import selectors
from creditgate.catalog.ai_config_cache import catalog_memo
from creditgate.catalog.models import QualityTier
from creditgate.providers.breaker import breaker_open_until


@dataclass(frozen=True)
class AIConfigSnapshot:
    body: bytes       # the payload as JSON, built once per catalog version per process
    etag: str
    expires_at: float | None  # time.time() when it stops being true by itself (a retirement, a cool-down)


def ai_config_snapshot_get() -> AIConfigSnapshot:
    """The ai-config payload as served: kept in this process while the catalog version holds
    (see ai_config_cache for how soon a change shows)."""
    # The served tiers depend on CREDITGATE_SANDBOX, a per-process setting, not data.
    return catalog_memo(f"ai-config:sandbox={int(bool(settings.CREDITGATE_SANDBOX))}", _ai_config_snapshot_build)


def _ai_config_snapshot_build() -> tuple[AIConfigSnapshot, float | None]:
    payload, breakers_change_at = ai_config_compute()
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    # A tier hidden by open circuit breakers is listed again when the first cool-down ends (a
    # breaker opening or closing invalidates the catalog version at once: see providers.breaker).
    ends = [t for t in (selectors.catalog_changes_at(), breakers_change_at) if t is not None]
    expires_at = min(ends) if ends else None
    snapshot = AIConfigSnapshot(body=body, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                                expires_at=expires_at)
    return snapshot, expires_at


def ai_config_build() -> dict:
    """The payload of GET /api/v1/system/ai-config/: the design note's shape plus additive fields."""
    return ai_config_compute()[0]


def ai_config_compute() -> tuple[dict, float | None]:
    """The ai-config payload, and until when (time.time()) it holds at most: a tier hidden because
    every one of its models has an open circuit breaker comes back when the first cool-down ends.

    A tier is listed while at least one of its models can be served: the catalog allows it
    (active, not retired, provider usable) and neither its provider's nor its own breaker is open.
    The text model is the first of the default and its backups, listed while one of them can be
    served; its rate is what a text job is priced at.
    """
    gs = selectors.global_settings_get()
    ordered = selectors.models_servable_ordered()
    text_models = selectors.models_text_ordered()
    open_until = breaker_open_until(
        [(m.provider_id, m.model_name) for models in [*ordered.values(), text_models] for m in models])

    def servable(models) -> bool:
        return any(open_until.get((m.provider_id, m.model_name)) is None for m in models)

    labels = dict(QualityTier.choices)
    text_model = text_models[0] if text_models and servable(text_models) else None
    payload = {
        "image_qualities": [
            {"tier": tier, "credits_per_image": models[0].credits_per_image, "label": labels[tier]}
            for tier, models in ordered.items() if servable(models)
        ],
        "text_model": text_model.model_name if text_model else None,
        "image_style": gs.image_style,
        "max_images": gs.max_in_article_images,
        "max_images_per_request": gs.max_images_per_request,
        "tokens_per_credit": text_model.tokens_per_credit if text_model else None,
    }
    return payload, min((t for t in open_until.values() if t is not None), default=None)
