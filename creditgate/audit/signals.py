"""Hooks into django-simple-history's recording: thin, the rules live in services.py."""

from django.dispatch import receiver
from simple_history.signals import post_create_historical_record, pre_create_historical_record

from creditgate.audit import services
from creditgate.audit.tracking import HISTORY_APP


@receiver(pre_create_historical_record, dispatch_uid="audit_key_change")
def _note_key_change(sender, instance, history_instance, **kwargs) -> None:
    if sender._meta.app_label == HISTORY_APP and hasattr(history_instance, "api_key_change"):
        history_instance.api_key_change = getattr(instance, "_key_change", "") or ""
    if sender._meta.app_label == HISTORY_APP and hasattr(history_instance, "signing_secret_change"):
        history_instance.signing_secret_change = getattr(instance, "_signing_secret_change", "") or ""


@receiver(post_create_historical_record, dispatch_uid="audit_config_change")
def _list_change(sender, instance, history_instance, **kwargs) -> None:
    if sender._meta.app_label != HISTORY_APP:
        return
    instance.__dict__.pop("_key_change", None)  # recorded once; a later save of this object did not change the key
    instance.__dict__.pop("_signing_secret_change", None)
    services.config_change_record(version=history_instance, instance=instance)
