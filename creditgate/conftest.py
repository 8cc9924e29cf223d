"""Fixtures shared by every app's tests."""

import os
import re
import shutil
from pathlib import Path

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    from creditgate.catalog import ai_config_cache
    from creditgate.providers import breaker

    cache.clear()
    breaker._clean_until.clear()  # what this process last read of the breakers (see breaker.CLEAN_SECONDS)
    ai_config_cache.process_forget()  # what it built from the catalog, and the version it last read
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
    from django.conf import settings

    from creditgate.providers.sandbox import SandboxServer

    # Signing Stripe's events with this installation's secret, as `manage.py sandbox` does.
    server = SandboxServer(retry_after_s=0.02, hang_s=10,
                           stripe_webhook_secret=settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET).start()
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


# --- Browser tests: Debian's Chromium driven by Playwright (never a downloaded browser), and a
# screenshot of the page, named in the failure message, whenever a browser test fails. Here, not
# in one app's tests: every app's browser tests share the one session browser.

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CREDITGATE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module: Playwright's loop is closed when the module ends, so tests
    that run after the browser tests (async views, `/ready/`) see a thread without a loop."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); the browser tests need it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    # Playwright's sync API keeps an asyncio loop registered on this thread; Django would take
    # the test's own ORM calls for calls from async code and refuse them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(request, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    request.node._browser_page = tab
    yield tab
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    tab = getattr(item, "_browser_page", None)
    if tab is None or report.when != "call" or not report.failed:
        return
    artifacts = Path(item.config.rootpath) / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    path = artifacts / (re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid) + ".png")
    try:
        tab.screenshot(path=str(path), full_page=True)
        note = f"screenshot of the page: {path}"
    except Exception as exc:  # noqa: BLE001 - the page may be what broke; the original failure matters more
        note = f"no screenshot ({exc})"
    report.sections.append(("browser", note))
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        crash.message = f"{crash.message} [{note}]"
