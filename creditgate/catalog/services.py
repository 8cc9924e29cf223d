"""Writes to the catalog (the ai-config payload, which also reads the circuit breakers, is providers.ai_config)."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from creditgate.audit.tracking import KeyChange, SigningSecretChange
from creditgate.catalog import crypto, selectors
from creditgate.catalog.ai_config_cache import ai_config_invalidate
from creditgate.catalog.models import (
    AIModelConfig,
    ImageTier,
    IntegrationProvider,
    ModelLifecycle,
    ProviderListing,
)
from creditgate.core.errors import InvalidRequest

logger = logging.getLogger(__name__)


@transaction.atomic
def model_make_default(*, model: AIModelConfig) -> AIModelConfig:
    """Make `model` the default of its type, unsetting the previous one in the same transaction."""
    # Lock every row of this type in a fixed order, so two concurrent swaps serialize instead of
    # both clearing and both setting (the partial unique index would then reject one of them).
    list(AIModelConfig.objects.select_for_update().filter(model_type=model.model_type).order_by("pk"))
    model.refresh_from_db()
    if not model.is_active:
        raise InvalidRequest(f"{model} is not active; only an active model can be the default.",
                             details={"model": [f"{model.model_name} is not active."]})
    # Saved row by row (at most one), not with queryset.update(): each save is recorded in the
    # configuration history with who made it.
    for previous in AIModelConfig.objects.filter(model_type=model.model_type, is_default=True).exclude(pk=model.pk):
        previous.is_default = False
        previous.save(update_fields=["is_default", "updated_at"])
    if not model.is_default:
        model.is_default = True
        model.save(update_fields=["is_default", "updated_at"])
    ai_config_invalidate()
    return model


@transaction.atomic
def tier_prices_set(*, prices: dict[str, int]) -> list[str]:
    """Set tiers' prices (credits per image) at once: {tier: credits}. Only changed rows are saved
    (each change a version in the configuration history); returns the tiers that changed."""
    changed = []
    for tier in ImageTier.objects.select_for_update().filter(tier__in=list(prices)).order_by("tier"):
        credits = prices[tier.tier]
        if isinstance(credits, bool) or not isinstance(credits, int) or credits < 1:
            raise InvalidRequest(f"The {tier} tier's price must be a whole number of credits, 1 or more.",
                                 details={tier.tier: ["Must be a whole number, 1 or more."]})
        if tier.credits_per_image != credits:
            tier.credits_per_image = credits
            tier.save(update_fields=["credits_per_image", "updated_at"])
            changed.append(tier.tier)
    return changed


def api_key_normalize(api_key: str, *, field: str = "api_key", what: str = "an API key") -> str:
    """The key (or another secret) as it will be stored; InvalidRequest for what cannot be one
    (never quoting it)."""
    api_key = (api_key or "").strip()
    if any(ch.isspace() for ch in api_key):
        raise InvalidRequest(f"{what[0].upper()}{what[1:]} has no spaces or line breaks; paste it again.",
                             details={field: ["Contains whitespace."]})
    if len(api_key) > 500:
        raise InvalidRequest(f"That is too long to be {what}.", details={field: ["Too long."]})
    return api_key


def provider_update_key(*, provider: IntegrationProvider, api_key: str, save_all_fields: bool = False
                        ) -> IntegrationProvider:
    """Store a new API key for `provider` (encrypted), or clear it with an empty string.

    `save_all_fields`: also save the provider's other (edited) fields in the same write, so a form
    that changes both records one version in the history, not two.
    """
    return provider_update_secrets(provider=provider, api_key=api_key, save_all_fields=save_all_fields)


def provider_update_secrets(*, provider: IntegrationProvider, api_key: str | None = None,
                            signing_secret: str | None = None, save_all_fields: bool = False) -> IntegrationProvider:
    """Replace (a value) or clear (an empty string) the provider's API key and/or its signing
    secret; None leaves one as it is. One save, so one version in the history.

    `save_all_fields`: also save the provider's other (edited) fields in the same write.
    """
    fields = ["updated_at"]
    if api_key is not None:
        api_key = api_key_normalize(api_key)
        provider.set_api_key(api_key)
        fields += ["api_key_encrypted", "api_key_hint"]
    if signing_secret is not None:
        signing_secret = api_key_normalize(signing_secret, field="signing_secret", what="a signing secret")
        provider.set_signing_secret(signing_secret)
        fields += ["signing_secret_encrypted", "signing_secret_hint"]
    provider.save(update_fields=None if save_all_fields else fields)
    if api_key is not None:
        logger.info("provider %s: API key %s", provider.provider_id, "replaced" if api_key else "cleared")
    if signing_secret is not None:
        logger.info("provider %s: signing secret %s", provider.provider_id,
                    "replaced" if signing_secret else "cleared")
    return provider


@transaction.atomic
def provider_keys_rotate() -> int:
    """Re-encrypt every stored API key under the newest CREDITGATE_ENCRYPTION_KEYS entry.

    Afterwards the older encryption keys can be removed from the setting. All or nothing: a key
    that no configured encryption key can decrypt aborts the rotation (KeyDecryptionError).
    Returns how many keys were re-encrypted.
    """
    count = 0
    for provider in selectors.providers_with_stored_key().select_for_update():
        fields = ["updated_at"]
        if provider.api_key_encrypted:
            provider.api_key_encrypted = crypto.rotate(provider.api_key_encrypted)
            provider._key_change = KeyChange.REENCRYPTED  # the history says the key stayed the same
            fields.append("api_key_encrypted")
            count += 1
        if provider.signing_secret_encrypted:
            provider.signing_secret_encrypted = crypto.rotate(provider.signing_secret_encrypted)
            provider._signing_secret_change = SigningSecretChange.REENCRYPTED
            fields.append("signing_secret_encrypted")
            count += 1
        provider.save(update_fields=fields)
    logger.info("re-encrypted %d provider API keys under the newest encryption key", count)
    return count


def model_lifecycle_record(*, model: AIModelConfig, offered: bool, shutdown_on: dt.date | None = None,
                           deprecated: bool = False) -> ModelLifecycle:
    """Record what `model`'s provider says about it now: offered or not, and a retirement it
    announced. Changes nothing about routing (the operator decides); `since` keeps the day the
    current status was first seen."""
    if not offered:
        status = ProviderListing.GONE
    elif deprecated or shutdown_on is not None:
        status = ProviderListing.RETIRING
    else:
        status = ProviderListing.LISTED
    previous = ModelLifecycle.objects.filter(model=model).first()
    since = previous.since if previous is not None and previous.status == status else timezone.localdate()
    row, _ = ModelLifecycle.objects.update_or_create(
        model=model, defaults={"status": status, "shutdown_on": shutdown_on if offered else None, "since": since,
                               "checked_at": timezone.now()})
    if previous is None or previous.status != status:
        log = logger.warning if status != ProviderListing.LISTED else logger.info
        log("model %s (%s): %s", model.model_name, model.provider_id, row.get_status_display()
            + (f", shutdown {shutdown_on}" if shutdown_on else ""))
    return row


def model_adopt_provider_retirement(*, model: AIModelConfig) -> AIModelConfig:
    """The operator takes the retirement date the provider announced as the model's own: from
    that day the model is not served (its tier's other models are). InvalidRequest if none was."""
    lifecycle = ModelLifecycle.objects.filter(model=model).first()
    if lifecycle is None or lifecycle.shutdown_on is None:
        raise InvalidRequest(f"{model.model_name}: its provider has announced no retirement date.",
                             details={"model": [f"{model.model_name} has no announced retirement date."]})
    model.retires_on = lifecycle.shutdown_on
    model.save(update_fields=["retires_on", "updated_at"])
    return model
