"""Which adapter serves a provider, with which key and base URL.

The key, the base URL and the active flag come from IntegrationProvider rows; nothing here
knows a model. With no key and the sandbox on, the provider is served by the local emulator,
so a laptop and the tests need no real key.
"""

from __future__ import annotations

from django.conf import settings

from creditgate.catalog.selectors import provider_get
from creditgate.providers.base import CallPolicy, ProviderAdapter, ProviderNotConfigured
from creditgate.providers.openai import OpenAIAdapter
from creditgate.providers.runware import RunwareAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "runware": RunwareAdapter,
}

SANDBOX_API_KEY = "sandbox"


def adapter_for(*, provider_id: str) -> ProviderAdapter:
    adapter_class = ADAPTERS.get(provider_id)
    provider = provider_get(provider_id)
    if provider is None or adapter_class is None:
        raise ProviderNotConfigured(f"The AI provider '{provider_id}' is not configured.")
    name = provider.display_name or provider.provider_id
    if not provider.is_active:
        raise ProviderNotConfigured(f"The AI provider {name} is switched off.")

    api_key = provider.get_api_key()
    base_url = provider.base_url or None
    if not api_key:
        if not settings.CREDITGATE_SANDBOX:
            raise ProviderNotConfigured(f"The AI provider {name} has no API key.")
        api_key = SANDBOX_API_KEY
        base_url = f"{settings.CREDITGATE_SANDBOX_URL.rstrip('/')}/{adapter_class.sandbox_path}"
    return adapter_class(api_key=api_key, base_url=base_url, policy=CallPolicy.from_settings())
