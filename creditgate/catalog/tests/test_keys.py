"""Provider API keys: encrypted at rest, rotatable, and never shown back."""

import io
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from creditgate.catalog import crypto, services
from creditgate.catalog.models import IntegrationProvider

pytestmark = pytest.mark.django_db

SECRET = "sk-proj-THISISASECRETKEYabc123xyz9f2c"


def _raw_column(provider_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted, api_key_hint FROM catalog_integrationprovider "
                       "WHERE provider_id = %s", [provider_id])
        return " ".join(cursor.fetchone())


@pytest.fixture
def stored(openai):
    return services.provider_update_key(provider=openai, api_key=SECRET)


def test_stored_key_is_not_readable_in_the_raw_table(stored):
    raw = _raw_column("openai")
    assert SECRET not in raw
    assert "THISISASECRETKEY" not in raw
    assert IntegrationProvider.objects.get(provider_id="openai").get_api_key() == SECRET


def test_hint_is_the_masked_form(stored):
    assert stored.api_key_hint == "sk-…9f2c"


def test_clearing_the_key(stored):
    services.provider_update_key(provider=stored, api_key="")
    row = IntegrationProvider.objects.get(provider_id="openai")
    assert (row.has_key, row.api_key_hint, row.get_api_key()) == (False, "", "")


def test_a_key_with_whitespace_inside_is_refused_without_echoing_it(openai):
    from creditgate.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as excinfo:
        services.provider_update_key(provider=openai, api_key="sk-abc def-ghijklmnop")
    assert "abc" not in str(excinfo.value) and "abc" not in str(excinfo.value.details)
    assert not IntegrationProvider.objects.get(provider_id="openai").has_key


def test_key_is_in_no_repr_and_no_log(stored, caplog):
    caplog.set_level(logging.DEBUG)
    services.provider_update_key(provider=stored, api_key=SECRET)
    services.provider_keys_rotate()
    assert SECRET not in repr(stored) and SECRET not in str(stored)
    assert stored.api_key_encrypted not in repr(stored)
    assert SECRET not in caplog.text


def test_an_undecryptable_key_says_so_without_key_material(stored, settings):
    settings.CREDITGATE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    row = IntegrationProvider.objects.get(provider_id="openai")
    with pytest.raises(crypto.KeyDecryptionError) as excinfo:
        row.get_api_key()
    assert row.api_key_encrypted not in str(excinfo.value)
    assert excinfo.value.status_code == 503


def test_key_appears_in_no_api_response(stored, client):
    for url in ["/api/v1/system/ai-config/", "/api/schema/"]:
        response = client.get(url)
        assert response.status_code == 200
        body = response.content.decode()
        assert SECRET not in body and stored.api_key_encrypted not in body and "9f2c" not in body


def test_key_appears_in_no_admin_page(stored, admin_client):
    pages = ["/admin/catalog/integrationprovider/", "/admin/catalog/integrationprovider/openai/change/",
             "/admin/catalog/integrationprovider/openai/history/", "/admin/catalog/aimodelconfig/",
             "/admin/catalog/integrationprovider/?q=openai"]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert SECRET not in html, url
        assert stored.api_key_encrypted not in html, url
    # the masked form is what the operator sees
    assert "sk-…9f2c" in admin_client.get("/admin/catalog/integrationprovider/").content.decode()


def test_rotation_reencrypts_every_key_under_the_newest(stored, runware, settings):
    services.provider_update_key(provider=runware, api_key="rw-anothersecretkey0042")
    old_key = settings.CREDITGATE_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    before = _raw_column("openai")

    settings.CREDITGATE_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert _raw_column("openai") != before

    settings.CREDITGATE_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert IntegrationProvider.objects.get(provider_id="openai").get_api_key() == SECRET
    assert IntegrationProvider.objects.get(provider_id="runware").get_api_key() == "rw-anothersecretkey0042"


def test_rotation_without_the_old_key_changes_nothing(stored, runware, settings):
    services.provider_update_key(provider=runware, api_key="rw-anothersecretkey0042")
    old_key = settings.CREDITGATE_ENCRYPTION_KEYS[0]
    settings.CREDITGATE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    before = (_raw_column("openai"), _raw_column("runware"))
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("rotate_encryption_keys")
    assert (_raw_column("openai"), _raw_column("runware")) == before
    settings.CREDITGATE_ENCRYPTION_KEYS = [old_key]
    assert IntegrationProvider.objects.get(provider_id="openai").get_api_key() == SECRET
