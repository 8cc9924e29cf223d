"""Issue 22, item 1: where the sandbox may answer, and how loudly the service says so when an
operator runs it in production (DEBUG=false: CREDITGATE_SANDBOX_PAYMENTS off)."""

from __future__ import annotations

import logging

import pytest
from django.apps import apps
from django.test import Client

from creditgate.catalog import services as catalog_services
from creditgate.catalog.models import IntegrationProvider
from creditgate.providers.registry import sandbox_may_serve

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def providers(seeded_catalog):
    for provider_id in ("stripe", "resend"):
        IntegrationProvider.objects.get_or_create(provider_id=provider_id)


@pytest.mark.parametrize(("sandbox", "development", "served"), [
    (True, True, {"openai", "runware", "stripe", "resend"}),
    (True, False, {"openai", "runware"}),
    (False, True, set()),
    (False, False, set()),
])
def test_the_sandbox_serves_payments_in_development_only(settings, sandbox, development, served):
    settings.CREDITGATE_SANDBOX, settings.CREDITGATE_SANDBOX_PAYMENTS = sandbox, development
    assert {p for p in ("openai", "runware", "stripe", "resend") if sandbox_may_serve(p)} == served


def test_in_production_readiness_names_the_sandboxed_providers_without_a_secret(settings, providers):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_SANDBOX, settings.CREDITGATE_SANDBOX_PAYMENTS = True, False
    openai = IntegrationProvider.objects.get(provider_id="openai")
    catalog_services.provider_update_secrets(provider=openai, api_key="sk-proj-REALKEYvalue000000001234")

    response = Client().get("/ready/")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "storage": "ok"},
                               "sandboxed": ["runware"]}  # openai has its key; Stripe and Resend never
    body = response.content.decode()
    assert "REALKEY" not in body and settings.CREDITGATE_SANDBOX_URL not in body


def test_in_development_readiness_says_nothing_of_the_sandbox(settings, providers):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_SANDBOX, settings.CREDITGATE_SANDBOX_PAYMENTS = True, True
    assert "sandboxed" not in Client().get("/ready/").json()


def test_in_production_the_providers_page_warns_of_the_sandbox(settings, providers, admin_client):
    settings.CREDITGATE_SANDBOX, settings.CREDITGATE_SANDBOX_PAYMENTS = True, False
    page = admin_client.get("/admin/catalog/integrationprovider/").content.decode()
    assert "CREDITGATE_SANDBOX is on with DEBUG off: openai, runware served by the sandbox" in page

    settings.CREDITGATE_SANDBOX_PAYMENTS = True  # development: no warning
    assert "served by the sandbox" not in admin_client.get("/admin/catalog/integrationprovider/").content.decode()


def test_a_process_starting_in_production_with_the_sandbox_logs_a_warning(settings, caplog):
    settings.CREDITGATE_SANDBOX, settings.CREDITGATE_SANDBOX_PAYMENTS = True, False
    with caplog.at_level(logging.WARNING, logger="creditgate.providers"):
        apps.get_app_config("providers").ready()
    assert any(r.levelno == logging.WARNING and "CREDITGATE_SANDBOX is on with DEBUG off" in r.getMessage()
               for r in caplog.records)

    caplog.clear()
    settings.CREDITGATE_SANDBOX_PAYMENTS = True
    apps.get_app_config("providers").ready()
    assert not caplog.records
