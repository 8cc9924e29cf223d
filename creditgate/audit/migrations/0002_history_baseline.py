"""Record every configuration row as it stands when the history begins, so the first change made
afterwards shows its "before" values and a ledger entry charged before it finds the rate in force.
(The seed migration writes through historical models, which record no history.)"""

from django.db import migrations
from django.utils import timezone

TRACKED = ["IntegrationProvider", "AIModelConfig", "GlobalIntegrationSettings"]


def record_baseline(apps, schema_editor):
    now = timezone.now()
    for name in TRACKED:
        model = apps.get_model("catalog", name)
        history = apps.get_model("audit", f"Historical{name}")
        columns = {f.attname for f in model._meta.concrete_fields}
        # Only the historical table's own columns are copied: a secret excluded from the history
        # (a provider's key and its hint) has no column there to be copied into.
        copied = [f.attname for f in history._meta.concrete_fields if f.attname in columns]
        history.objects.bulk_create([
            history(**{attname: getattr(row, attname) for attname in copied}, history_date=now, history_type="+",
                    history_change_reason="recorded when the history began")
            for row in model.objects.order_by("pk")])


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_history_tables")]

    operations = [migrations.RunPython(record_baseline, migrations.RunPython.noop)]
