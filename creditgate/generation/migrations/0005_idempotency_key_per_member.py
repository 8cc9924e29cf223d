"""Idempotency-Keys become each member's own (issue 22): unique per (account, user, key) instead of
per (account, key), so two members of an account sending the same key start a job each and neither
ever receives the other's. Every existing row satisfies the new constraint (it is looser); it is
added before the old one is dropped, so no moment is without one. The jobs' new holds are keyed
`user:<id>:job:<key>` (generation.intake), a form no old `job:<key>` hold has, so none can collide.

The index serves a member's own job list (members see only their jobs), newest first.

Reversing it fails while two members of one account share a key: those jobs would break the old
constraint.
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0005_teams'),
        ('generation', '0004_provider_call_tries'),
        ('webhooks', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(fields=('account', 'user', 'idempotency_key'),
                                               name='job_idempotency_key_per_member'),
        ),
        migrations.RemoveConstraint(
            model_name='job',
            name='job_idempotency_key_per_account',
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['account', 'user', '-created_at'], name='job_account_user_newest_idx'),
        ),
    ]
