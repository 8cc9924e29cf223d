"""Which adapter, key and base URL serve a provider; and the operator's "Test key" service."""

import pytest

from creditgate.catalog.models import IntegrationProvider
from creditgate.providers.base import ProviderNotConfigured, call_sync
from creditgate.providers.openai import OpenAIAdapter
from creditgate.providers.registry import adapter_for
from creditgate.providers.runware import RunwareAdapter
from creditgate.providers.services import provider_check_credentials

pytestmark = pytest.mark.django_db


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(ProviderNotConfigured) as caught:
        adapter_for(provider_id="nope")
    assert "'nope' is not configured" in caught.value.message
    assert caught.value.code == "provider_not_configured"


def test_a_provider_row_without_an_adapter_is_not_configured():
    IntegrationProvider.objects.get_or_create(provider_id="resend", display_name="Resend")  # billing seeds it
    with pytest.raises(ProviderNotConfigured):
        adapter_for(provider_id="resend")


def test_inactive_provider_is_refused_even_with_a_key(settings):
    settings.CREDITGATE_SANDBOX = True
    provider = IntegrationProvider.objects.get(provider_id="openai")
    provider.set_api_key("sk-real-key-0001")
    provider.is_active = False
    provider.save()
    with pytest.raises(ProviderNotConfigured) as caught:
        adapter_for(provider_id="openai")
    assert "switched off" in caught.value.message


def test_no_key_and_sandbox_off_is_not_configured(settings):
    settings.CREDITGATE_SANDBOX = False
    with pytest.raises(ProviderNotConfigured) as caught:
        adapter_for(provider_id="runware")
    assert caught.value.message == "The AI provider Runware has no API key."


@pytest.mark.parametrize("provider_id, adapter_class, path", [("openai", OpenAIAdapter, "openai/v1"),
                                                              ("runware", RunwareAdapter, "runware/v1")])
def test_no_key_and_sandbox_on_is_the_sandbox(settings, provider_id, adapter_class, path):
    settings.CREDITGATE_SANDBOX = True
    settings.CREDITGATE_SANDBOX_URL = "http://127.0.0.1:8765/"

    adapter = adapter_for(provider_id=provider_id)

    assert type(adapter) is adapter_class
    assert adapter.base_url == f"http://127.0.0.1:8765/{path}"
    assert adapter.api_key == "sandbox"


@pytest.mark.parametrize("provider_id, default", [("openai", "https://api.openai.com/v1"),
                                                  ("runware", "https://api.runware.ai/v1")])
def test_a_real_key_goes_to_the_real_api_even_with_the_sandbox_on(settings, provider_id, default):
    settings.CREDITGATE_SANDBOX = True
    provider = IntegrationProvider.objects.get(provider_id=provider_id)
    provider.set_api_key("real-key-abcdef")
    provider.save()

    adapter = adapter_for(provider_id=provider_id)

    assert adapter.base_url == default and adapter.api_key == "real-key-abcdef"


def test_base_url_override_is_used(settings):
    settings.CREDITGATE_SANDBOX = False
    provider = IntegrationProvider.objects.get(provider_id="openai")
    provider.set_api_key("sk-proxy-key")
    provider.base_url = "https://proxy.example.com/openai/v1/"
    provider.save()

    assert adapter_for(provider_id="openai").base_url == "https://proxy.example.com/openai/v1"


def test_timeouts_and_retries_come_from_settings(settings):
    settings.CREDITGATE_SANDBOX = True
    settings.CREDITGATE_PROVIDER_IMAGE_TIMEOUT = 42
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 5
    policy = adapter_for(provider_id="runware").policy
    assert policy.image_timeout == 42.0 and policy.max_retries == 5 and policy.connect_timeout == 5.0


# The "Test key" service.

@pytest.mark.parametrize("provider_id, name", [("openai", "OpenAI"), ("runware", "Runware")])
def test_check_credentials_through_the_sandbox_names_the_sandbox(sandbox, provider_id, name):
    check = provider_check_credentials(provider_id=provider_id)
    assert check.ok, check.message
    # Not "the API key works: OpenAI answered": no key is stored, the emulator answered.
    assert check.message.startswith(f"The sandbox answered ({sandbox.url}/{provider_id}"), check.message
    assert f"not {name}: no API key is stored" in check.message


@pytest.mark.parametrize("provider_id, name", [("openai", "OpenAI"), ("runware", "Runware")])
def test_a_wrong_key_is_reported_plainly_and_never_echoed(sandbox, provider_id, name):
    provider = IntegrationProvider.objects.get(provider_id=provider_id)
    provider.set_api_key("wrong-key-31337")
    provider.base_url = f"{sandbox.url}/{provider_id}/v1"
    provider.save()

    check = provider_check_credentials(provider_id=provider_id)

    assert not check.ok
    assert check.message == f"{name} rejected the API key."


def test_check_of_an_unconfigured_provider_says_why(settings):
    settings.CREDITGATE_SANDBOX = False
    check = provider_check_credentials(provider_id="openai")
    assert not check.ok and check.message == "The AI provider OpenAI has no API key."


def test_one_adapter_is_reused_across_jobs_until_what_it_was_built_from_changes(settings, sandbox):
    """Reused: its HTTP clients keep their connections and SSL contexts. Rebuilt: a new key,
    base URL or call policy takes effect for the very next call."""
    first = adapter_for(provider_id="openai")
    assert isinstance(first, OpenAIAdapter)
    assert adapter_for(provider_id="openai") is first
    again = adapter_for(provider_id="openai")
    assert again is first

    async def clients_on_one_loop():
        return first._client(first.policy.text_timeout), again._client(first.policy.text_timeout)

    client, same = call_sync(clients_on_one_loop)
    assert same is client  # every call on one event loop (the runner's) shares one client
    other, _ = call_sync(clients_on_one_loop)
    assert other is not client  # another loop builds its own: a connection pool never crosses loops

    provider = IntegrationProvider.objects.get(provider_id="openai")
    provider.set_api_key("sk-rotated-key-0002")
    provider.save()
    rotated = adapter_for(provider_id="openai")
    assert rotated is not first and rotated.api_key == "sk-rotated-key-0002"
    assert adapter_for(provider_id="openai") is rotated

    settings.CREDITGATE_PROVIDER_TEXT_TIMEOUT = 7.0
    assert adapter_for(provider_id="openai").policy.text_timeout == 7.0
