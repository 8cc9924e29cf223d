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


# --- The provider sandbox (creditgate.providers) -----------------------------------------------

@pytest.fixture(scope="session")
def sandbox_server():
    """One emulator for the whole session. Its starting knobs keep tests quick: a 429 asks for a
    20 ms wait, and a "timeout" hangs 10 s (the `sandbox` fixture's read timeout is 5 s)."""
    from creditgate.providers.sandbox import SandboxServer

    server = SandboxServer(retry_after_s=0.02, hang_s=10).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server, settings):
    """The emulator with fresh knobs and counts, serving every provider that has no key."""
    sandbox_server.reset()
    settings.CREDITGATE_SANDBOX = True
    settings.CREDITGATE_SANDBOX_URL = sandbox_server.url
    settings.CREDITGATE_PROVIDER_RETRY_BASE_DELAY = 0.01
    settings.CREDITGATE_PROVIDER_TEXT_TIMEOUT = 5.0
    settings.CREDITGATE_PROVIDER_IMAGE_TIMEOUT = 5.0
    yield sandbox_server
    sandbox_server.reset()
