"""The configuration's history, driven through the admin's own forms: who changed what and when,
shown on each object and in one list; a provider's key never recorded, rendered or logged."""

from __future__ import annotations

import logging
import re
from decimal import Decimal

import pytest
from django.apps import apps

from creditgate.audit.models import ConfigChange
from creditgate.catalog import services as catalog_services
from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings, ImageTier, IntegrationProvider

from .admin_forms import submit_change_form

pytestmark = pytest.mark.django_db

SECRET = "sk-proj-HISTORYsecretVALUE0000wxyz"


def premium_model() -> AIModelConfig:
    return AIModelConfig.objects.get(quality_tier="premium", is_active=True)


def model_url(model: AIModelConfig, page: str = "change") -> str:
    return f"/admin/catalog/aimodelconfig/{model.pk}/{page}/"


def newest_change() -> ConfigChange:
    return ConfigChange.objects.latest("id")


def every_history_value() -> str:
    """Every value of every row the history app keeps, as one text."""
    rows: list[str] = []
    for model in apps.get_app_config("audit").get_models():
        rows.extend(repr(row) for row in model._default_manager.values())
    return "\n".join(rows)


def test_a_price_changed_in_the_admin_is_recorded_with_who_when_and_before_after(admin_client, admin_user):
    tier = ImageTier.objects.get(tier="premium")  # an image's price is its tier's
    old = tier.credits_per_image
    versions_before = tier.history.count()
    url = "/admin/catalog/imagetier/premium/"

    response = submit_change_form(admin_client, url + "change/", credits_per_image=str(old + 3))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert tier.history.count() == versions_before + 1
    version = tier.history.first()
    assert (version.credits_per_image, version.history_type, version.history_user) == (old + 3, "~", admin_user)
    change = newest_change()
    assert change.actor == admin_user
    assert change.object_repr == str(tier)
    assert change.changes == [{"field": "credits_per_image", "label": "Credits per image", "old": old,
                               "new": old + 3}]

    history_page = admin_client.get(url + "history/").content.decode()
    assert re.search(rf"Credits per image:</strong>\s*{old}\s*&nbsp;&rarr;&nbsp;&nbsp;{old + 3}\b", history_page)
    assert admin_user.username in history_page

    one_list = admin_client.get("/admin/audit/configchange/").content.decode()
    assert f"<strong>Credits per image</strong>: {old} → {old + 3}" in one_list
    assert str(tier) in one_list


def test_a_save_that_changes_nothing_is_not_listed(admin_client):
    model = premium_model()
    listed = ConfigChange.objects.count()
    assert submit_change_form(admin_client, model_url(model)).status_code == 302
    assert ConfigChange.objects.count() == listed


def test_make_default_records_both_models_it_changed(admin_client, admin_user, text_model_factory):
    old_default = AIModelConfig.objects.get(model_type="text", is_default=True)
    new_default = text_model_factory(model_name="text-b")

    admin_client.post("/admin/catalog/aimodelconfig/", {"action": "make_default", "_selected_action": [new_default.pk]})

    lost, gained = ConfigChange.objects.order_by("-id")[:2][::-1]
    assert (lost.object_id, lost.changes) == (str(old_default.pk), [
        {"field": "is_default", "label": "Is default", "old": True, "new": False}])
    assert (gained.object_id, gained.changes) == (str(new_default.pk), [
        {"field": "is_default", "label": "Is default", "old": False, "new": True}])
    assert lost.actor == gained.actor == admin_user


def test_replacing_and_clearing_a_key_records_only_that_it_happened(admin_client, admin_user, caplog):
    caplog.set_level(logging.DEBUG)
    url = "/admin/catalog/integrationprovider/openai/change/"
    provider = IntegrationProvider.objects.get(pk="openai")
    versions_before = provider.history.count()

    response = submit_change_form(admin_client, url, new_api_key=SECRET, display_name="OpenAI (prod)")

    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.get_api_key() == SECRET
    ciphertext, hint = provider.api_key_encrypted, provider.api_key_hint
    # One version for one save, with the other field it changed and what happened to the key.
    assert provider.history.count() == versions_before + 1
    replaced = provider.history.first()
    assert (replaced.api_key_change, replaced.history_user) == ("replaced", admin_user)
    assert newest_change().changes == [
        {"field": "display_name", "label": "Display name", "old": "OpenAI", "new": "OpenAI (prod)"},
        {"field": "api_key", "label": "API key", "old": None, "new": "key replaced"}]

    assert submit_change_form(admin_client, url, clear_api_key="on").status_code == 302
    cleared = provider.history.first()
    assert (cleared.api_key_change, cleared.history_user) == ("cleared", admin_user)
    assert newest_change().changes == [{"field": "api_key", "label": "API key", "old": None, "new": "key cleared"}]

    # The key, its ciphertext and its hint are nowhere: not in a row, a page or a log line.
    historical_columns = {f.name for f in type(replaced)._meta.get_fields()}
    assert not {"api_key_encrypted", "api_key_hint"} & historical_columns
    pages = [admin_client.get(page).content.decode() for page in (
        url.replace("change/", "history/"),
        f"{url.replace('change/', 'history/')}{replaced.history_id}/",
        "/admin/audit/configchange/",
        f"/admin/audit/configchange/{newest_change().pk}/change/",
    )]
    assert "key replaced" in pages[0] and "key cleared" in pages[0] and "key replaced" in pages[2]
    for text in [every_history_value(), caplog.text, *pages]:
        for secret in (SECRET, ciphertext, hint):
            assert secret not in text


def test_a_key_rotation_is_recorded_as_the_same_key(settings):
    from cryptography.fernet import Fernet

    provider = IntegrationProvider.objects.get(pk="runware")
    catalog_services.provider_update_key(provider=provider, api_key=SECRET)
    settings.CREDITGATE_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.CREDITGATE_ENCRYPTION_KEYS]

    assert catalog_services.provider_keys_rotate() == 1

    assert provider.history.first().api_key_change == "reencrypted"
    assert newest_change().changes == [{"field": "api_key", "label": "API key", "old": None,
                                        "new": "key re-encrypted (same key)"}]
    assert SECRET not in every_history_value()


def test_a_settings_change_is_recorded(admin_client, admin_user):
    url = "/admin/catalog/globalintegrationsettings/1/change/"
    response = submit_change_form(admin_client, url, image_style="cinematic", usd_per_credit="0.012")
    assert response.status_code == 302
    change = newest_change()
    assert change.actor == admin_user
    assert change.changes == [
        {"field": "image_style", "label": "Image style", "old": "photorealistic", "new": "cinematic"},
        {"field": "usd_per_credit", "label": "USD per credit", "old": None, "new": "0.012"}]
    assert GlobalIntegrationSettings.history.first().usd_per_credit == Decimal("0.012")


def test_a_change_from_a_shell_is_recorded_without_an_actor():
    model = premium_model()
    model.display_name = "Renamed in a shell"
    model.save()
    change = newest_change()
    assert change.actor is None
    assert change.changes[0]["new"] == "Renamed in a shell"


def test_the_history_began_with_every_row_as_it_stood():
    """Migration 0002 recorded the seeded catalog, so the first change has its "before"."""
    for model in (AIModelConfig, IntegrationProvider, GlobalIntegrationSettings):
        for row in model.objects.all():
            first = row.history.order_by("history_id").first()
            assert first is not None and first.history_type == "+", row


def test_the_one_list_is_for_staff_only(client, django_user_model):
    user = django_user_model.objects.create_user(username="walt", password="pw-12345678")
    client.force_login(user)
    response = client.get("/admin/audit/configchange/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
