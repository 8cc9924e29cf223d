"""Fixtures shared by every app's tests."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def seeded_catalog(django_db_blocker):
    """The default catalog as migration 0002 seeds it.

    `transactional_db` tests flush every table after each test, data migrations' rows included;
    this puts the seed back (the migration's own function, so there is one source of the seed).
    """
    import importlib

    from django.apps import apps

    seed_migration = importlib.import_module("creditgate.catalog.migrations.0002_seed_catalog")
    with django_db_blocker.unblock():
        seed_migration.seed(apps, None)
