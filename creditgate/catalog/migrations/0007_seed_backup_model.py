"""The seeded catalog gets a backup model, and the seeded models an order of service.

With migration 0002, the only place in code where model names and rates are written down.

The Quality tier is served by OpenAI's image model; when OpenAI cannot serve (an outage, an
exhausted quota, a bad key), its images go to the backup, on another provider, at the tier's
price (5 credits per image, unchanged):

- `google:2@1`, Google's Imagen 4 Preview on Runware: $0.04 per 1024x1024 image, against about
  $0.042 for the primary (so the tier's margin holds). Source: Runware's model page for Imagen 4
  Preview, as collected in ../shared/PROVIDERS.md on 2026-11-28 (§1.6 "Alternatives, if Imagen was
  the intent", §4 "Runware [V, model pages]"). It accepts only 1024x1024, 768x1408, 1408x768,
  896x1280 and 1280x896 (same source). Like the other Google models on Runware it is a partner
  model billed at a fixed price per image; which optional parameters Runware forwards to it is
  not documented there, so none are sent. Images per call: Google's Imagen API returns at most
  4 per request; Runware does not document its own limit for this model.

Priorities: every seeded active image model is first in its tier (1), the backup second (2).
New models default to 100, so adding one never changes which model serves a tier first.

`seed_catalog` writes the whole seeded catalog as it stands after this migration (0002's rows,
the tier prices of 0006, this backup); the tests use it to put the seed back after flushing
the tables. The migration itself only adds the backup and the priorities, so it leaves an
operator's existing changes alone.
"""

import importlib
from decimal import Decimal

from django.db import migrations

IMAGEN_4_SIZES = ["1024x1024", "768x1408", "1408x768", "896x1280", "1280x896"]

BACKUP_MODELS = [
    {
        "model_name": "google:2@1", "display_name": "Imagen 4 Preview", "model_type": "image",
        "provider_id": "runware", "is_active": True, "quality_tier_id": "quality", "priority": 2,
        "usd_per_image": Decimal("0.04"), "sizes": IMAGEN_4_SIZES, "max_images_per_call": 4,
        "optional_params": [], "request_defaults": {},
        "notes": "Backup of the Quality tier on another provider. $0.04 per 1024x1024 image (Runware's model "
                 "page). Fixed list of sizes.",
    },
]
FIRST_IN_TIER = 1


def _seed_0002():
    return importlib.import_module("creditgate.catalog.migrations.0002_seed_catalog")


def add_backups(apps, schema_editor):
    Model = apps.get_model("catalog", "AIModelConfig")
    Tier = apps.get_model("catalog", "ImageTier")
    Provider = apps.get_model("catalog", "IntegrationProvider")
    Model.objects.filter(model_type="image", is_active=True, quality_tier__isnull=False).update(
        priority=FIRST_IN_TIER)
    for m in BACKUP_MODELS:
        fields = dict(m)
        name = fields.pop("model_name")
        # An installation that removed the provider or the tier keeps its catalog as it is.
        if not (Provider.objects.filter(provider_id=fields["provider_id"]).exists()
                and Tier.objects.filter(tier=fields["quality_tier_id"]).exists()):
            continue
        Model.objects.get_or_create(model_name=name, defaults=fields)


def remove_backups(apps, schema_editor):
    apps.get_model("catalog", "AIModelConfig").objects.filter(
        model_name__in=[m["model_name"] for m in BACKUP_MODELS]).delete()


def seed_catalog(apps, schema_editor=None):
    """The whole seeded catalog on an empty (or flushed) database: providers, tier prices, models."""
    seed = _seed_0002()
    Provider = apps.get_model("catalog", "IntegrationProvider")
    Tier = apps.get_model("catalog", "ImageTier")
    Model = apps.get_model("catalog", "AIModelConfig")
    Settings = apps.get_model("catalog", "GlobalIntegrationSettings")
    for p in seed.PROVIDERS:
        Provider.objects.update_or_create(provider_id=p["provider_id"], defaults=p)
    prices: dict[str, int] = {}
    for m in sorted(seed.MODELS, key=lambda m: not m.get("is_active")):  # as 0006: the active model's price
        if m.get("quality_tier"):
            prices.setdefault(m["quality_tier"], m["credits_per_image"])
    for tier, price in prices.items():
        Tier.objects.update_or_create(tier=tier, defaults={"credits_per_image": price})
    for m in seed.MODELS:
        fields = {k: v for k, v in m.items() if k not in ("model_name", "credits_per_image", "quality_tier")}
        if m.get("quality_tier"):
            fields["quality_tier_id"] = m["quality_tier"]
            fields["priority"] = FIRST_IN_TIER if m.get("is_active") else 100
        Model.objects.update_or_create(model_name=m["model_name"], defaults=fields)
    for m in BACKUP_MODELS:
        fields = dict(m)
        Model.objects.update_or_create(model_name=fields.pop("model_name"), defaults=fields)
    Settings.objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_image_tiers")]
    operations = [migrations.RunPython(add_backups, remove_backups)]
