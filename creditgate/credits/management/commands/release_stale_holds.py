from django.core.management.base import BaseCommand

from creditgate.credits import services


class Command(BaseCommand):
    help = "Expire active holds past their expiry and give their credits back (Celery beat runs it too)."

    def handle(self, *args, **options):
        count = services.holds_release_stale()
        self.stdout.write(f"Expired {count} stale hold(s).")
