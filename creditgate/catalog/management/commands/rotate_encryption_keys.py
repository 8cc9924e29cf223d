from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from creditgate.catalog import services
from creditgate.catalog.crypto import KeyDecryptionError


class Command(BaseCommand):
    help = ("Re-encrypt every stored provider API key under the newest key in CREDITGATE_ENCRYPTION_KEYS "
            "(the first one). Afterwards the older keys can be removed from the setting.")

    def handle(self, *args, **options):
        try:
            count = services.provider_keys_rotate()
        except KeyDecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed. Add the missing old key to "
                               f"CREDITGATE_ENCRYPTION_KEYS (after the new one) and run this again.") from None
        others = len(settings.CREDITGATE_ENCRYPTION_KEYS) - 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} API key(s) under the newest encryption key."))
        if others:
            self.stdout.write(f"The {others} older key(s) in CREDITGATE_ENCRYPTION_KEYS can now be removed.")
