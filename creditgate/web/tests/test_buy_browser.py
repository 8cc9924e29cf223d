"""Buying credits in a real browser (Debian's Chromium through Playwright): the page lists the
packs from the API, Buy opens the sandbox's Stripe checkout page, Pay brings the user back to a
balance that grew (by Stripe's webhook, which the sandbox sends to the live server), and the new
credits pay for images."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from creditgate.billing.models import CreditPack
from creditgate.catalog.models import IntegrationProvider
from creditgate.core import runtime
from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.models import LedgerEntry

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

PASSWORD = "pw-browser-123"


@pytest.fixture
def shop(transactional_db, seeded_catalog, sandbox, settings, live_server):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_JOB_SWEEP_SECONDS = 0
    IntegrationProvider.objects.get_or_create(provider_id="stripe", defaults={"display_name": "Stripe"})
    CreditPack.objects.all().delete()  # the migration's, while no test has flushed them yet
    small = CreditPack.objects.create(name="Handful", credits=40, price_amount=300, currency="usd", position=1)
    big = CreditPack.objects.create(name="Bucket", credits=250, price_amount=1200, currency="usd", position=2)
    yield live_server, small, big
    runtime.wait_idle()
    runtime.wait_idle()


def log_in(page, live_server, username: str, credits: int):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.com")
    account = credits_services.account_for_user(user=user)
    if credits:
        credits_services.credits_grant(account=account, amount=credits, reason="browser test grant")
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector('#app[data-ready="true"]')
    return account


def test_buying_a_pack_through_the_checkout_page_grows_the_balance_and_pays_for_images(shop, page, sandbox):
    live_server, _small, _big = shop
    account = log_in(page, live_server, "bea", 0)
    packs = page.locator("#packs li")
    expect(packs).to_have_count(2)
    assert packs.nth(0).inner_text().split("\n")[:3] == ["Handful", "40 credits", "3.00 USD"]
    assert packs.nth(1).inner_text().split("\n")[:3] == ["Bucket", "250 credits", "12.00 USD"]
    expect(page.locator("#bal-available")).to_have_text("0")

    page.get_by_role("button", name="Buy Bucket: 250 credits for 12.00 USD").click()
    page.wait_for_url(re.compile(re.escape(sandbox.url) + r"/stripe/pay/cs_test_\w+"))
    expect(page.get_by_test_id("checkout-total")).to_have_text("12.00 USD")
    page.get_by_role("button", name="Pay 12.00 USD").click()

    page.wait_for_url(re.compile(re.escape(live_server.url) + r"/(\?.*)?$"))
    expect(page.get_by_test_id("purchase")).to_have_text("Payment received: 250 credits added.")
    expect(page.locator("#bal-available")).to_have_text("250")
    assert "checkout=" not in page.url  # the return address is not left to be bookmarked
    bought = page.locator("#ledger-rows tr", has_text="Credits added").first
    assert "Bought Bucket" in bought.inner_text() and "+250" in bought.inner_text()
    assert credits_selectors.balance_get(account=account)["available"] == 250

    # The credits pay for work at once.
    page.get_by_role("radio").first.check()
    page.get_by_label("How many images").select_option("1")
    page.get_by_label("Describe the image").fill("a paid-for lighthouse")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#image-job-summary")).to_contain_text("Delivered 1 image", timeout=30_000)
    assert LedgerEntry.objects.filter(account=account, kind="capture").count() == 1
    # The page reads the balance again after the summary (a request of its own): wait for it.
    expect(page.locator("#bal-available")).not_to_have_text("250")
    assert int(page.locator("#bal-available").inner_text()) < 250


def test_cancelling_on_the_checkout_page_changes_nothing(shop, page, sandbox):
    live_server, _small, _ = shop
    account = log_in(page, live_server, "cal", 5)
    page.get_by_role("button", name="Buy Handful: 40 credits for 3.00 USD").click()
    page.wait_for_url(re.compile(re.escape(sandbox.url) + r"/stripe/pay/"))
    page.get_by_role("link", name="Cancel and go back").click()
    expect(page.get_by_test_id("purchase")).to_have_text("Checkout cancelled; nothing was charged.")
    expect(page.locator("#bal-available")).to_have_text("5")
    assert credits_selectors.balance_get(account=account)["available"] == 5


def test_the_low_balance_email_is_set_on_the_page(shop, page):
    live_server, _, _ = shop
    log_in(page, live_server, "dee", 100)
    page.get_by_text("Email me when my credits run low").click()
    expect(page.get_by_label("Send to")).to_have_value("dee@example.com")
    page.get_by_label("When available credits fall below").fill("25")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("alert-status")).to_have_text(
        "Armed: an email to dee@example.com when your available credits fall below 25.")
