"""Jobs record the API key they were made with (their hold already did), so fair shares count an API
key's jobs in flight exactly; the jobs made before this learn it from their hold."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def api_keys_from_holds(apps, schema_editor):
    Job, Hold = apps.get_model("generation", "Job"), apps.get_model("credits", "Hold")
    Job.objects.filter(hold__api_key__isnull=False).update(
        api_key=Subquery(Hold.objects.filter(pk=OuterRef("hold_id")).values("api_key")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0007_api_key_account_required'),
        ('generation', '0005_idempotency_key_per_member'),
        ('webhooks', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='api_key',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='credits.apikey'),
        ),
        migrations.RunPython(api_keys_from_holds, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('status__in', ('queued', 'running'))), fields=['account'], name='job_in_flight_account_idx'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('status__in', ('queued', 'running'))), fields=['api_key'], name='job_in_flight_api_key_idx'),
        ),
    ]
