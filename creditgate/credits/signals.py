"""Every user gets a personal account when created, whichever way the user was made (sign-up,
admin, createsuperuser, a shell)."""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from creditgate.credits import services


@receiver(post_save, sender=get_user_model(), dispatch_uid="credits_personal_account")
def _user_created(sender, instance, created, raw=False, **kwargs):
    if created and not raw:  # raw: loaddata restores accounts from the fixture itself
        services.account_for_user(user=instance)
