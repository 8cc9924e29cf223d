import pytest
from django.db import connection
from rest_framework.test import APIClient

from creditgate.credits import services
from creditgate.credits.models import Account, LedgerEntry
from creditgate.credits.tests.factories import make_user


def snapshot(account: Account) -> tuple:
    """What a refused operation must leave unchanged: the counters and the ledger length."""
    account.refresh_from_db()
    return account.available, account.held, LedgerEntry.objects.count()


@pytest.fixture
def user(db):
    return make_user(credits=100)


@pytest.fixture
def account(user):
    return services.account_for_user(user=user)


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def postgres_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
