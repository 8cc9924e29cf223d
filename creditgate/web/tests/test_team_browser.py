"""The team page in a real browser: an owner caps a writer, the writer's request over the cap is
refused with the cap's message; keys are shown once and revoked; an endpoint gets a test event."""

from __future__ import annotations

import pytest

from creditgate.credits import services as credits_services
from creditgate.credits.models import AccountMember, ApiKey, Hold
from creditgate.webhooks.models import WebhookDelivery

from .test_page_browser import (  # noqa: F401 - page_env: fixture
    ai_config,
    credits_words,
    expect,
    log_in,
    make_user,
    page_env,
    pick,
)

pytestmark = pytest.mark.browser


def open_team(page, live_server) -> None:
    page.goto(live_server.url + "/team/")
    page.wait_for_selector('#team[data-ready="true"]')


@pytest.fixture
def team(page_env):
    owner = make_user("olivia", 500)
    writer = make_user("walter", 0)
    credits_services.account_member_add(account=credits_services.account_for_user(user=owner), user=writer)
    return owner, writer


def test_an_owner_sets_a_cap_and_the_writers_request_over_it_is_refused_with_the_caps_message(team, page, browser,
                                                                                               page_env):
    owner, writer = team
    tier = min(ai_config()["image_qualities"], key=lambda q: q["credits_per_image"])
    cap = tier["credits_per_image"]          # room for one image, not two

    log_in(page, page_env, owner)
    open_team(page, page_env)
    page.get_by_label("Monthly cap for walter").fill(str(cap))
    page.get_by_role("button", name="Save the cap of walter").click()
    expect(page.get_by_role("status")).to_have_text(f"walter may now use {credits_words(cap)} a month.")
    expect(page.locator('tr[data-member="walter"]')).to_contain_text(f"0 of {cap}")
    assert AccountMember.objects.get(user=writer).monthly_cap == cap

    writer_context = browser.new_context(viewport={"width": 1280, "height": 900})
    writer_page = writer_context.new_page()
    try:
        log_in(writer_page, page_env, writer)
        pick(writer_page, tier=tier, count=2)
        writer_page.get_by_label("Describe the image").fill("a lighthouse")
        # The cap binds, and the page says so before the click (issue 26): no green "covered", no Generate.
        expect(writer_page.locator("#coverage")).to_have_text(
            f"This needs {2 * cap} credits, but your monthly cap leaves {credits_words(cap)} "
            f"this month (0 of {cap} used).")
        expect(writer_page.get_by_role("button", name="Generate")).to_be_disabled()
        assert not Hold.objects.filter(user=writer).exists()

        # The writer's own page shows the cap, read-only: no cap form, no endpoint form.
        open_team(writer_page, page_env)
        expect(writer_page.locator('tr[data-member="walter"]')).to_contain_text(credits_words(cap))
        expect(writer_page.get_by_label("Monthly cap for walter")).to_have_count(0)
        expect(writer_page.locator("#endpoint-form")).to_be_hidden()
    finally:
        writer_context.close()


def test_a_cap_set_below_this_months_use_warns(team, page, page_env):
    owner, writer = team
    account = credits_services.account_for_user(user=owner)
    credits_services.hold_place(account=account, amount=77, idempotency_key="used", fingerprint="f", user=writer)
    log_in(page, page_env, owner)
    open_team(page, page_env)
    page.get_by_label("Monthly cap for walter").fill("50")
    page.get_by_role("button", name="Save the cap of walter").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The cap is set, but walter already used 77 credits this month: their new jobs are refused until next month.")
    expect(page.locator('tr[data-member="walter"] [data-testid="over-cap"]')).to_have_text(
        "Over the cap by 27: new jobs are refused until next month or a higher cap.")


def test_an_owner_makes_a_key_sees_it_once_and_revokes_it(team, page, page_env):
    owner, writer = team
    log_in(page, page_env, owner)
    open_team(page, page_env)
    page.get_by_label("Key name").fill("CMS plugin")
    page.get_by_label("Key for").select_option(label="walter")
    page.get_by_label("Monthly cap (credits, optional)").fill("40")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key")
    expect(key).to_have_text(__import__("re").compile(r"^cg_\S+\.\S+$"))
    secret = key.inner_text()
    expect(page.locator('tr[data-key="CMS plugin"]')).to_contain_text("walter")
    row = ApiKey.objects.get(name="CMS plugin")
    assert row.member.user == writer and row.monthly_cap == 40 and secret not in row.hashed_key

    page.reload()
    page.wait_for_selector('#team[data-ready="true"]')
    assert secret not in page.content()                      # never shown twice
    page.get_by_role("button", name="Revoke the key CMS plugin").click()
    expect(page.locator('tr[data-key="CMS plugin"]')).to_contain_text("Revoked")
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_an_owner_registers_an_endpoint_and_sends_a_test_event(team, page, page_env, settings):
    from creditgate.webhooks.tests.conftest import Receiver

    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receiver = Receiver()
    try:
        owner, _ = team
        log_in(page, page_env, owner)
        open_team(page, page_env)
        page.get_by_label("Endpoint URL").fill("http://10.0.0.7/hook")      # a private address: refused
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_role("alert")).to_contain_text("private address")
        page.get_by_label("Endpoint URL").fill(receiver.url)
        page.get_by_label("Description (optional)").fill("CMS")
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_test_id("new-secret")).to_contain_text("whsec_")
        page.get_by_role("button", name=f"Send test event ({receiver.url})").click()
        receiver.wait_for(1)
        page.get_by_role("button", name="Refresh").click()
        expect(page.locator("#delivery-rows")).to_contain_text("Delivered")
        assert WebhookDelivery.objects.get().status == "succeeded"
    finally:
        receiver.stop()
