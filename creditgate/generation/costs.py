"""What a provider call cost us in US dollars: the one place that decides it.

The provider's own figure wins where its answer carries one (Runware's `cost` with `includeCost`).
Otherwise the catalog's prices for the model the call was made with: the tokens the provider
reported × the per-1M token prices (OpenAI text), or the price per image × the images the call
delivered. A try that delivered nothing costs nothing (providers bill delivered work; a request
that timed out may still have been billed, which no provider lets us see). Credits are priced
elsewhere (`credits.pricing`); this is what the providers charge us.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from creditgate.catalog.models import AIModelConfig, ModelType
from creditgate.generation.models import CostSource
from creditgate.providers.base import ProviderTry

MILLION = Decimal(1_000_000)
CENT_FRACTION = Decimal("0.000001")  # ProviderCall.cost_usd keeps 6 decimal places


def try_cost(*, model: AIModelConfig, attempt: ProviderTry, delivered: int) -> tuple[Decimal | None, str]:
    """(USD, CostSource) of one try of a call to `model` that delivered `delivered` units."""
    if attempt.cost_usd is not None:
        return attempt.cost_usd.quantize(CENT_FRACTION, ROUND_HALF_UP), CostSource.PROVIDER
    input_price, output_price = model.input_usd_per_1m_tokens, model.output_usd_per_1m_tokens
    if (attempt.ok and input_price is not None and output_price is not None
            and attempt.prompt_tokens is not None and attempt.completion_tokens is not None):
        usd = (attempt.prompt_tokens * input_price + attempt.completion_tokens * output_price) / MILLION
        return usd.quantize(CENT_FRACTION, ROUND_HALF_UP), CostSource.USAGE
    if not delivered:
        return Decimal(0), CostSource.NONE
    if model.model_type == ModelType.IMAGE and model.usd_per_image is not None:
        return (model.usd_per_image * delivered).quantize(CENT_FRACTION, ROUND_HALF_UP), CostSource.CATALOG
    return None, CostSource.UNKNOWN


def catalog_usd_per_unit(model: AIModelConfig) -> Decimal | None:
    """The catalog's price of one unit a provider can report a cost for: an image."""
    return model.usd_per_image if model.model_type == ModelType.IMAGE else None
