import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from creditgate.credits import services
from creditgate.credits.models import Account, LedgerEntry


def make_user(username="alice", credits=0):
    user = get_user_model().objects.create_user(username=username)  # no password: hashing one costs a second
    if credits:
        services.credits_grant(account=services.account_for_user(user=user), amount=credits, reason="test")
    return user


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
