"""import_legacy_config through the command, the database and the ai-config API."""

import io
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings, ImageTier, IntegrationProvider
from creditgate.legacy.parsing import LegacyConfigError
from creditgate.legacy.services import legacy_import
from creditgate.legacy.tests.helpers import EXAMPLE_PATH, all_keys, example, image_entry

pytestmark = pytest.mark.django_db


def snapshot() -> dict:
    """Every row of the four tables, updated_at included, so "nothing changed" means no write at all."""
    return {
        "providers": list(IntegrationProvider.objects.order_by("pk").values()),
        "tiers": list(ImageTier.objects.order_by("pk").values()),
        "models": list(AIModelConfig.objects.order_by("pk").values()),
        "settings": list(GlobalIntegrationSettings.objects.order_by("pk").values()),
    }


def run(path, *args) -> str:
    out = io.StringIO()
    call_command("import_legacy_config", str(path), *args, stdout=out)
    return out.getvalue()


def write(tmp_path, data) -> str:
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def empty_catalog():
    AIModelConfig.objects.all().delete()
    ImageTier.objects.all().delete()
    IntegrationProvider.objects.all().delete()
    GlobalIntegrationSettings.objects.all().delete()


def test_import_into_an_empty_database(empty_catalog, client):
    output = run(EXAMPLE_PATH)

    models = {m.model_name: m for m in AIModelConfig.objects.select_related("provider")}
    assert set(models) == {"gpt-5.1", "runware:97@1", "dall-e-3", "google:4@2"}
    text = models["gpt-5.1"]
    assert (text.model_type, text.provider_id, text.tokens_per_credit, text.is_default, text.is_active) == (
        "text", "openai", 1000, True, True)
    assert text.output_usd_per_1m_tokens == Decimal("10.00")
    basic = models["runware:97@1"]
    assert (basic.model_type, basic.provider_id, basic.credits_per_image, basic.quality_tier_id, basic.is_default) == (
        "image", "runware", 1, "basic", True)
    assert (models["google:4@2"].credits_per_image, models["google:4@2"].quality_tier_id) == (15, "premium")
    # The file marks dall-e-3 retired: it is kept for history, inactive, and Quality has no model yet
    # (but has its price, from the file's Quality model).
    assert (models["dall-e-3"].is_active, models["dall-e-3"].quality_tier_id) == (False, "quality")
    assert dict(ImageTier.objects.values_list("tier", "credits_per_image")) == {"basic": 1, "quality": 5,
                                                                                 "premium": 15}
    assert "dall-e-3 is imported inactive" in output and "Tier quality has no active model" in output

    assert set(IntegrationProvider.objects.values_list("provider_id", flat=True)) == {"openai", "runware"}
    settings_row = GlobalIntegrationSettings.objects.get()
    assert (settings_row.image_style, settings_row.max_in_article_images, settings_row.temperature) == (
        "photorealistic", 4, Decimal("0.70"))
    assert "Summary: 10 created, 0 changed, 0 unchanged." in output

    config = client.get("/api/v1/system/ai-config/").json()
    assert [(q["tier"], q["credits_per_image"]) for q in config["image_qualities"]] == [("basic", 1), ("premium", 15)]
    assert config["text_model"] == "gpt-5.1"


def test_import_into_a_seeded_database_keeps_the_quality_tier_served(client):
    before = {m.model_name: (m.is_active, m.quality_tier_id) for m in AIModelConfig.objects.all()}
    assert before["dall-e-3"] == (False, "quality")  # the seed, as the issue describes it

    output = run(EXAMPLE_PATH)

    after = {m.model_name: (m.is_active, m.quality_tier_id) for m in AIModelConfig.objects.all()}
    assert after == before
    assert ("dall-e-3 stays inactive: its provider retired it on 2026-05-12. Tier quality stays with gpt-image-2, "
            "google:2@1.") in output
    assert IntegrationProvider.objects.get(pk="openai").get_api_key() == example()[
        "global_integration_settings"]["openai_api_key"]
    assert AIModelConfig.objects.get(is_default=True, model_type="image").model_name == "runware:97@1"

    config = client.get("/api/v1/system/ai-config/").json()
    assert [(q["tier"], q["credits_per_image"]) for q in config["image_qualities"]] == [
        ("basic", 1), ("quality", 5), ("premium", 15)]


def test_a_legacy_quality_model_that_is_not_retired_does_not_displace_the_seeded_one():
    data = example()
    image_entry(data, "dall-e-3").pop("retires_on")
    AIModelConfig.objects.filter(model_name="dall-e-3").update(retires_on=None)

    report = legacy_import(data=data, dry_run=False)

    assert [m.model_name for m in AIModelConfig.objects.filter(is_active=True, quality_tier="quality")
            .order_by("priority")] == ["gpt-image-2", "google:2@1"]
    assert not AIModelConfig.objects.get(model_name="dall-e-3").is_active
    assert any("tier quality is served by gpt-image-2, google:2@1" in w for w in report.warnings)


def test_a_second_run_changes_nothing(tmp_path):
    run(EXAMPLE_PATH)
    before = snapshot()

    output = run(EXAMPLE_PATH)

    assert snapshot() == before
    assert "0 created, 0 changed" in output
    assert " ~ " not in output and " + " not in output


def test_a_second_run_into_an_empty_database_changes_nothing(empty_catalog):
    run(EXAMPLE_PATH)
    before = snapshot()

    report = legacy_import(data=example(), dry_run=False)

    assert snapshot() == before
    assert not report.changed


def test_the_dry_run_writes_nothing_and_reports_what_the_real_run_does(empty_catalog):
    before = snapshot()

    dry = legacy_import(data=example(), dry_run=True)

    assert snapshot() == before
    real = legacy_import(data=example(), dry_run=False)
    assert dry.tables == real.tables
    assert (dry.not_imported, dry.warnings) == (real.not_imported, real.warnings)
    assert dry.lines()[0].startswith("Dry run: nothing was written")
    assert dry.lines()[-1] == "Summary: 10 would create, 0 would change, 0 unchanged."


def test_the_dry_run_in_a_seeded_database_lists_each_table():
    before = snapshot()

    output = run(EXAMPLE_PATH, "--dry-run")

    assert snapshot() == before
    lines = output.splitlines()
    for heading in ("IntegrationProvider:", "ImageTier:", "AIModelConfig:", "GlobalIntegrationSettings:",
                    "Not imported:"):
        assert heading in lines
    assert "  ~ runware:97@1: is_default: False -> True" in lines
    assert "  = gpt-5.1: unchanged" in lines


def test_keys_are_encrypted_and_never_printed_whole(empty_catalog):
    data = example()

    output = run(EXAMPLE_PATH, "--dry-run") + run(EXAMPLE_PATH)

    for key in all_keys(data):
        assert key not in output
    assert "sk-…1a2b" in output  # the masked form, so an operator can tell which key went where
    assert "anthropic API key sk-…5e6f" in output and "bria API key bria-…7a8b" in output
    openai = IntegrationProvider.objects.get(pk="openai")
    plaintext = data["global_integration_settings"]["openai_api_key"]
    assert plaintext not in openai.api_key_encrypted
    assert openai.get_api_key() == plaintext
    assert openai.api_key_hint == "sk-…1a2b"
    # Keys of providers without an adapter are reported, never stored.
    assert not IntegrationProvider.objects.filter(pk__in=["anthropic", "bria"]).exists()


def test_a_changed_key_is_replaced_and_shown_masked():
    run(EXAMPLE_PATH)
    data = example()
    data["global_integration_settings"]["openai_api_key"] = "sk-proj-rotatedKEY00000000000000009999"

    report = legacy_import(data=data, dry_run=False)

    assert IntegrationProvider.objects.get(pk="openai").get_api_key() == "sk-proj-rotatedKEY00000000000000009999"
    assert "  ~ openai: api_key: sk-…1a2b -> sk-…9999" in report.lines()


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: image_entry(d, "google:4@2").__setitem__("is_default", True), "two legacy defaults for image"),
    (lambda d: image_entry(d, "google:4@2").pop("credits_per_image"),
     "$.constants.image_models[2].credits_per_image: is required"),
    (lambda d: image_entry(d, "google:4@2").__setitem__("credits_per_image", -15),
     "$.constants.image_models[2].credits_per_image: must be a positive whole number (at most 2147483647) (got -15)"),
    (lambda d: image_entry(d, "dall-e-3").__setitem__("provider", "bria"),
     '$.constants.image_models[1].provider: is an unknown provider'),
    (lambda d: image_entry(d, "google:4@2").__setitem__("quality_tier", "basic"), "tier 'basic' is claimed by"),
], ids=["two defaults", "no rate", "negative rate", "unknown provider", "tier claimed twice"])
def test_a_conflict_stops_the_command_before_anything_is_written(tmp_path, mutate, expected):
    data = example()
    data["global_integration_settings"]["temperature"] = 1.1  # would be a change, if anything were written
    mutate(data)
    before = snapshot()

    with pytest.raises(CommandError) as exc:
        run(write(tmp_path, data))

    assert expected in str(exc.value)
    assert "nothing was imported" in str(exc.value)
    assert snapshot() == before


@pytest.mark.parametrize("content, expected", [
    (b"not json at all", "$: not valid JSON"),
    (b"\xff\xfe\x00", "$: "),
    (b"[]", "$: must be an object, not an array"),
    (b'{"version": 1}', "$.constants: is required"),
])
def test_a_malformed_file_is_an_error_naming_the_path_not_a_traceback(tmp_path, content, expected):
    path = tmp_path / "legacy.json"
    path.write_bytes(content)
    before = snapshot()

    with pytest.raises(CommandError) as exc:
        run(path)

    assert expected in str(exc.value)
    assert snapshot() == before


def test_a_missing_file_is_a_plain_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run(tmp_path / "nope.json")


def test_a_model_whose_type_differs_from_the_catalog_is_refused():
    data = example()
    data["constants"]["text_models"].append({"model_name": "google:4@2", "provider": "runware"})
    data["constants"]["image_models"] = [m for m in data["constants"]["image_models"]
                                         if m["model_name"] != "google:4@2"]
    data["global_integration_settings"]["image_quality_models"].pop("premium")
    before = snapshot()

    with pytest.raises(LegacyConfigError) as exc:
        legacy_import(data=data, dry_run=False)

    assert exc.value.errors[0]["path"] == "$.constants.text_models[1].model_name"
    assert "image model in the catalog" in exc.value.errors[0]["message"]
    assert snapshot() == before


def test_the_legacy_default_text_model_replaces_the_catalog_default():
    data = example()
    data["constants"]["text_models"].append({"model_name": "gpt-legacy", "provider": "openai"})
    data["global_integration_settings"]["default_text_model"] = "gpt-legacy"

    legacy_import(data=data, dry_run=False)

    assert AIModelConfig.objects.get(model_type="text", is_default=True).model_name == "gpt-legacy"
    assert not AIModelConfig.objects.get(model_name="gpt-5.1").is_default
    assert AIModelConfig.objects.get(model_name="gpt-legacy").tokens_per_credit == 1000  # the operation rate


def test_a_new_model_in_a_free_tier_serves_it(empty_catalog):
    data = example()
    image_entry(data, "dall-e-3").pop("retires_on")

    legacy_import(data=data, dry_run=False)

    assert AIModelConfig.objects.get(model_name="dall-e-3").is_active


def test_an_explicitly_inactive_model_is_imported_inactive_but_an_active_one_is_never_deactivated():
    data = example()
    data["constants"]["text_models"].append({"model_name": "gpt-old", "provider": "openai", "is_active": False})
    image_entry(data, "google:4@2")["is_active"] = False

    report = legacy_import(data=data, dry_run=False)

    assert not AIModelConfig.objects.get(model_name="gpt-old").is_active
    assert AIModelConfig.objects.get(model_name="google:4@2").is_active
    assert any("google:4@2 stays active" in w for w in report.warnings)


def test_legacy_rates_and_settings_overwrite_the_seed():
    data = example()
    image_entry(data, "google:4@2")["credits_per_image"] = 12
    data["global_integration_settings"]["temperature"] = 0.35

    report = legacy_import(data=data, dry_run=False)

    # The rate is the Premium tier's: every model of the tier is sold at it.
    assert AIModelConfig.objects.get(model_name="google:4@2").credits_per_image == 12
    assert ImageTier.objects.get(tier="premium").credits_per_image == 12
    assert GlobalIntegrationSettings.objects.get().temperature == Decimal("0.35")
    assert "  ~ premium: credits_per_image: 15 -> 12" in report.lines()
    assert "  ~ settings: temperature: 0.70 -> 0.35" in report.lines()


def test_a_failure_while_writing_leaves_nothing_half_imported(monkeypatch, empty_catalog):
    def broken_save(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(GlobalIntegrationSettings, "save", broken_save)
    before = snapshot()

    with pytest.raises(RuntimeError):
        legacy_import(data=example(), dry_run=False)

    assert snapshot() == before


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_real_run_commits_as_one_transaction_on_postgres(postgres_only, seeded_catalog):
    output = run(EXAMPLE_PATH)

    assert "Summary: 0 created, 3 changed, 7 unchanged." in output
    assert run(EXAMPLE_PATH).endswith("Summary: 0 created, 0 changed, 10 unchanged.\n")
    served = AIModelConfig.objects.filter(is_active=True, quality_tier="quality").order_by("priority").first()
    assert served is not None and served.model_name == "gpt-image-2"


def test_importable_providers_are_those_with_an_adapter(monkeypatch):
    import sys
    import types

    from creditgate.legacy.services import importable_provider_ids

    fake = types.ModuleType("creditgate.providers.registry")
    monkeypatch.setattr(fake, "ADAPTERS", {"openai": object, "stability": object}, raising=False)
    monkeypatch.setitem(sys.modules, "creditgate.providers.registry", fake)
    assert importable_provider_ids() == {"openai", "stability"}

    data = example()
    image_entry(data, "runware:97@1")["provider"] = "stability"
    image_entry(data, "google:4@2")["provider"] = "stability"
    report = legacy_import(data=data, dry_run=True)
    assert any(line.startswith("runware API key") for line in report.not_imported)
