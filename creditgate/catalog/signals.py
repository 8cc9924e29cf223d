"""Any saved or deleted catalog row invalidates the ai-config payload, whoever saved it
(a service, the admin, the legacy import, a shell). Cache plumbing only: no business rule here."""

from django.core.signals import request_started
from django.db.models.signals import post_delete, post_migrate, post_save
from django.dispatch import receiver

from creditgate.catalog.ai_config_cache import ai_config_invalidate, forget_uncommitted
from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings, ImageTier, IntegrationProvider


@receiver([post_save, post_delete], sender=AIModelConfig, dispatch_uid="catalog_ai_config_model")
@receiver([post_save, post_delete], sender=ImageTier, dispatch_uid="catalog_ai_config_tier")
@receiver([post_save, post_delete], sender=IntegrationProvider, dispatch_uid="catalog_ai_config_provider")
@receiver([post_save, post_delete], sender=GlobalIntegrationSettings, dispatch_uid="catalog_ai_config_settings")
def _catalog_changed(sender, **kwargs) -> None:
    ai_config_invalidate()


@receiver(post_migrate, dispatch_uid="catalog_ai_config_migrated")
def _catalog_migrated(sender, **kwargs) -> None:
    # Data migrations save through historical models, which send no signal to the receivers above.
    if sender.label == "catalog":
        ai_config_invalidate()


@receiver(request_started, dispatch_uid="catalog_request_started")
def _request_started(sender, **kwargs) -> None:
    forget_uncommitted()
