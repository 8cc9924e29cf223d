"""The one place that turns usage into credits. Every caller (the estimate API, the charge path,
the page, reports) prices through these functions; nothing else multiplies credits.

Rates come from the catalog row passed in, and every `Price` carries the rate it applied as
plain data, which the ledger stores with its entries: a later price change never rewrites history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from creditgate.catalog.models import AIModelConfig
from creditgate.core.errors import InvalidRequest

# An English token is about 4 characters, but a token can be as short as one character
# (punctuation, digits, CJK, emoji each take one or more tokens). Counting every UTF-8 byte as a
# token can therefore only over-estimate: no tokenizer we use emits more tokens than the input
# has bytes. Tokenizers do wrap the prompt in a few framing tokens per message (role markers),
# which is what the constant covers.
PROMPT_FRAMING_TOKENS = 16


class Rates(Protocol):
    """What prices a model: a catalog row (AIModelConfig), or the rates a job was held at."""

    @property
    def model_name(self) -> str: ...
    @property
    def credits_per_image(self) -> int | None: ...
    @property
    def tokens_per_credit(self) -> int | None: ...


@dataclass(frozen=True)
class Price:
    credits: int
    rate: dict = field(default_factory=dict)


def _require_count(value, *, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidRequest(f"{name} must be a whole number of at least {low}.",
                             details={name: [f"Must be an integer >= {low}."]})
    return value


def price_images(*, model: Rates, count: int) -> Price:
    """credits_per_image of the tier's model × count."""
    count = _require_count(count, name="count", low=0)
    if not model.credits_per_image:
        raise InvalidRequest(f"{model.model_name} is not priced per image.")
    return Price(credits=model.credits_per_image * count,
                 rate={"model": model.model_name, "credits_per_image": model.credits_per_image, "count": count})


def price_text_tokens(*, model: Rates, total_tokens: int) -> Price:
    """ceil(total_tokens / tokens_per_credit); no tokens cost nothing."""
    total_tokens = _require_count(total_tokens, name="total_tokens", low=0)
    if not model.tokens_per_credit:
        raise InvalidRequest(f"{model.model_name} is not priced per token.")
    credits = -(-total_tokens // model.tokens_per_credit)  # integer ceil: no float rounding at large counts
    return Price(credits=credits,
                 rate={"model": model.model_name, "tokens_per_credit": model.tokens_per_credit,
                       "tokens": total_tokens})


def estimate_prompt_tokens(prompt: str) -> int:
    """A deliberate over-estimate of the prompt's tokens: its UTF-8 bytes plus framing.

    Safe because the hold must cover the worst case: a hold that is too large is released at
    capture (the user pays only the provider-reported tokens), a hold that is too small would let
    a request cost more than was reserved.
    """
    return len(prompt.encode("utf-8")) + PROMPT_FRAMING_TOKENS


def price_text_max(*, model: AIModelConfig, prompt: str, max_tokens: int) -> Price:
    """The text hold: the price of the most tokens the request may use."""
    max_tokens = _require_count(max_tokens, name="max_tokens", low=1)
    price = price_text_tokens(model=model, total_tokens=estimate_prompt_tokens(prompt) + max_tokens)
    return Price(credits=price.credits, rate={**price.rate, "max_tokens": max_tokens})


def price_total(*prices: Price) -> Price:
    """The sum of several prices (an article: text max + images), each part's rate kept."""
    return Price(credits=sum(p.credits for p in prices), rate={"parts": [p.rate for p in prices]})
