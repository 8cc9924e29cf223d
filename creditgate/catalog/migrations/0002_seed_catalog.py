"""The default catalog: the only place in code where model names and rates are written down.

Sources: ../shared/PROVIDERS.md (collected 2026-11-28) and the design note.

Credit prices (what users pay) follow the design note: Basic 1, Quality 5, Premium 15 credits
per image.

How tokens_per_credit = 1000 for the text model was chosen: one credit should cover about what
one Basic image costs us (about $0.009). The text model costs $1.25 per 1M input tokens and
$10 per 1M output tokens. At 1000 tokens per credit a credit costs us at most $0.010 (every
token an output token) and about $0.0056 for an even mix of input and output, so text is never
sold below cost and is priced like a Basic image.

Quality tier: the design note names dall-e-3, which OpenAI removed from its API on 2026-05-12.
It is seeded inactive with that retirement date, so history, the legacy import and the admin can
still name it; the tier is served by the current OpenAI image model instead (gpt-image-2 in the
openai SDK's own list). Its per-image price is not published in the sources we have; the figure
below is gpt-image-1's medium-quality price at 1024x1024 and must be checked before margin
reports are trusted.
"""

import datetime as dt
from decimal import Decimal

from django.db import migrations

PROVIDERS = [
    {"provider_id": "openai", "display_name": "OpenAI"},
    {"provider_id": "runware", "display_name": "Runware"},
]

NANO_BANANA_PRO_1K_SIZES = ["1024x1024", "1264x848", "848x1264", "1200x896", "896x1200", "928x1152", "1152x928",
                            "768x1376", "1376x768", "1548x672"]

MODELS = [
    {
        "model_name": "gpt-5.1", "display_name": "GPT-5.1", "model_type": "text", "provider_id": "openai",
        "is_active": True, "is_default": True, "tokens_per_credit": 1000,
        "input_usd_per_1m_tokens": Decimal("1.25"), "output_usd_per_1m_tokens": Decimal("10.00"),
        "max_output_tokens": 128000,
        # gpt-5.1 accepts temperature only with reasoning effort "none" (its default): send it explicitly.
        "optional_params": ["temperature"], "request_defaults": {"reasoning_effort": "none"},
        "notes": "Accepts temperature only with reasoning effort none (its default), which we always send.",
    },
    {
        "model_name": "runware:97@1", "display_name": "HiDream-I1 Full", "model_type": "image",
        "provider_id": "runware", "is_active": True, "quality_tier": "basic", "credits_per_image": 1,
        "usd_per_image": Decimal("0.009"), "sizes": ["1024x1024", "1216x832", "832x1216"],
        "max_images_per_call": 20, "optional_params": ["negative_prompt", "steps", "cfg_scale", "seed"],
        "request_defaults": {"steps": 30},
        "notes": "About $0.009 per 1024x1024 image at 30 steps; Runware bills open models by compute time.",
    },
    {
        "model_name": "gpt-image-2", "display_name": "GPT Image 2", "model_type": "image", "provider_id": "openai",
        "is_active": True, "quality_tier": "quality", "credits_per_image": 5,
        "usd_per_image": Decimal("0.042"), "sizes": ["1024x1024", "1536x1024", "1024x1536"],
        "max_images_per_call": 10, "optional_params": [], "request_defaults": {"quality": "medium"},
        "notes": "Replaces dall-e-3 in the Quality tier. Returns base64 images. Price assumed equal to "
                 "gpt-image-1 medium at 1024x1024; verify.",
    },
    {
        "model_name": "dall-e-3", "display_name": "DALL·E 3 (retired)", "model_type": "image",
        "provider_id": "openai", "is_active": False, "quality_tier": "quality", "credits_per_image": 5,
        "usd_per_image": Decimal("0.040"), "sizes": ["1024x1024", "1792x1024", "1024x1792"],
        "max_images_per_call": 1, "optional_params": [],
        "request_defaults": {"quality": "standard", "style": "natural"},
        "retires_on": dt.date(2026, 5, 12),
        "notes": "Removed from OpenAI's API on 2026-05-12. Kept for history and the legacy import. "
                 "Returned one image per call.",
    },
    {
        "model_name": "google:4@2", "display_name": "Nano Banana Pro (Gemini 3 Pro Image)", "model_type": "image",
        "provider_id": "runware", "is_active": True, "quality_tier": "premium", "credits_per_image": 15,
        "usd_per_image": Decimal("0.138"), "sizes": NANO_BANANA_PRO_1K_SIZES, "max_images_per_call": 20,
        "optional_params": ["seed"], "request_defaults": {},
        "notes": "Fixed list of sizes; takes no negative prompt, steps or CFG. $0.138 at 1K/2K, $0.244 at 4K.",
    },
]


def seed(apps, schema_editor):
    Provider = apps.get_model("catalog", "IntegrationProvider")
    Model = apps.get_model("catalog", "AIModelConfig")
    Settings = apps.get_model("catalog", "GlobalIntegrationSettings")
    for p in PROVIDERS:
        Provider.objects.update_or_create(provider_id=p["provider_id"], defaults=p)
    for m in MODELS:
        fields = dict(m)
        name = fields.pop("model_name")
        Model.objects.update_or_create(model_name=name, defaults=fields)
    Settings.objects.get_or_create(id=1)


def unseed(apps, schema_editor):
    apps.get_model("catalog", "AIModelConfig").objects.filter(model_name__in=[m["model_name"] for m in MODELS]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
