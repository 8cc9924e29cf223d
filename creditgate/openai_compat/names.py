"""What a /v1 caller may name as `model`: the design note's rules in OpenAI's vocabulary.

Users never pick a text model: a chat names the admin's default text model, by its name or by the
alias TEXT_ALIAS, which always follows the default. Images are chosen by quality tier, one id per
tier that can be served now (`image-basic`, ...); the providers' model names for images never
appear. Anything else is a 404 model_not_found.
"""

from __future__ import annotations

from dataclasses import dataclass

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import AIModelConfig, QualityTier
from creditgate.core.errors import ApplicationError, TierUnavailable

TEXT_ALIAS = "default"
TIER_PREFIX = "image-"


class ModelNotFound(ApplicationError):
    status_code = 404
    code = "model_not_found"

    def __init__(self, name: object, *, kind: str):
        allowed = ", ".join(m.id for m in models_listed(catalog_selectors.routing_get()) if m.kind == kind)
        super().__init__(f"The model `{name}` does not exist or you do not have access to it. "
                         f"Models for this endpoint: {allowed or 'none right now'}.", details={"model": name})


@dataclass(frozen=True)
class Listed:
    """One model of GET /v1/models: its id and what it costs."""

    id: str
    kind: str  # "text" or "image"
    model: AIModelConfig
    tier: str = ""

    def as_openai(self) -> dict:
        extension: dict = {"kind": self.kind, "display_name": self.model.display_name or self.model.model_name}
        if self.kind == "text":
            extension.update(tokens_per_credit=self.model.tokens_per_credit,
                             max_output_tokens=self.model.max_output_tokens)
            if self.id == TEXT_ALIAS:
                extension["alias_of"] = self.model.model_name
        else:
            extension.update(tier=self.tier, credits_per_image=self.model.credits_per_image,
                             sizes=list(self.model.sizes or []), display_name=QualityTier(self.tier).label)
        created = int(self.model.updated_at.timestamp()) if self.model.updated_at else 0
        return {"id": self.id, "object": "model", "created": created,
                "owned_by": "creditgate", "creditgate": extension}


def tier_id(tier: str) -> str:
    return f"{TIER_PREFIX}{tier}"


def models_listed(routing: catalog_selectors.Routing) -> list[Listed]:
    """The ids a caller may name now: the default text model (its name, then the alias) and one id
    per servable image tier, in the tiers' order."""
    listed = []
    if routing.text_model is not None:
        listed += [Listed(routing.text_model.model_name, "text", routing.text_model),
                   Listed(TEXT_ALIAS, "text", routing.text_model)]
    for tier in QualityTier.values:
        model = routing.image_models.get(tier)
        if model is not None:
            listed.append(Listed(tier_id(tier), "image", model, tier=tier))
    return listed


def text_model_named(name: object, routing: catalog_selectors.Routing) -> AIModelConfig:
    """The text model a chat's `model` names: the default's name or the alias; 503 when no text
    model can be served, 404 for any other name."""
    model = routing.text_model
    if isinstance(name, str) and (name == TEXT_ALIAS or (model is not None and name == model.model_name)):
        if model is None:
            raise TierUnavailable("Text generation is not available right now.", status_code=503,
                                  details={"kind": "text"})
        return model
    raise ModelNotFound(name, kind="text")


def tier_named(name: object, routing: catalog_selectors.Routing) -> tuple[str, AIModelConfig]:
    """The tier an images request's `model` names and the model that serves it; 503 when that tier
    cannot be served now, 404 for anything else."""
    if isinstance(name, str) and name.startswith(TIER_PREFIX) and name[len(TIER_PREFIX):] in QualityTier.values:
        tier = name[len(TIER_PREFIX):]
        model = routing.image_models.get(tier)
        if model is None:
            raise TierUnavailable(f"The {QualityTier(tier).label} quality is not available right now.",
                                  status_code=503, details={"tier": tier})
        return tier, model
    raise ModelNotFound(name, kind="image")
