"""The three configuration concepts: the model catalog, provider keys, the settings singleton.

Every rule that a row must obey is a database constraint, so a bad row cannot be saved from
the admin, a shell or a migration. Model names and prices live only in rows (seeded by
migrations 0002 and 0007), never in code.

A quality tier is served by its active models in priority order (a backup takes over when the
first cannot serve), and the user pays the tier's price whichever model answers: the credit
price per image lives once, on the tier's row (ImageTier), so two models of one tier cannot carry
two prices. `AIModelConfig.credits_per_image` reads it through the model's tier.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from creditgate.audit.tracking import (
    KeyChange,
    KeyChangeFields,
    SigningSecretChange,
    SigningSecretChangeFields,
    config_history,
)
from creditgate.catalog import crypto


class ModelType(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"


class QualityTier(models.TextChoices):
    # Order here is the order users see: cheapest first.
    BASIC = "basic", "Basic"
    QUALITY = "quality", "Quality"
    PREMIUM = "premium", "Premium"


class ImageTier(models.Model):
    """One row per quality tier: what a user pays per image, whichever of the tier's models serves it."""

    tier = models.CharField(primary_key=True, max_length=10, choices=QualityTier.choices)
    credits_per_image = models.PositiveIntegerField(
        help_text="What a user pays per image of this tier, whichever of its models serves it.")
    updated_at = models.DateTimeField(auto_now=True)

    history = config_history(excluded_fields=["updated_at"])

    class Meta:
        verbose_name = "image tier"
        ordering = ["credits_per_image", "tier"]  # cheapest first, as users see them
        constraints = [
            models.CheckConstraint(condition=Q(tier__in=QualityTier.values), name="image_tier_valid",
                                   violation_error_message="The quality tier must be basic, quality or premium."),
            # "> 0" alone would pass a NULL; the column is NOT NULL as well.
            models.CheckConstraint(condition=Q(credits_per_image__gt=0), name="image_tier_price_positive",
                                   violation_error_message="Credits per image must be above 0."),
        ]

    def __str__(self) -> str:
        return QualityTier(self.tier).label if self.tier in QualityTier.values else self.tier


class IntegrationProvider(models.Model):
    """API keys only. The key is stored encrypted; `api_key_hint` is the masked form for display."""

    provider_id = models.CharField(primary_key=True, max_length=32,
                                   help_text="A slug such as openai or runware.")
    display_name = models.CharField(max_length=100, blank=True)
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    api_key_hint = models.CharField(max_length=40, blank=True, default="", editable=False)
    is_active = models.BooleanField(default=True)
    base_url = models.URLField(blank=True, default="",
                               help_text="Optional: point the client at a proxy or the local sandbox.")
    # A second secret some providers need besides the key: Stripe's webhook signing secret
    # (whsec_…), which proves an event came from Stripe. Encrypted and masked like the key.
    signing_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    signing_secret_hint = models.CharField(max_length=40, blank=True, default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Who changed what and when; never a secret: only "key replaced" / "key cleared" (KeyChangeFields),
    # the same for the signing secret (SigningSecretChangeFields).
    history = config_history(excluded_fields=["api_key_encrypted", "api_key_hint", "signing_secret_encrypted",
                                              "signing_secret_hint", "updated_at"],
                             bases=(KeyChangeFields, SigningSecretChangeFields))

    class Meta:
        verbose_name = "provider"
        ordering = ["provider_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(provider_id__regex=r"^[a-z][a-z0-9_-]{0,31}$"), name="provider_id_is_slug",
                violation_error_message="The provider id must be a slug: lowercase letters, digits, - or _, "
                                        "starting with a letter (for example openai)."),
        ]

    def __str__(self) -> str:
        return self.display_name or self.provider_id

    def __repr__(self) -> str:  # never leak the ciphertext or key through a repr in a log
        key = "set" if self.has_key else "none"
        return f"<IntegrationProvider {self.provider_id} active={self.is_active} key={key}>"

    @property
    def has_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def set_api_key(self, plaintext: str) -> None:
        """Store a new key (encrypted) or clear it with an empty string. Caller saves."""
        plaintext = (plaintext or "").strip()
        self.api_key_encrypted = crypto.encrypt(plaintext) if plaintext else ""
        self.api_key_hint = crypto.mask(plaintext)
        self._key_change = KeyChange.REPLACED if plaintext else KeyChange.CLEARED  # for the history row

    def get_api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""

    @property
    def has_signing_secret(self) -> bool:
        return bool(self.signing_secret_encrypted)

    def set_signing_secret(self, plaintext: str) -> None:
        """Store a new signing secret (encrypted) or clear it with an empty string. Caller saves."""
        plaintext = (plaintext or "").strip()
        self.signing_secret_encrypted = crypto.encrypt(plaintext) if plaintext else ""
        self.signing_secret_hint = crypto.mask(plaintext)
        self._signing_secret_change = SigningSecretChange.REPLACED if plaintext else SigningSecretChange.CLEARED

    def get_signing_secret(self) -> str:
        return crypto.decrypt(self.signing_secret_encrypted) if self.signing_secret_encrypted else ""


class AIModelConfig(models.Model):
    """One row per model, text and image alike: the single source of truth."""

    model_name = models.CharField(max_length=100, unique=True, help_text="The provider's model id.")
    display_name = models.CharField(max_length=100)
    model_type = models.CharField(max_length=10, choices=ModelType.choices)
    provider = models.ForeignKey(IntegrationProvider, on_delete=models.PROTECT, related_name="models")
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)

    # Credit prices (what users pay): text per model, images per tier (ImageTier.credits_per_image).
    tokens_per_credit = models.PositiveIntegerField(null=True, blank=True, help_text="Text models only.")
    # The column keeps its name and holds the tier's slug ("basic"), so `quality_tier_id` is the
    # tier as a string and `quality_tier` its row (with the price).
    quality_tier = models.ForeignKey(
        ImageTier, on_delete=models.PROTECT, null=True, blank=True, db_column="quality_tier",
        related_name="models",
        help_text="Image models only. The tier's active models serve it in priority order, all at the tier's price.")
    priority = models.PositiveSmallIntegerField(
        default=100,
        help_text="Order of service, lowest first: among a tier's active models, and among the backup text "
                  "models (after the default). Equal priorities go by model name.")

    # Provider-side prices in USD (what we pay), for margin reports.
    input_usd_per_1m_tokens = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    output_usd_per_1m_tokens = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    usd_per_image = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)

    # What a provider call needs: catalog data, never `if model_name == ...` in code.
    sizes = models.JSONField(default=list, blank=True,
                             help_text='Image sizes the model accepts, e.g. ["1024x1024"]. The first is the default.')
    max_images_per_call = models.PositiveIntegerField(default=1,
                                                      help_text="Images one provider call may return.")
    optional_params = models.JSONField(
        default=list, blank=True,
        help_text='Optional parameters the model accepts: any of "temperature", "negative_prompt", "steps", '
                  '"cfg_scale", "seed".')
    request_defaults = models.JSONField(default=dict, blank=True,
                                        help_text="Fixed provider parameters sent with every call.")
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Text models only.")
    retires_on = models.DateField(null=True, blank=True,
                                  help_text="The provider's shutdown date; the model is not served from this day.")
    notes = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    history = config_history(excluded_fields=["updated_at"])

    class Meta:
        verbose_name = "AI model"
        ordering = ["model_type", "quality_tier__credits_per_image", "quality_tier_id", "priority", "model_name"]
        # A CHECK passes when its condition is NULL, so "> 0" alone would let a NULL price through:
        # each price rule also says IS NOT NULL.
        constraints = [
            models.CheckConstraint(condition=Q(model_type__in=ModelType.values), name="model_type_valid",
                                   violation_error_message="The model type must be text or image."),
            models.CheckConstraint(
                condition=Q(quality_tier__isnull=True) | Q(quality_tier__in=QualityTier.values),
                name="quality_tier_valid",
                violation_error_message="The quality tier must be basic, quality or premium."),
            models.CheckConstraint(
                condition=~Q(model_type=ModelType.TEXT)
                | Q(tokens_per_credit__isnull=False, tokens_per_credit__gt=0, quality_tier__isnull=True),
                name="text_model_prices_by_tokens",
                violation_error_message="A text model needs tokens per credit above 0, and no quality tier."),
            # An image model's price is its tier's: it has no rate of its own. One without a tier
            # has no price and is never served.
            models.CheckConstraint(
                condition=~Q(model_type=ModelType.IMAGE) | Q(tokens_per_credit__isnull=True),
                name="image_model_prices_by_tier",
                violation_error_message="An image model is priced by its quality tier, not by tokens per credit."),
            models.CheckConstraint(condition=Q(is_default=False) | Q(is_active=True),
                                   name="default_model_is_active",
                                   violation_error_message="Only an active model can be the default."),
            models.CheckConstraint(condition=Q(max_images_per_call__gte=1), name="max_images_per_call_positive",
                                   violation_error_message="Images per call must be at least 1."),
            models.UniqueConstraint(fields=["model_type"], condition=Q(is_default=True),
                                    name="one_default_per_model_type",
                                    violation_error_message="Another model of this type is already the default. "
                                                            "Use the “Make default” action to swap them."),
        ]

    def __str__(self) -> str:
        return self.display_name or self.model_name

    @property
    def credits_per_image(self) -> int | None:
        """What a user pays per image of this model: its tier's price (None for a text model or an
        image model without a tier).

        Assigning pins a price on this instance only (a job prices its images at the rate it held,
        whatever the tier costs now); it is never saved: the price is set on the tier.
        """
        pinned = self.__dict__.get("_pinned_credits_per_image")
        if pinned is not None:
            return pinned
        if self.model_type != ModelType.IMAGE or self.quality_tier_id is None:
            return None
        tier = self.quality_tier
        assert tier is not None  # quality_tier_id is set
        return tier.credits_per_image

    @credits_per_image.setter
    def credits_per_image(self, value: int | None) -> None:
        self.__dict__["_pinned_credits_per_image"] = value

    def accepts(self, param: str) -> bool:
        return param in (self.optional_params or [])


class ProviderListing(models.TextChoices):
    LISTED = "listed", "offered"
    RETIRING = "retiring", "retirement announced"
    GONE = "gone", "no longer offered"


class ModelLifecycle(models.Model):
    """What a model's provider last said about it (manage.py check_model_lifecycle).

    Information for the operator, shown in the admin: routing never reads it, so a provider's
    list changes nothing about which model serves until the operator acts on it.
    """

    model = models.OneToOneField(AIModelConfig, on_delete=models.CASCADE, primary_key=True, related_name="lifecycle")
    status = models.CharField(max_length=10, choices=ProviderListing.choices)
    shutdown_on = models.DateField(null=True, blank=True, help_text="The retirement date the provider announced.")
    since = models.DateField(help_text="The day the check first found this status.")
    checked_at = models.DateTimeField()

    class Meta:
        verbose_name = "model lifecycle"
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ProviderListing.values), name="model_lifecycle_status_valid",
                                   violation_error_message="The status must be listed, retiring or gone."),
        ]

    def __str__(self) -> str:
        return f"{self.model_id}: {self.get_status_display()}"


class GlobalIntegrationSettings(models.Model):
    """The singleton of non-model settings: no model names, no keys."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    image_style = models.CharField(max_length=200, default="photorealistic",
                                   help_text="Added to every image prompt (no provider has a style parameter).")
    max_in_article_images = models.PositiveSmallIntegerField(default=4)
    temperature = models.DecimalField(max_digits=3, decimal_places=2, default=0.7,
                                      help_text="Sent only to text models that accept a temperature.")
    max_images_per_request = models.PositiveSmallIntegerField(default=8)
    default_max_tokens = models.PositiveIntegerField(
        default=1024, help_text="Completion tokens a text request may use when it does not say.")
    usd_per_credit = models.DecimalField(
        "USD per credit", max_digits=12, decimal_places=6, null=True, blank=True,
        help_text="What one credit sells for, in US dollars (optional). Revenue in reports is credits "
                  "charged at this value, set against what the providers cost.")
    updated_at = models.DateTimeField(auto_now=True)

    history = config_history(excluded_fields=["updated_at"])

    class Meta:
        verbose_name = "global integration settings"
        verbose_name_plural = "global integration settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="settings_singleton",
                                   violation_error_message="There is only one settings row."),
            models.CheckConstraint(condition=Q(temperature__gte=0) & Q(temperature__lte=2),
                                   name="temperature_between_0_and_2",
                                   violation_error_message="The temperature must be between 0 and 2."),
            models.CheckConstraint(condition=Q(max_images_per_request__gte=1) & Q(max_images_per_request__lte=20),
                                   name="max_images_per_request_1_to_20",
                                   violation_error_message="Images per request must be between 1 and 20."),
            models.CheckConstraint(condition=Q(max_in_article_images__lte=20), name="max_in_article_images_le_20",
                                   violation_error_message="Images per article must be at most 20."),
            models.CheckConstraint(condition=Q(default_max_tokens__gte=1), name="default_max_tokens_positive",
                                   violation_error_message="The default max tokens must be at least 1."),
            models.CheckConstraint(condition=Q(usd_per_credit__isnull=True) | Q(usd_per_credit__gte=0),
                                   name="usd_per_credit_not_negative",
                                   violation_error_message="The USD value of a credit cannot be negative."),
        ]

    def __str__(self) -> str:
        return "Global integration settings"
