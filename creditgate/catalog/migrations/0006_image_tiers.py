# Several models per tier, one price per tier.
#
# The credit price per image moves from each model row to a row per tier (ImageTier), so every
# model of a tier is sold at the same price by construction; the rule "one active model per
# tier" goes, and a priority orders the models of a tier (and the backup text models).
#
# Each tier's price is taken from its models as they are: the active model's price (a tier had at
# most one), else the most recently changed model's. A tier no model names gets no row (the
# admin's "Image tiers" page adds it). Reversible: the way back copies each tier's price onto its
# models.

import django.db.models.deletion
from django.db import migrations, models


def fill_tier_prices(apps, schema_editor):
    Model = apps.get_model("catalog", "AIModelConfig")
    Tier = apps.get_model("catalog", "ImageTier")
    rows = (Model.objects.filter(model_type="image", quality_tier__isnull=False)
            .order_by("-is_active", "-updated_at", "pk"))
    prices: dict[str, int] = {}
    for tier, price in rows.values_list("quality_tier", "credits_per_image"):
        prices.setdefault(tier, price)
    for tier, price in prices.items():
        Tier.objects.create(tier=tier, credits_per_image=price)


def restore_model_prices(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # The updates below would leave deferred foreign-key checks pending, and PostgreSQL refuses
        # the ALTER TABLE that follows on the same table while any are.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    Model = apps.get_model("catalog", "AIModelConfig")
    for model in Model.objects.filter(model_type="image", quality_tier__isnull=False).select_related("quality_tier"):
        model.credits_per_image = model.quality_tier.credits_per_image
        model.save(update_fields=["credits_per_image"])


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0005_credit_value'),
        # The configuration history's baseline copies the models' rows column by column as they
        # were before this migration (a per-model price, a tier as text): it must run first.
        ('audit', '0002_history_baseline'),
    ]

    operations = [
        migrations.CreateModel(
            name='ImageTier',
            fields=[
                ('tier', models.CharField(choices=[('basic', 'Basic'), ('quality', 'Quality'), ('premium', 'Premium')], max_length=10, primary_key=True, serialize=False)),
                ('credits_per_image', models.PositiveIntegerField(help_text='What a user pays per image of this tier, whichever of its models serves it.')),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name': 'image tier',
                'ordering': ['credits_per_image', 'tier'],
                'constraints': [
                    models.CheckConstraint(condition=models.Q(('tier__in', ['basic', 'quality', 'premium'])), name='image_tier_valid', violation_error_message='The quality tier must be basic, quality or premium.'),
                    models.CheckConstraint(condition=models.Q(('credits_per_image__gt', 0)), name='image_tier_price_positive', violation_error_message='Credits per image must be above 0.'),
                ],
            },
        ),
        migrations.RunPython(fill_tier_prices, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='aimodelconfig',
            name='one_active_model_per_tier',
        ),
        migrations.RemoveConstraint(
            model_name='aimodelconfig',
            name='text_model_prices_by_tokens',
        ),
        migrations.RemoveConstraint(
            model_name='aimodelconfig',
            name='image_model_prices_by_image',
        ),
        migrations.AlterField(
            model_name='aimodelconfig',
            name='quality_tier',
            field=models.ForeignKey(blank=True, db_column='quality_tier', help_text="Image models only. The tier's active models serve it in priority order, all at the tier's price.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='models', to='catalog.imagetier'),
        ),
        migrations.RunPython(migrations.RunPython.noop, restore_model_prices),
        migrations.RemoveField(
            model_name='aimodelconfig',
            name='credits_per_image',
        ),
        migrations.AddField(
            model_name='aimodelconfig',
            name='priority',
            field=models.PositiveSmallIntegerField(default=100, help_text="Order of service, lowest first: among a tier's active models, and among the backup text models (after the default). Equal priorities go by model name."),
        ),
        migrations.AlterModelOptions(
            name='aimodelconfig',
            options={'ordering': ['model_type', 'quality_tier__credits_per_image', 'quality_tier_id', 'priority', 'model_name'], 'verbose_name': 'AI model'},
        ),
        migrations.AddConstraint(
            model_name='aimodelconfig',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('model_type', 'text'), _negated=True), models.Q(('quality_tier__isnull', True), ('tokens_per_credit__gt', 0), ('tokens_per_credit__isnull', False)), _connector='OR'), name='text_model_prices_by_tokens', violation_error_message='A text model needs tokens per credit above 0, and no quality tier.'),
        ),
        migrations.AddConstraint(
            model_name='aimodelconfig',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('model_type', 'image'), _negated=True), ('tokens_per_credit__isnull', True), _connector='OR'), name='image_model_prices_by_tier', violation_error_message='An image model is priced by its quality tier, not by tokens per credit.'),
        ),
    ]
