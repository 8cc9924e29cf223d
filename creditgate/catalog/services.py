"""Writes to the catalog, and the ai-config payload."""

from __future__ import annotations

from django.db import transaction

from creditgate.catalog import selectors
from creditgate.catalog.models import AIModelConfig, QualityTier


def ai_config_build() -> dict:
    """The payload of GET /api/v1/system/ai-config/: the design note's shape plus additive fields."""
    gs = selectors.global_settings_get()
    text_model = selectors.model_default_text()
    labels = dict(QualityTier.choices)
    return {
        "image_qualities": [
            {"tier": tier, "credits_per_image": model.credits_per_image, "label": labels[tier]}
            for tier, model in selectors.models_servable_by_tier().items()
        ],
        "text_model": text_model.model_name if text_model else None,
        "image_style": gs.image_style,
        "max_images": gs.max_in_article_images,
        "max_images_per_request": gs.max_images_per_request,
        "tokens_per_credit": text_model.tokens_per_credit if text_model else None,
    }


@transaction.atomic
def model_make_default(*, model: AIModelConfig) -> AIModelConfig:
    """Make `model` the default of its type, unsetting the previous one in the same transaction."""
    # Lock every row of this type in a fixed order, so two concurrent swaps serialize instead of
    # both clearing and both setting (the partial unique index would then reject one of them).
    list(AIModelConfig.objects.select_for_update().filter(model_type=model.model_type).order_by("pk"))
    model.refresh_from_db()
    AIModelConfig.objects.filter(model_type=model.model_type, is_default=True).exclude(pk=model.pk).update(
        is_default=False)
    if not model.is_default:
        model.is_default = True
        model.save(update_fields=["is_default", "updated_at"])
    return model
