import pytest
from django.db import connection

from creditgate.catalog.models import AIModelConfig, IntegrationProvider


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (real row locks between connections); set DATABASE_URL")


@pytest.fixture
def openai():
    return IntegrationProvider.objects.get(provider_id="openai")


@pytest.fixture
def runware():
    return IntegrationProvider.objects.get(provider_id="runware")


@pytest.fixture
def text_model_factory(openai):
    def make(**overrides) -> AIModelConfig:
        fields = {"model_name": "test-text", "display_name": "Test text", "model_type": "text",
                  "provider": openai, "tokens_per_credit": 500, **overrides}
        return AIModelConfig.objects.create(**fields)

    return make


def catalog_state() -> list[list[tuple]]:
    """Every catalog row as plain values: compare before and after a refused operation."""
    from creditgate.catalog.models import GlobalIntegrationSettings, ImageTier

    return [
        list(ImageTier.objects.order_by("pk").values_list()),
        list(AIModelConfig.objects.order_by("pk").values_list()),
        list(IntegrationProvider.objects.order_by("pk").values_list()),
        list(GlobalIntegrationSettings.objects.order_by("pk").values_list()),
    ]
