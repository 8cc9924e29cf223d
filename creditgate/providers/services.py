"""Provider operations that interfaces (the admin's "Test key" action) call."""

from __future__ import annotations

from creditgate.providers.base import CredentialCheck, ProviderError
from creditgate.providers.registry import adapter_for


def provider_check_credentials(*, provider_id: str) -> CredentialCheck:
    """Ask the provider whether our key works. Never raises for a provider problem: the answer
    is for an operator, in a sentence."""
    try:
        adapter = adapter_for(provider_id=provider_id)
    except ProviderError as exc:
        return CredentialCheck(ok=False, message=exc.message)
    return adapter.check_credentials()
