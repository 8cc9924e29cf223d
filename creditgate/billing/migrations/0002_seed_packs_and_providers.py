"""The provider rows Stripe and Resend keys go into (no keys: without one, the sandbox serves them
while CREDITGATE_SANDBOX is on), and three starting credit packs, each with the first version of
its configuration history (as audit's 0002 recorded the catalog's rows).

The packs are sold as soon as Stripe can be used (a real key in the `stripe` row, or the sandbox):
review their prices in the admin before entering a live key. Like the catalog's seed, this is the
one place the starting prices are written down.
"""

from django.db import migrations
from django.utils import timezone

PROVIDERS = [
    {"provider_id": "stripe", "display_name": "Stripe"},
    {"provider_id": "resend", "display_name": "Resend"},
]

PACKS = [
    {"name": "Starter", "credits": 100, "price_amount": 500, "currency": "usd", "position": 1},
    {"name": "Standard", "credits": 500, "price_amount": 2000, "currency": "usd", "position": 2},
    {"name": "Large", "credits": 2000, "price_amount": 7000, "currency": "usd", "position": 3},
]


def _first_version(apps, model, history_name, rows) -> None:
    """A "created" version of each row (writes through historical models record no history)."""
    history = apps.get_model("audit", history_name)
    columns = {f.attname for f in model._meta.concrete_fields}
    copied = [f.attname for f in history._meta.concrete_fields if f.attname in columns]
    now = timezone.now()
    history.objects.bulk_create([
        history(**{attname: getattr(row, attname) for attname in copied}, history_date=now, history_type="+",
                history_change_reason="created by migration billing 0002")
        for row in rows])


def seed(apps, schema_editor):
    provider_model = apps.get_model("catalog", "IntegrationProvider")
    created = []
    for row in PROVIDERS:
        provider, new = provider_model.objects.get_or_create(provider_id=row["provider_id"], defaults=row)
        if new:
            created.append(provider)
    _first_version(apps, provider_model, "HistoricalIntegrationProvider", created)
    pack_model = apps.get_model("billing", "CreditPack")
    if not pack_model.objects.exists():
        packs = [pack_model.objects.create(**row) for row in PACKS]
        _first_version(apps, pack_model, "HistoricalCreditPack", packs)


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0001_initial"),
        ("catalog", "0009_provider_signing_secret"),
        ("audit", "0004_signing_secret_and_pack_history"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
