# Every key has its account since 0006's backfill. A migration of its own: on PostgreSQL the rows
# 0006 updated leave deferred foreign-key checks pending until its transaction ends, and an
# ALTER TABLE of that table in the same transaction would be refused.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("credits", "0006_teams_invitations"),
    ]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="account",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="api_keys",
                                    to="credits.account"),
        ),
    ]
