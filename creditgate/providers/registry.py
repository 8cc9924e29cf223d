"""Which adapter serves a provider, with which key and base URL.

The key, the base URL and the active flag come from IntegrationProvider rows; nothing here
knows a model. With no key and the sandbox on, the provider is served by the local emulator,
so a laptop and the tests need no real key. `provider_endpoint` is that rule for any provider
row: the AI providers' adapters and billing's payment and email clients alike, except that
Stripe and Resend are never sandboxed in production (`sandbox_may_serve`).

One adapter per provider is kept for the process and reused by every job, so its HTTP clients
keep their connections alive (the OpenAI SDK builds an SSL context and a connection pool per
client: about 20 ms a job when built each time). It is replaced as soon as what it was built
from changes: the provider's key, base URL or active flag, the sandbox settings, or the call
policy (timeouts, retries).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings

from creditgate.catalog.models import IntegrationProvider
from creditgate.catalog.selectors import provider_get
from creditgate.providers.base import CallPolicy, ProviderAdapter, ProviderNotConfigured
from creditgate.providers.openai import OpenAIAdapter
from creditgate.providers.runware import RunwareAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "runware": RunwareAdapter,
}

SANDBOX_API_KEY = "sandbox"


@dataclass(frozen=True)
class Endpoint:
    """Where and with which key to call a provider. `sandboxed`: the local emulator serves it."""

    provider: IntegrationProvider
    api_key: str
    base_url: str | None
    sandboxed: bool

    def __repr__(self) -> str:  # never the key
        return f"<Endpoint {self.provider.provider_id} {self.base_url or 'default URL'} sandboxed={self.sandboxed}>"


def sandbox_may_serve(provider_id: str) -> bool:
    """Whether the sandbox stands in for `provider_id` when it has no key: an AI provider while
    CREDITGATE_SANDBOX is on; any other (Stripe, Resend) only in development as well
    (CREDITGATE_SANDBOX_PAYMENTS, which DEBUG sets): a sandboxed payment is no payment."""
    if not settings.CREDITGATE_SANDBOX:
        return False
    return provider_id in ADAPTERS or settings.CREDITGATE_SANDBOX_PAYMENTS


def sandboxed_in_production() -> list[str]:
    """The providers the sandbox serves although this is production (DEBUG off, CREDITGATE_SANDBOX
    on): the active AI providers without a key, by id; empty in development. What /ready/ and the
    admin name, so an operator cannot miss that generation is emulated. No key is decrypted."""
    if not settings.CREDITGATE_SANDBOX or settings.CREDITGATE_SANDBOX_PAYMENTS:
        return []
    rows = IntegrationProvider.objects.filter(is_active=True, api_key_encrypted="").order_by("provider_id")
    return [p for p in rows.values_list("provider_id", flat=True) if sandbox_may_serve(p)]


def sandbox_production_warning(providers: list[str] | None = None) -> str | None:
    """The warning to show while the sandbox serves providers in production, or None."""
    if not settings.CREDITGATE_SANDBOX or settings.CREDITGATE_SANDBOX_PAYMENTS:
        return None
    named = ", ".join(providers) if providers is not None else "every AI provider without a key"
    return (f"CREDITGATE_SANDBOX is on with DEBUG off: {named or 'no provider for now'} served by the sandbox "
            f"({settings.CREDITGATE_SANDBOX_URL}), not the real provider; users are charged for emulated output. "
            "Stripe and Resend are never sandboxed in production.")


def _provider_usable(*, provider_id: str, kind: str, provider: IntegrationProvider | None = None
                     ) -> IntegrationProvider:
    """The provider's row if it can be called (with its key, or by the sandbox); otherwise
    ProviderNotConfigured naming it a `kind`. Decrypts nothing. `provider`: the row when the
    caller already has it (no query then)."""
    if provider is None or provider.provider_id != provider_id:
        provider = provider_get(provider_id)
    if provider is None:
        raise ProviderNotConfigured(f"The {kind} '{provider_id}' is not configured.")
    name = provider.display_name or provider.provider_id
    if not provider.is_active:
        raise ProviderNotConfigured(f"The {kind} {name} is switched off.")
    if not provider.api_key_encrypted and not sandbox_may_serve(provider_id):
        raise ProviderNotConfigured(f"The {kind} {name} has no API key.")
    return provider


def _endpoint_of(provider: IntegrationProvider, *, sandbox_path: str) -> Endpoint:
    api_key = provider.get_api_key()
    if api_key:
        return Endpoint(provider=provider, api_key=api_key, base_url=provider.base_url or None, sandboxed=False)
    if not sandbox_may_serve(provider.provider_id):
        raise ProviderNotConfigured(f"{provider.display_name or provider.provider_id} has no API key.")
    return Endpoint(provider=provider, api_key=SANDBOX_API_KEY, sandboxed=True,
                    base_url=f"{settings.CREDITGATE_SANDBOX_URL.rstrip('/')}/{sandbox_path}")


def provider_endpoint(*, provider_id: str, sandbox_path: str, kind: str = "AI provider") -> Endpoint:
    """The key and base URL to call `provider_id` with: its own key and `base_url`, or, without a
    key while CREDITGATE_SANDBOX is on, the sandbox at `sandbox_path`. ProviderNotConfigured
    (naming it a `kind`) when the row is missing, switched off, or has no key with the sandbox off."""
    return _endpoint_of(_provider_usable(provider_id=provider_id, kind=kind), sandbox_path=sandbox_path)


_adapters: dict[str, tuple[tuple, ProviderAdapter]] = {}
_adapters_lock = threading.Lock()


def adapter_for(*, provider_id: str, provider: IntegrationProvider | None = None) -> ProviderAdapter:
    """The adapter serving `provider_id`. `provider`: its row when the caller already has it (the
    charge path's models come with theirs from the catalog routing): no query then."""
    adapter_class = ADAPTERS.get(provider_id)
    if adapter_class is None:
        raise ProviderNotConfigured(f"The AI provider '{provider_id}' is not configured.")
    provider = _provider_usable(provider_id=provider_id, kind="AI provider", provider=provider)

    policy = CallPolicy.from_settings()
    built_from = (provider.api_key_encrypted, provider.base_url, settings.CREDITGATE_SANDBOX_URL, policy)
    with _adapters_lock:
        kept = _adapters.get(provider_id)
        if kept is not None and kept[0] == built_from:
            return kept[1]
        endpoint = _endpoint_of(provider, sandbox_path=adapter_class.sandbox_path)
        adapter = adapter_class(api_key=endpoint.api_key, base_url=endpoint.base_url, policy=policy)
        # A replaced adapter is not closed: jobs still using it finish their calls, and its
        # connections close when the last of them drops it.
        _adapters[provider_id] = (built_from, adapter)
    return adapter
