"""Several models per tier in priority order, one price per tier; text's default and backups."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from creditgate.catalog import selectors
from creditgate.catalog.models import AIModelConfig, ImageTier, IntegrationProvider
from creditgate.credits import pricing

pytestmark = pytest.mark.django_db

URL = "/api/v1/system/ai-config/"


def _names(models) -> list[str]:
    return [m.model_name for m in models]


def test_the_seeded_quality_tier_has_a_backup_on_another_provider():
    routing = selectors.routing_get()
    quality = routing.image_models_ordered["quality"]
    assert _names(quality) == ["gpt-image-2", "google:2@1"]
    assert [m.provider_id for m in quality] == ["openai", "runware"]
    assert routing.image_models["quality"] is quality[0]
    assert {t: _names(ms) for t, ms in routing.image_models_ordered.items()} == {
        "basic": ["runware:97@1"], "quality": ["gpt-image-2", "google:2@1"], "premium": ["google:4@2"]}
    # Whichever model serves, the user pays the tier's price.
    assert [pricing.price_images(model=m, count=3).credits for m in quality] == [15, 15]


def test_priority_orders_a_tier_and_the_first_is_what_image_models_names():
    AIModelConfig.objects.filter(model_name="google:2@1").update(priority=0)
    from creditgate.catalog.ai_config_cache import ai_config_invalidate

    ai_config_invalidate()  # queryset.update() sends no signal
    routing = selectors.routing_get()
    assert _names(routing.image_models_ordered["quality"]) == ["google:2@1", "gpt-image-2"]
    assert routing.image_models["quality"].model_name == "google:2@1"


def test_equal_priorities_go_by_model_name(openai):
    AIModelConfig.objects.create(model_name="a-first-by-name", display_name="A", model_type="image",
                                 provider=openai, quality_tier_id="quality", priority=1)
    assert _names(selectors.routing_get().image_models_ordered["quality"]) == [
        "a-first-by-name", "gpt-image-2", "google:2@1"]


def test_a_model_that_cannot_be_served_leaves_the_order_and_its_backup_moves_up():
    openai = IntegrationProvider.objects.get(provider_id="openai")
    openai.is_active = False
    openai.save()
    routing = selectors.routing_get()
    assert _names(routing.image_models_ordered["quality"]) == ["google:2@1"]
    assert routing.image_models["quality"].model_name == "google:2@1"
    assert routing.image_models["quality"].credits_per_image == 5


def test_text_has_the_default_then_its_backups_by_priority(text_model_factory):
    text_model_factory(model_name="text-backup-2", priority=20, tokens_per_credit=800)
    text_model_factory(model_name="text-backup-1", priority=10, tokens_per_credit=900)
    text_model_factory(model_name="text-inactive", priority=1, is_active=False)
    routing = selectors.routing_get()
    assert _names(routing.text_models_ordered) == ["gpt-5.1", "text-backup-1", "text-backup-2"]
    assert routing.text_model is not None and routing.text_model.model_name == "gpt-5.1"


def test_without_its_default_text_is_served_by_the_first_backup(client, text_model_factory, runware):
    text_model_factory(model_name="text-backup", priority=10, tokens_per_credit=900, provider=runware)
    openai = IntegrationProvider.objects.get(provider_id="openai")
    openai.is_active = False
    openai.save()
    served = selectors.routing_get().text_model
    assert served is not None and served.model_name == "text-backup"
    body = client.get(URL).json()
    assert (body["text_model"], body["tokens_per_credit"]) == ("text-backup", 900)


def test_a_routing_built_with_only_first_models_routes_to_exactly_those():
    routing = selectors.routing_get()
    legacy = selectors.Routing(settings=routing.settings, text_model=routing.text_model,
                               image_models=routing.image_models)
    assert legacy.image_models_ordered == {t: (m,) for t, m in routing.image_models.items()}
    assert legacy.text_models_ordered == (routing.text_model,)


def test_a_pinned_price_is_the_instances_only():
    model = AIModelConfig.objects.get(model_name="gpt-image-2")
    model.credits_per_image = 50  # what a job does: price by the rate it held
    assert model.credits_per_image == 50
    model.save()
    assert AIModelConfig.objects.get(model_name="gpt-image-2").credits_per_image == 5
    assert ImageTier.objects.get(tier="quality").credits_per_image == 5
    assert AIModelConfig.objects.get(model_name="gpt-5.1").credits_per_image is None


def test_the_tier_page_lists_a_tiers_models_in_order_and_reorders_them(admin_client):
    page = admin_client.get("/admin/catalog/imagetier/").content.decode()
    assert "gpt-image-2 → google:2@1" in page
    primary, backup = (AIModelConfig.objects.get(model_name=n) for n in ("gpt-image-2", "google:2@1"))
    data = {"credits_per_image": "5", "models-TOTAL_FORMS": "2", "models-INITIAL_FORMS": "2",
            "models-MIN_NUM_FORMS": "0", "models-MAX_NUM_FORMS": "1000"}
    rows = AIModelConfig.objects.filter(quality_tier="quality").order_by("-is_active", "priority", "model_name")
    forms = [m for m in rows if m.is_active]
    assert forms == [primary, backup]
    for i, (model, priority) in enumerate([(primary, 3), (backup, 1)]):
        data |= {f"models-{i}-id": str(model.pk), f"models-{i}-quality_tier": "quality",
                 f"models-{i}-priority": str(priority)}
    # The inline lists the tier's inactive models too (dall-e-3): give the formset all of them.
    inactive = list(AIModelConfig.objects.filter(quality_tier="quality", is_active=False))
    data["models-TOTAL_FORMS"] = data["models-INITIAL_FORMS"] = str(2 + len(inactive))
    for i, model in enumerate(inactive, start=2):
        data |= {f"models-{i}-id": str(model.pk), f"models-{i}-quality_tier": "quality",
                 f"models-{i}-priority": str(model.priority)}
    response = admin_client.post("/admin/catalog/imagetier/quality/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert _names(selectors.routing_get().image_models_ordered["quality"]) == ["google:2@1", "gpt-image-2"]


def test_the_model_form_links_to_its_tiers_price(admin_client):
    model = AIModelConfig.objects.get(model_name="google:2@1")
    page = admin_client.get(f"/admin/catalog/aimodelconfig/{model.pk}/change/").content.decode()
    # The price is set above the AI models list (issue 26: Models and Providers are the two pages).
    assert "5 credits per image" in page and "/admin/catalog/aimodelconfig/#tier-prices" in page


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_each_tiers_current_price_to_the_tier(seeded_catalog):
    """Back to the layout with a price per model, change a price there, and forward again: the
    tier's row carries the active model's price, and the way back restores the model prices."""
    executor = MigrationExecutor(connection)
    executor.migrate([("catalog", "0005_credit_value")])
    old = executor.loader.project_state([("catalog", "0005_credit_value")]).apps
    OldModel = old.get_model("catalog", "AIModelConfig")
    assert dict(OldModel.objects.filter(is_active=True, model_type="image")
                .values_list("quality_tier", "credits_per_image")) == {"basic": 1, "quality": 5, "premium": 15}
    assert not OldModel.objects.filter(model_name="google:2@1").exists()  # 0006 undone
    OldModel.objects.filter(model_name="runware:97@1").update(credits_per_image=2)
    OldModel.objects.filter(model_name="dall-e-3").update(credits_per_image=9)  # inactive: not the tier's price

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(ImageTier.objects.values_list("tier", "credits_per_image")) == {
        "basic": 2, "quality": 5, "premium": 15}
    routing_quality = list(AIModelConfig.objects.filter(quality_tier="quality", is_active=True)
                       .order_by("priority"))
    assert [(m.model_name, m.priority) for m in routing_quality] == [("gpt-image-2", 1), ("google:2@1", 2)]
