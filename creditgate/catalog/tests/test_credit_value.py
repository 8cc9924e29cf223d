"""What a credit sells for: an optional USD value on the settings singleton, never negative."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from creditgate.audit.tests.admin_forms import submit_change_form
from creditgate.catalog.models import GlobalIntegrationSettings

from .conftest import catalog_state

pytestmark = pytest.mark.django_db

URL = "/admin/catalog/globalintegrationsettings/1/change/"


def test_it_is_unset_until_an_operator_sets_it():
    assert GlobalIntegrationSettings.objects.get().usd_per_credit is None


def test_the_admin_sets_and_clears_it(admin_client):
    assert submit_change_form(admin_client, URL, usd_per_credit="0.0125").status_code == 302
    assert GlobalIntegrationSettings.objects.get().usd_per_credit == Decimal("0.0125")
    assert submit_change_form(admin_client, URL, usd_per_credit="").status_code == 302
    assert GlobalIntegrationSettings.objects.get().usd_per_credit is None


def test_a_negative_value_is_a_form_error_and_changes_nothing(admin_client):
    before = catalog_state()
    response = submit_change_form(admin_client, URL, usd_per_credit="-0.01")
    assert response.status_code == 200
    assert "The USD value of a credit cannot be negative." in response.content.decode()
    assert catalog_state() == before


def test_the_database_refuses_a_negative_value_whoever_writes_it():
    with pytest.raises(IntegrityError), transaction.atomic():
        GlobalIntegrationSettings.objects.filter(pk=1).update(usd_per_credit=Decimal(-1))
    GlobalIntegrationSettings.objects.filter(pk=1).update(usd_per_credit=Decimal(0))  # free credits are allowed
    assert GlobalIntegrationSettings.objects.get().usd_per_credit == 0
