"""Every catalog rule is a database rule: the ORM gets an IntegrityError, the admin a form error."""

import pytest
from django.db import DataError, IntegrityError, transaction

from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings, ImageTier, IntegrationProvider

from .conftest import catalog_state

pytestmark = pytest.mark.django_db


def _image(provider, **overrides):
    return AIModelConfig(**{"model_name": "test-image", "display_name": "Test image", "model_type": "image",
                            "provider": provider, "quality_tier_id": "basic", "is_active": False, **overrides})


def _text(provider, **overrides):
    return AIModelConfig(**{"model_name": "test-text", "display_name": "Test text", "model_type": "text",
                            "provider": provider, "tokens_per_credit": 500, **overrides})


BAD_MODELS = {
    "text without tokens_per_credit": lambda p: _text(p, tokens_per_credit=None),
    "text with zero tokens_per_credit": lambda p: _text(p, tokens_per_credit=0),
    "text with a tier": lambda p: _text(p, quality_tier_id="basic"),
    "image with tokens_per_credit": lambda p: _image(p, tokens_per_credit=100),
    "second default text model": lambda p: _text(p, is_default=True),
    "default on an inactive model": lambda p: _image(p, is_active=False, is_default=True),
    "unknown tier": lambda p: _image(p, quality_tier_id="deluxe"),
    "unknown model type": lambda p: _text(p, model_type="audio"),
    "zero images per call": lambda p: _image(p, max_images_per_call=0),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_orm_refuses_bad_model_row(case, openai):
    before = catalog_state()
    row = BAD_MODELS[case](openai)
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()
    assert catalog_state() == before


def test_orm_refuses_making_an_existing_row_bad_by_update(openai):
    # The rule holds for updates too, not only inserts (a shell, a migration).
    with pytest.raises(IntegrityError), transaction.atomic():
        AIModelConfig.objects.filter(model_name="gpt-5.1").update(is_active=False)
    assert AIModelConfig.objects.get(model_name="gpt-5.1").is_active


def test_good_rows_are_accepted(openai):
    # The constraints are not simply refusing everything. An image model without a tier has no
    # price and is never served, but may be kept (a model being set up).
    _text(openai).save()
    _image(openai, is_active=True, quality_tier_id=None).save()
    _image(openai, model_name="another-inactive-quality", quality_tier_id="quality", is_active=False).save()
    _image(openai, model_name="test-second-active-basic", is_active=True).save()  # a backup of the tier
    assert AIModelConfig.objects.filter(model_name__startswith="test-").count() == 3


def test_two_active_models_of_one_tier_cannot_carry_different_prices(openai, runware):
    """By construction of the schema: an image model has no price column at all; its price is its
    tier's row, and a tier has one row (its primary key). So every model of a tier, active or not,
    reads the one price, and changing it changes it for all of them at once."""
    assert "credits_per_image" not in {f.name for f in AIModelConfig._meta.concrete_fields}
    assert [f.name for f in ImageTier._meta.concrete_fields if f.primary_key] == ["tier"]
    backup = AIModelConfig.objects.create(model_name="test-basic-backup", display_name="Backup", model_type="image",
                                          provider=openai, quality_tier_id="basic", is_active=True, priority=2)
    primary = AIModelConfig.objects.get(model_name="runware:97@1")
    assert (primary.is_active, primary.credits_per_image, backup.credits_per_image) == (True, 1, 1)
    # A second price for the tier is a second row with the same key: the database refuses it.
    with pytest.raises(IntegrityError), transaction.atomic():
        ImageTier.objects.create(tier="basic", credits_per_image=2)
    ImageTier.objects.filter(tier="basic").update(credits_per_image=3)
    assert {m.credits_per_image for m in AIModelConfig.objects.filter(quality_tier="basic")} == {3}


@pytest.mark.parametrize("price", [0, -1, None])
def test_orm_refuses_a_tier_price_that_is_not_positive(price):
    before = catalog_state()
    with pytest.raises(IntegrityError), transaction.atomic():
        ImageTier.objects.filter(tier="basic").update(credits_per_image=price)
    assert catalog_state() == before


def test_a_tier_with_models_cannot_be_deleted():
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        ImageTier.objects.get(tier="basic").delete()
    assert ImageTier.objects.filter(tier="basic").exists()


@pytest.mark.parametrize("provider_id", ["Open AI", "OpenAI", "9lives", "", "open.ai", "-x"])
def test_orm_refuses_a_provider_id_that_is_not_a_slug(provider_id):
    with pytest.raises(IntegrityError), transaction.atomic():
        IntegrationProvider.objects.create(provider_id=provider_id)
    assert not IntegrationProvider.objects.filter(provider_id=provider_id).exists()


def test_orm_refuses_a_provider_id_longer_than_32():
    # PostgreSQL refuses it by the column's length (DataError), SQLite by the CHECK.
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        IntegrationProvider.objects.create(provider_id="a" * 33)
    assert not IntegrationProvider.objects.filter(provider_id="a" * 33).exists()


def test_orm_refuses_a_second_settings_row():
    assert GlobalIntegrationSettings.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        GlobalIntegrationSettings.objects.create(id=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        GlobalIntegrationSettings.objects.create(id=1)
    assert GlobalIntegrationSettings.objects.count() == 1


@pytest.mark.parametrize("field,value", [("temperature", 2.5), ("max_images_per_request", 0),
                                         ("max_images_per_request", 21), ("max_in_article_images", 21)])
def test_orm_refuses_out_of_range_settings(field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        GlobalIntegrationSettings.objects.filter(id=1).update(**{field: value})


# --- the same rules through the admin: a readable form error, nothing saved -------------------

def _model_form_data(model: AIModelConfig) -> dict:
    def opt(v):
        return "" if v is None else str(v)

    return {
        "model_name": model.model_name, "display_name": model.display_name, "model_type": model.model_type,
        "provider": model.provider_id, "is_active": "on" if model.is_active else "",
        "is_default": "on" if model.is_default else "", "quality_tier": opt(model.quality_tier_id),
        "priority": str(model.priority), "tokens_per_credit": opt(model.tokens_per_credit),
        "usd_per_image": "", "input_usd_per_1m_tokens": "", "output_usd_per_1m_tokens": "",
        "sizes": "[]", "max_images_per_call": str(model.max_images_per_call), "optional_params": "[]",
        "request_defaults": "{}", "max_output_tokens": "", "retires_on": "", "notes": "",
    }


ADMIN_MESSAGES = {
    "text without tokens_per_credit": "A text model needs tokens per credit above 0",
    "text with zero tokens_per_credit": "A text model needs tokens per credit above 0",
    "text with a tier": "A text model needs tokens per credit above 0, and no quality tier",
    "image with tokens_per_credit": "An image model is priced by its quality tier, not by tokens per credit",
    "second default text model": "Another model of this type is already the default",
    "default on an inactive model": "Only an active model can be the default",
    "unknown tier": "Select a valid choice",
    "unknown model type": "Select a valid choice",
    "zero images per call": "Images per call must be at least 1.",
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_admin_add_form_shows_the_rule(case, admin_client, openai):
    before = catalog_state()
    response = admin_client.post("/admin/catalog/aimodelconfig/add/", _model_form_data(BAD_MODELS[case](openai)))
    assert response.status_code == 200
    assert ADMIN_MESSAGES[case] in response.content.decode()
    assert catalog_state() == before


def test_admin_change_form_shows_the_rule_and_keeps_the_row(admin_client):
    model = AIModelConfig.objects.get(model_name="runware:97@1")
    before = catalog_state()
    data = _model_form_data(model) | {"tokens_per_credit": "100"}
    response = admin_client.post(f"/admin/catalog/aimodelconfig/{model.pk}/change/", data)
    assert response.status_code == 200
    assert "An image model is priced by its quality tier" in response.content.decode()
    assert catalog_state() == before


def test_admin_change_form_saves_a_good_change(admin_client):
    # A second active model in a tier is a backup, not an error.
    model = AIModelConfig.objects.get(model_name="runware:97@1")
    data = _model_form_data(model) | {"quality_tier": "premium", "priority": "2"}
    response = admin_client.post(f"/admin/catalog/aimodelconfig/{model.pk}/change/", data)
    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.quality_tier_id, model.priority, model.credits_per_image) == ("premium", 2, 15)


def test_admin_tier_page_sets_the_price_of_every_model_of_the_tier(admin_client):
    response = admin_client.post("/admin/catalog/imagetier/quality/change/", {
        "credits_per_image": "6",
        "models-TOTAL_FORMS": "0", "models-INITIAL_FORMS": "0", "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000"})
    assert response.status_code == 302
    assert {m.credits_per_image for m in AIModelConfig.objects.filter(quality_tier="quality")} == {6}


def test_admin_tier_page_refuses_a_zero_price(admin_client):
    before = catalog_state()
    response = admin_client.post("/admin/catalog/imagetier/quality/change/", {
        "credits_per_image": "0",
        "models-TOTAL_FORMS": "0", "models-INITIAL_FORMS": "0", "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000"})
    assert response.status_code == 200
    assert "Credits per image must be above 0." in response.content.decode()
    assert catalog_state() == before


def test_admin_refuses_a_provider_id_that_is_not_a_slug(admin_client):
    before = catalog_state()
    response = admin_client.post("/admin/catalog/integrationprovider/add/",
                                 {"provider_id": "Open AI", "display_name": "x", "is_active": "on", "base_url": ""})
    assert response.status_code == 200
    assert "The provider id must be a slug" in response.content.decode()
    assert catalog_state() == before


def test_admin_settings_form_shows_the_range_rule(admin_client):
    before = catalog_state()
    response = admin_client.post("/admin/catalog/globalintegrationsettings/1/change/", {
        "image_style": "photorealistic", "max_in_article_images": "4", "temperature": "0.7",
        "max_images_per_request": "25", "default_max_tokens": "1024"})
    assert response.status_code == 200
    assert "Images per request must be between 1 and 20." in response.content.decode()
    assert catalog_state() == before


def test_admin_cannot_add_a_second_settings_row(admin_client):
    assert admin_client.get("/admin/catalog/globalintegrationsettings/add/").status_code == 403
    response = admin_client.post("/admin/catalog/globalintegrationsettings/add/", {
        "image_style": "x", "max_in_article_images": "4", "temperature": "0.7",
        "max_images_per_request": "8", "default_max_tokens": "1024"})
    assert response.status_code == 403
    assert GlobalIntegrationSettings.objects.count() == 1
