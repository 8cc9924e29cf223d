"""The catalog admin: provider keys write-only, make-default, retirement warnings, the singleton."""

import datetime as dt
from types import SimpleNamespace

import pytest
from django.utils import timezone

from creditgate.catalog import services
from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings, IntegrationProvider

from .conftest import catalog_state

pytestmark = pytest.mark.django_db

PROVIDER_URL = "/admin/catalog/integrationprovider/openai/change/"
SECRET = "sk-proj-ADMINSECRETvalue00001234"


def _provider_form(**extra):
    return {"display_name": "OpenAI", "is_active": "on", "base_url": "", **extra}


def test_new_key_is_stored_encrypted_and_never_rendered_back(admin_client):
    response = admin_client.post(PROVIDER_URL, _provider_form(new_api_key=SECRET))
    assert response.status_code == 302
    provider = IntegrationProvider.objects.get(provider_id="openai")
    assert provider.get_api_key() == SECRET
    page = admin_client.get(PROVIDER_URL).content.decode()
    assert SECRET not in page
    assert 'type="password"' in page
    assert "sk-…1234" in page


def test_the_posted_key_is_hidden_from_error_reports(admin_client):
    response = admin_client.post(PROVIDER_URL, _provider_form(new_api_key=SECRET))
    assert list(response.wsgi_request.sensitive_post_parameters) == ["new_api_key", "new_signing_secret"]


def test_saving_without_a_new_key_keeps_the_stored_one(admin_client):
    services.provider_update_key(provider=IntegrationProvider.objects.get(pk="openai"), api_key=SECRET)
    admin_client.post(PROVIDER_URL, _provider_form(display_name="OpenAI (prod)"))
    provider = IntegrationProvider.objects.get(provider_id="openai")
    assert (provider.display_name, provider.get_api_key()) == ("OpenAI (prod)", SECRET)


def test_clear_checkbox_removes_the_key(admin_client):
    services.provider_update_key(provider=IntegrationProvider.objects.get(pk="openai"), api_key=SECRET)
    admin_client.post(PROVIDER_URL, _provider_form(clear_api_key="on"))
    provider = IntegrationProvider.objects.get(provider_id="openai")
    assert not provider.has_key and provider.api_key_hint == ""


def test_new_key_and_clear_together_is_a_form_error(admin_client):
    before = catalog_state()
    response = admin_client.post(PROVIDER_URL, _provider_form(new_api_key=SECRET, clear_api_key="on"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Either enter a new key or clear the stored one" in html
    assert SECRET not in html
    assert catalog_state() == before


def test_adding_a_provider_with_a_key(admin_client):
    response = admin_client.post("/admin/catalog/integrationprovider/add/",
                                 {"provider_id": "postmark", "display_name": "Postmark", "is_active": "on",
                                  "base_url": "", "new_api_key": "pm_0123456789abcdef"})
    assert response.status_code == 302
    assert IntegrationProvider.objects.get(provider_id="postmark").get_api_key() == "pm_0123456789abcdef"


def test_test_key_action_shows_the_check_result(admin_client, monkeypatch):
    from creditgate.providers import services as provider_services

    answers = {"openai": SimpleNamespace(ok=True, message="the key works."),
               "runware": SimpleNamespace(ok=False, message="Runware: the key was rejected (401).")}
    monkeypatch.setattr(provider_services, "provider_check_credentials",
                        lambda *, provider_id: answers[provider_id], raising=False)
    response = admin_client.post("/admin/catalog/integrationprovider/",
                                 {"action": "test_key", "_selected_action": ["openai", "runware"]}, follow=True)
    html = response.content.decode()
    assert "OpenAI: the key works." in html
    assert "Runware: the key was rejected (401)." in html
    assert "Runware: Runware:" not in html


def test_make_default_action_swaps_the_default(admin_client, text_model_factory):
    new = text_model_factory()
    response = admin_client.post("/admin/catalog/aimodelconfig/",
                                 {"action": "make_default", "_selected_action": [new.pk]}, follow=True)
    assert "is now the default text model" in response.content.decode()
    assert list(AIModelConfig.objects.filter(model_type="text", is_default=True)) == [new]


def test_make_default_action_on_an_inactive_model_is_a_message_not_a_500(admin_client, text_model_factory):
    inactive = text_model_factory(is_active=False)
    before = catalog_state()
    response = admin_client.post("/admin/catalog/aimodelconfig/",
                                 {"action": "make_default", "_selected_action": [inactive.pk]}, follow=True)
    assert response.status_code == 200
    assert "only an active model can be the default" in response.content.decode()
    assert catalog_state() == before


def test_make_default_action_refuses_two_of_one_type(admin_client, text_model_factory):
    new = text_model_factory()
    gpt = AIModelConfig.objects.get(model_name="gpt-5.1")
    before = catalog_state()
    response = admin_client.post("/admin/catalog/aimodelconfig/",
                                 {"action": "make_default", "_selected_action": [new.pk, gpt.pk]}, follow=True)
    assert "Select one text model to make default, not 2." in response.content.decode()
    assert catalog_state() == before


def test_model_list_warns_about_a_tier_whose_model_retires_soon(admin_client):
    model = AIModelConfig.objects.get(quality_tier="premium", is_active=True)
    model.retires_on = timezone.localdate() + dt.timedelta(days=12)
    model.save()
    html = admin_client.get("/admin/catalog/aimodelconfig/").content.decode().replace("&#x27;", "'")
    assert "retires in 12 days" in html
    assert "a model of the Premium tier, retires in 12 days" in html
    # It is the tier's only model: the tier itself is about to go.
    assert f"The Premium tier loses its last model on {model.retires_on}, in 12 days" in html


def test_a_tier_with_a_backup_is_not_at_risk_when_one_model_retires(admin_client):
    model = AIModelConfig.objects.get(model_name="gpt-image-2")
    model.retires_on = timezone.localdate() + dt.timedelta(days=12)
    model.save()
    html = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert "a model of the Quality tier, retires in 12 days" in html
    assert "loses its last model" not in html


def test_model_list_marks_a_retired_active_model(admin_client):
    model = AIModelConfig.objects.get(quality_tier="basic", is_active=True)
    model.retires_on = timezone.localdate() - dt.timedelta(days=1)
    model.save()
    html = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert "RETIRED" in html and "has retired" in html


def test_model_list_without_retirements_has_no_warning(admin_client):
    html = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert "RETIRED" not in html and "retires in" not in html  # dall-e-3 is retired but inactive
    assert "gpt-image-2" in html and "runware:97@1" in html


def test_model_list_filters(admin_client):
    html = admin_client.get("/admin/catalog/aimodelconfig/?model_type__exact=text").content.decode()
    assert "gpt-5.1" in html and "runware:97@1" not in html


def test_settings_list_opens_the_single_row(admin_client):
    response = admin_client.get("/admin/catalog/globalintegrationsettings/")
    assert response.status_code == 302
    assert response["Location"].endswith("/admin/catalog/globalintegrationsettings/1/change/")
    page = admin_client.get(response["Location"]).content.decode()
    assert "photorealistic" in page
    assert "deletelink" not in page


def test_settings_cannot_be_deleted(admin_client):
    response = admin_client.post("/admin/catalog/globalintegrationsettings/1/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert GlobalIntegrationSettings.objects.count() == 1


def test_settings_change_saves(admin_client):
    response = admin_client.post("/admin/catalog/globalintegrationsettings/1/change/", {
        "image_style": "cinematic", "max_in_article_images": "3", "temperature": "0.5",
        "max_images_per_request": "6", "default_max_tokens": "512"})
    assert response.status_code == 302
    row = GlobalIntegrationSettings.objects.get()
    assert (row.image_style, row.max_images_per_request) == ("cinematic", 6)


def test_tier_prices_are_seen_and_changed_on_the_ai_models_page(admin_client, client):
    from creditgate.catalog.models import ImageTier

    page = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    for tier in ImageTier.objects.all():
        assert f'name="{tier.tier}"' in page and f'value="{tier.credits_per_image}"' in page
    prices = {t.tier: t.credits_per_image for t in ImageTier.objects.all()}

    response = admin_client.post("/admin/catalog/aimodelconfig/tier-prices/", {**prices, "quality": 7}, follow=True)

    assert response.status_code == 200
    assert "The Quality tier now costs 7 credits per image." in response.content.decode()
    assert ImageTier.objects.get(tier="quality").credits_per_image == 7
    config = client.get("/api/v1/system/ai-config/").json()
    shown = {q["tier"]: q["credits_per_image"] for q in config["image_qualities"]}
    assert shown.get("quality", 7) == 7
    # The change is in the configuration history, like one made on the Image tiers page.
    assert ImageTier.history.filter(tier="quality", credits_per_image=7).exists()


def test_a_bad_tier_price_changes_nothing(admin_client):
    from creditgate.catalog.models import ImageTier

    before = {t.tier: t.credits_per_image for t in ImageTier.objects.all()}
    response = admin_client.post("/admin/catalog/aimodelconfig/tier-prices/", {**before, "basic": 0}, follow=True)
    assert "Nothing was saved." in response.content.decode()
    assert {t.tier: t.credits_per_image for t in ImageTier.objects.all()} == before
