from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from creditgate.legacy.parsing import LegacyConfigError, legacy_json_load
from creditgate.legacy.services import legacy_import


class Command(BaseCommand):
    help = ("Import a JSON export of the legacy layout (docs/legacy-format.md) into providers, the model "
            "catalog and the settings singleton. --dry-run prints what would change and writes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the legacy export (JSON).")
        parser.add_argument("--dry-run", action="store_true", help="Print the report without writing anything.")

    def handle(self, *args, file: str, dry_run: bool, **options):
        try:
            raw = Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        try:
            report = legacy_import(data=legacy_json_load(text=raw), dry_run=dry_run)
        except LegacyConfigError as exc:
            lines = [f"{file}: nothing was imported. Fix these and run again:"]
            lines += [f"  {e['path']}: {e['message']}" for e in exc.errors]
            raise CommandError("\n".join(lines)) from None
        for line in report.lines():
            self.stdout.write(line)
