"""Provider operations that interfaces call: the admin's "Test key", the model lifecycle check
(manage.py check_model_lifecycle, its Celery beat task, an admin action)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog import services as catalog_services
from creditgate.catalog.models import ProviderListing
from creditgate.catalog.selectors import ServiceAtRisk
from creditgate.providers.base import CredentialCheck, ProviderError, ProviderNotConfigured, call_sync
from creditgate.providers.registry import (
    adapter_for,
    provider_endpoint,
    sandbox_production_warning,
    sandboxed_in_production,
)


def sandbox_warning() -> str | None:
    """What the admin says while the sandbox serves providers in production (naming them), or None."""
    providers = sandboxed_in_production()
    return sandbox_production_warning(providers) if providers else None


def provider_check_credentials(*, provider_id: str) -> CredentialCheck:
    """Ask the provider whether our key works. Never raises for a provider problem: the answer
    is for an operator, in a sentence."""
    try:
        adapter = adapter_for(provider_id=provider_id)
        endpoint = provider_endpoint(provider_id=provider_id, sandbox_path=adapter.sandbox_path)
    except ProviderError as exc:
        return CredentialCheck(ok=False, message=exc.message)
    result = call_sync(adapter.check_credentials)  # an operator's click: this request waits
    if not endpoint.sandboxed:
        return result
    # No key stored and the sandbox on: the emulator answered, not the provider. Say so, or an
    # operator reads "the API key works" about a key that does not exist.
    name = endpoint.provider.display_name or endpoint.provider.provider_id
    if result.ok:
        return CredentialCheck(ok=True, message=f"The sandbox answered ({endpoint.base_url}), not {name}: no API key "
                                                f"is stored, so {name} was not asked. Enter a key to test it.")
    return CredentialCheck(ok=False, message=f"The sandbox ({endpoint.base_url}) did not answer in {name}'s place: "
                                             f"{result.message}")


@dataclass
class LifecycleReport:
    checked: dict[str, int] = field(default_factory=dict)     # provider -> models asked about
    skipped: dict[str, str] = field(default_factory=dict)     # provider -> why not asked (switched off, no key)
    unreachable: dict[str, str] = field(default_factory=dict)  # provider -> why it could not answer
    flagged: list[str] = field(default_factory=list)          # models gone or announced for retirement
    risks: list[ServiceAtRisk] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1: a tier (or text) is about to lose its last model; 2: a provider could not be asked; else 0."""
        return 1 if self.risks else 2 if self.unreachable else 0

    def lines(self) -> list[str]:
        out = [f"{provider}: {count} catalog model(s) checked" for provider, count in self.checked.items()]
        out += [f"{provider}: not checked ({why})" for provider, why in self.skipped.items()]
        out += [f"{provider}: COULD NOT CHECK: {why}" for provider, why in self.unreachable.items()]
        out += [f"  ! {line}" for line in self.flagged]
        out += [f"WARNING: {risk.message}" for risk in self.risks]
        if not self.flagged and not self.risks:
            out.append("Every catalog model checked is offered by its provider, with no retirement announced.")
        return out


def model_lifecycle_check() -> LifecycleReport:
    """Ask each provider which of the catalog's models it still offers, record the answer on
    each model (shown in the admin), and work out which tiers are about to lose their last model
    within CREDITGATE_RETIREMENT_WARNING_DAYS. Changes nothing about routing: the operator does."""
    report = LifecycleReport()
    for provider_id, models in catalog_selectors.models_by_provider().items():
        try:
            adapter = adapter_for(provider_id=provider_id)
        except ProviderNotConfigured as exc:
            report.skipped[provider_id] = exc.message  # its models cannot be served either
            continue
        try:
            listed = call_sync(adapter.list_models, names=[m.model_name for m in models])
            listing = {m.name: m for m in listed}
        except ProviderError as exc:
            report.unreachable[provider_id] = exc.message
            continue
        report.checked[provider_id] = len(models)
        for model in models:
            offered = listing.get(model.model_name)
            row = catalog_services.model_lifecycle_record(
                model=model, offered=offered is not None, shutdown_on=offered.shutdown_on if offered else None,
                deprecated=offered.deprecated if offered else False)
            if row.status != ProviderListing.LISTED:
                when = f" on {row.shutdown_on}" if row.shutdown_on else ""
                state = "active" if model.is_active else "inactive"
                report.flagged.append(f"{model.model_name} ({provider_id}, {state})"
                                      f": {row.get_status_display()}{when}, since {row.since}")
    report.risks = catalog_selectors.services_at_risk(within_days=settings.CREDITGATE_RETIREMENT_WARNING_DAYS)
    return report
