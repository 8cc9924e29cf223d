"""The legacy format's rules: every refusal names the JSON path and the value at fault."""

from decimal import Decimal

import pytest

from creditgate.legacy.parsing import LegacyConfigError, legacy_export_parse, legacy_json_load
from creditgate.legacy.tests.helpers import IMPORTABLE, all_keys, example, image_entry


def parse(data):
    return legacy_export_parse(data=data, importable_providers=IMPORTABLE)


def errors_of(data) -> list[dict]:
    with pytest.raises(LegacyConfigError) as exc:
        parse(data)
    return exc.value.errors


def paths_of(data) -> list[str]:
    return [e["path"] for e in errors_of(data)]


def test_the_example_file_means_what_the_documentation_says():
    export = parse(example())

    assert [k.provider_id for k in export.keys] == ["openai", "runware"]
    assert [k.provider_id for k in export.unused_keys] == ["anthropic", "bria"]
    assert export.defaults == {"text": "gpt-5.1", "image": "runware:97@1"}
    tiers = {m.model_name: m.quality_tier for m in export.models.values() if m.model_type == "image"}
    assert tiers == {"runware:97@1": "basic", "dall-e-3": "quality", "google:4@2": "premium"}
    text = export.models["gpt-5.1"]
    assert (text.provider_id, text.tokens_per_credit, text.output_usd_per_1m_tokens) == ("openai", 1000,
                                                                                         Decimal("10.0000"))
    assert export.models["google:4@2"].credits_per_image == 15
    assert export.settings == {"image_style": "photorealistic", "max_in_article_images": 4,
                               "temperature": Decimal("0.70")}
    assert len(export.ignored) == 1 and "$.credit_cost_config[2]" in export.ignored[0]


def test_two_legacy_defaults_for_one_type_are_refused_naming_both():
    data = example()
    image_entry(data, "google:4@2")["is_default"] = True

    (error,) = errors_of(data)
    assert error["path"] == "$.global_integration_settings.default_image_model"
    assert "runware:97@1" in error["message"] and "google:4@2" in error["message"]
    assert "$.constants.image_models[2].is_default" in error["message"]


def test_two_text_models_flagged_default_are_refused():
    data = example()
    del data["global_integration_settings"]["default_text_model"]
    data["constants"]["text_models"][0]["is_default"] = True
    data["constants"]["text_models"].append({"model_name": "gpt-4o", "provider": "openai", "is_default": True})

    (error,) = errors_of(data)
    assert "two legacy defaults for text models" in error["message"]
    assert "gpt-4o" in error["message"]


def test_an_image_model_with_no_rate_is_refused_at_its_path():
    data = example()
    del image_entry(data, "google:4@2")["credits_per_image"]

    assert paths_of(data) == ["$.constants.image_models[2].credits_per_image"]


def test_a_text_model_with_no_rate_is_refused():
    data = example()
    data["credit_cost_config"] = []

    (error,) = errors_of(data)
    assert error["path"] == "$.constants.text_models[0].model_name"
    assert "no rate" in error["message"] and error["value"] == "gpt-5.1"


@pytest.mark.parametrize("bad", [0, -5, 1.5, "5", True, None, [], {}, 2**31, float("inf"), float("nan")])
def test_a_credits_per_image_that_is_not_a_positive_whole_number_is_refused(bad):
    data = example()
    image_entry(data, "google:4@2")["credits_per_image"] = bad

    (error,) = errors_of(data)
    assert error["path"] == "$.constants.image_models[2].credits_per_image"
    assert error["value"] == bad or bad != bad  # NaN is never equal to itself


@pytest.mark.parametrize("bad", [0, -1000, "1000", 0.5])
def test_a_tokens_per_credit_that_is_not_positive_is_refused(bad):
    data = example()
    data["credit_cost_config"][0]["tokens_per_credit"] = bad

    assert "$.credit_cost_config[0].tokens_per_credit" in paths_of(data)


def test_a_model_of_an_unknown_provider_is_refused():
    data = example()
    image_entry(data, "dall-e-3")["provider"] = "bria"

    (error,) = errors_of(data)
    assert error["path"] == "$.constants.image_models[1].provider"
    assert error["value"] == "bria"
    assert "openai, runware" in error["message"]


def test_a_key_of_a_provider_without_an_adapter_is_set_aside_not_refused():
    data = example()
    data["global_integration_settings"]["stability_api_key"] = "sk-stab-0123456789abcdef"

    export = parse(data)
    assert "stability" in {k.provider_id for k in export.unused_keys}
    assert "stability" not in {k.provider_id for k in export.keys}


def test_a_tier_claimed_by_two_models_is_refused():
    data = example()
    image_entry(data, "google:4@2")["quality_tier"] = "basic"

    errors = errors_of(data)
    assert errors[0]["path"] == "$.global_integration_settings.image_quality_models.basic"
    assert "runware:97@1" in errors[0]["message"] and "google:4@2" in errors[0]["message"]


def test_a_tier_given_twice_in_the_file_is_refused():
    text = EXAMPLE_TEXT_WITH_DUPLICATE_TIER
    data = legacy_json_load(text=text)

    assert "$.global_integration_settings.image_quality_models.quality" in paths_of(data)


def test_a_model_in_two_tiers_is_refused():
    data = example()
    data["global_integration_settings"]["image_quality_models"]["quality"] = "google:4@2"
    image_entry(data, "dall-e-3").pop("retires_on")

    (error,) = errors_of(data)
    assert "claimed for two tiers" in error["message"]


def test_a_model_named_in_the_settings_but_not_in_the_constants_is_refused():
    data = example()
    data["global_integration_settings"]["default_text_model"] = "gpt-9"

    errors = errors_of(data)
    assert errors[0]["path"] == "$.global_integration_settings.default_text_model"
    assert errors[0]["value"] == "gpt-9"


def test_an_image_model_named_as_the_text_default_is_refused():
    data = example()
    data["global_integration_settings"]["default_text_model"] = "google:4@2"

    assert "$.global_integration_settings.default_text_model" in paths_of(data)


def test_operation_rates_that_disagree_need_a_per_model_row():
    data = example()
    data["credit_cost_config"] = [
        {"operation_type": "content_generation", "tokens_per_credit": 1000},
        {"operation_type": "idea_generation", "tokens_per_credit": 500},
    ]

    (error,) = errors_of(data)
    assert "more than one rate" in error["message"]
    assert "$.credit_cost_config[1].tokens_per_credit = 500" in error["message"]


def test_a_per_model_row_chooses_between_operation_rates():
    data = example()
    data["credit_cost_config"] = [
        {"operation_type": "content_generation", "tokens_per_credit": 1000},
        {"operation_type": "idea_generation", "tokens_per_credit": 500},
        {"model_name": "gpt-5.1", "tokens_per_credit": 750},
    ]

    assert parse(data).models["gpt-5.1"].tokens_per_credit == 750


def test_a_token_rate_for_an_image_model_is_refused():
    data = example()
    data["credit_cost_config"].append({"model_name": "google:4@2", "tokens_per_credit": 100})

    assert "$.credit_cost_config[3].model_name" in paths_of(data)


def test_a_file_that_is_not_json_names_line_and_column():
    with pytest.raises(LegacyConfigError) as exc:
        legacy_json_load(text='{"version": 1,\n  "constants": }')
    assert exc.value.errors[0]["path"] == "$"
    assert "line 2 column" in exc.value.message


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d.pop("constants"), "$.constants"),
    (lambda d: d.pop("credit_cost_config"), "$.credit_cost_config"),
    (lambda d: d.pop("global_integration_settings"), "$.global_integration_settings"),
    (lambda d: d["constants"].pop("image_models"), "$.constants.image_models"),
    (lambda d: d["constants"].__setitem__("image_models", {"a": 1}), "$.constants.image_models"),
    (lambda d: d["constants"]["image_models"].__setitem__(1, "dall-e-3"), "$.constants.image_models[1]"),
    (lambda d: d["global_integration_settings"].__setitem__("max_in_article_images", "4"),
     "$.global_integration_settings.max_in_article_images"),
    (lambda d: d["global_integration_settings"].__setitem__("temperature", 2.5),
     "$.global_integration_settings.temperature"),
    (lambda d: d["global_integration_settings"].__setitem__("temprature", 0.7),
     "$.global_integration_settings.temprature"),
    (lambda d: d["constants"]["text_models"][0].__setitem__("provider", 7), "$.constants.text_models[0].provider"),
    (lambda d: d.__setitem__("version", 2), "$.version"),
    (lambda d: d["credit_cost_config"][0].__setitem__("is_active", "yes"), "$.credit_cost_config[0].is_active"),
    (lambda d: image_entry(d, "dall-e-3").__setitem__("retires_on", "12/05/2026"),
     "$.constants.image_models[1].retires_on"),
], ids=["no constants", "no credit_cost_config", "no settings", "no image_models", "image_models not an array",
        "model not an object", "count as a string", "temperature out of range", "misspelt field",
        "provider not a string", "unknown version", "is_active not a boolean", "date not ISO"])
def test_malformed_input_names_its_path(mutate, path):
    data = example()
    mutate(data)

    assert path in paths_of(data)


def test_a_document_that_is_not_an_object_is_refused():
    assert paths_of([1, 2]) == ["$"]


def test_a_malformed_key_is_never_echoed():
    data = example()
    data["global_integration_settings"]["openai_api_key"] = "x" * 600

    with pytest.raises(LegacyConfigError) as exc:
        parse(data)
    assert "x" * 20 not in str(exc.value.errors)


def test_every_problem_is_reported_at_once():
    data = example()
    image_entry(data, "google:4@2")["credits_per_image"] = 0
    data["constants"]["text_models"][0]["provider"] = "anthropic"

    assert set(paths_of(data)) == {"$.constants.image_models[2].credits_per_image",
                                   "$.constants.text_models[0].provider"}


def test_no_key_is_ever_part_of_a_parse_error():
    data = example()
    data["global_integration_settings"]["temperature"] = "warm"

    with pytest.raises(LegacyConfigError) as exc:
        parse(data)
    for key in all_keys(data):
        assert key not in str(exc.value.errors) and key not in exc.value.message


EXAMPLE_TEXT_WITH_DUPLICATE_TIER = """
{"version": 1,
 "global_integration_settings": {
   "image_quality_models": {"quality": "dall-e-3", "basic": "runware:97@1", "quality": "google:4@2"}},
 "constants": {"text_models": [], "image_models": [
   {"model_name": "runware:97@1", "provider": "runware", "credits_per_image": 1},
   {"model_name": "dall-e-3", "provider": "openai", "credits_per_image": 5},
   {"model_name": "google:4@2", "provider": "runware", "credits_per_image": 15}]},
 "credit_cost_config": []}
"""
