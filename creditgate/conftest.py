"""Fixtures shared by every app's tests."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    from creditgate.providers import breaker

    cache.clear()
    breaker._clean_until.clear()  # what this process last read of the breakers (see breaker.CLEAN_SECONDS)
    yield
    cache.clear()


@pytest.fixture
def seeded_catalog(django_db_blocker):
    """The default catalog as the migrations seed it (0002's rows, 0006's tier prices, 0007's backup).

    `transactional_db` tests flush every table after each test, data migrations' rows included;
    this puts the seed back (the migrations' own data, so there is one source of the seed).
    """
    import importlib

    from django.apps import apps

    seed_migration = importlib.import_module("creditgate.catalog.migrations.0007_seed_backup_model")
    with django_db_blocker.unblock():
        seed_migration.seed_catalog(apps)


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
