"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), and a
screenshot of the page, named in the failure message, whenever a browser test fails."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CREDITGATE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser():
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
    except Exception as exc:  # the page may be what broke; the original failure matters more
        note = f"no screenshot ({exc})"
    report.sections.append(("browser", note))
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        crash.message = f"{crash.message} [{note}]"
