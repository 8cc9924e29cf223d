"""The one pricing path: the design note's numbers and the monotone property."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditgate.catalog.models import AIModelConfig
from creditgate.core.errors import InvalidRequest
from creditgate.credits import pricing


def image_model(name: str, credits_per_image: int) -> AIModelConfig:
    model = AIModelConfig(model_name=name, model_type="image")
    model.credits_per_image = credits_per_image  # pinned on the instance (an image's price is its tier's)
    return model


# Unsaved rows: the pricing functions read only the rate fields of the model passed in.
IMAGE = image_model("img", 5)
TEXT = AIModelConfig(model_name="txt", model_type="text", tokens_per_credit=1000)


@pytest.mark.django_db
@pytest.mark.parametrize("tier, per_image", [("basic", 1), ("quality", 5), ("premium", 15)])
@pytest.mark.parametrize("count", range(1, 9))
def test_seeded_tiers_cost_the_design_notes_credits_per_image_times_count(tier, per_image, count):
    from creditgate.catalog.selectors import models_servable_by_tier

    price = pricing.price_images(model=models_servable_by_tier()[tier], count=count)
    assert price.credits == per_image * count
    assert price.rate["credits_per_image"] == per_image and price.rate["count"] == count


@pytest.mark.parametrize("tokens, credits", [(0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (2000, 2), (2001, 3)])
def test_text_is_the_ceiling_of_tokens_over_tokens_per_credit(tokens, credits):
    price = pricing.price_text_tokens(model=TEXT, total_tokens=tokens)
    assert price.credits == credits
    assert price.rate == {"model": "txt", "tokens_per_credit": 1000, "tokens": tokens}


def test_ceil_is_exact_for_huge_token_counts():
    assert pricing.price_text_tokens(model=TEXT, total_tokens=10**18 + 1).credits == 10**15 + 1


def test_the_text_hold_covers_the_prompt_estimate_plus_max_tokens():
    prompt = "héllo"  # 6 UTF-8 bytes
    estimate = pricing.estimate_prompt_tokens(prompt)
    assert estimate >= 6
    price = pricing.price_text_max(model=TEXT, prompt=prompt, max_tokens=1000)
    assert price.credits == -(-(estimate + 1000) // 1000)
    assert price.rate["max_tokens"] == 1000


def test_the_total_sums_the_parts_and_keeps_each_rate():
    text = pricing.price_text_max(model=TEXT, prompt="p", max_tokens=500)
    images = pricing.price_images(model=IMAGE, count=4)
    total = pricing.price_total(text, images)
    assert total.credits == text.credits + 20
    assert total.rate == {"parts": [text.rate, images.rate]}


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2", None])
def test_a_bad_count_is_refused_naming_the_field(bad):
    with pytest.raises(InvalidRequest) as exc:
        pricing.price_images(model=IMAGE, count=bad)
    assert "count" in exc.value.details


def test_a_model_priced_the_other_way_cannot_be_used():
    with pytest.raises(InvalidRequest):
        pricing.price_images(model=TEXT, count=1)
    with pytest.raises(InvalidRequest):
        pricing.price_text_tokens(model=IMAGE, total_tokens=1)


@given(per_image=st.integers(1, 1000), a=st.integers(0, 100), b=st.integers(0, 100))
def test_image_cost_is_monotone_in_count(per_image, a, b):
    model = image_model("m", per_image)
    low, high = sorted((a, b))
    assert pricing.price_images(model=model, count=low).credits <= pricing.price_images(model=model, count=high).credits


@given(tpc=st.integers(1, 100_000), a=st.integers(0, 10**9), b=st.integers(0, 10**9))
def test_text_cost_is_monotone_in_tokens_and_never_undercharges(tpc, a, b):
    model = AIModelConfig(model_name="m", model_type="text", tokens_per_credit=tpc)
    low, high = sorted((a, b))
    cost_low = pricing.price_text_tokens(model=model, total_tokens=low).credits
    cost_high = pricing.price_text_tokens(model=model, total_tokens=high).credits
    assert cost_low <= cost_high
    assert cost_high * tpc >= high > (cost_high - 1) * tpc or high == 0 == cost_high


@given(prompt=st.text(max_size=200), a=st.integers(1, 10**6), b=st.integers(1, 10**6))
def test_the_text_hold_is_monotone_in_max_tokens_and_covers_the_prompt(prompt, a, b):
    low, high = sorted((a, b))
    assert (pricing.price_text_max(model=TEXT, prompt=prompt, max_tokens=low).credits
            <= pricing.price_text_max(model=TEXT, prompt=prompt, max_tokens=high).credits)
    # Every byte-level BPE token is at least one byte: the estimate can never be short.
    assert pricing.estimate_prompt_tokens(prompt) >= len(prompt.encode("utf-8"))
