"""The page for an owner and for members of one account (issue 22): a member's history holds only
their own jobs (and the account's credits), an owner's every member's, naming who ran each."""

from __future__ import annotations

import re

import pytest

from creditgate.credits import services as credits_services
from creditgate.generation import intake
from creditgate.web.tests.test_page_browser import ai_config, expect, generate, log_in, make_user, page_env  # noqa: F401

pytestmark = pytest.mark.browser


def test_members_see_their_own_history_and_the_owner_sees_whose_each_job_was(page_env, page):  # noqa: F811
    basic = ai_config()["image_qualities"][0]
    owner = make_user("olga", 50)
    account = credits_services.account_for_user(user=owner)
    mia, max_ = make_user("mia", 0), make_user("max", 0)
    for member in (mia, max_):
        credits_services.account_member_add(account=account, user=member)
    intake.job_create_images(user=max_, prompt="max's secret heron", tier=basic["tier"], count=1)

    log_in(page, page_env, mia)
    generate(page, tier=basic, count=1, prompt="mia's fox")
    expect(page.locator("#image-job-summary")).to_have_text(re.compile(r"^Delivered 1 image"), timeout=30_000)
    charge = page.locator("#ledger-rows tr", has_text="Charged for")
    expect(charge).to_have_count(1)  # hers only: max's job is not in her history
    expect(charge).to_contain_text("“mia's fox”")
    expect(charge).not_to_contain_text("by ")  # her own
    expect(page.locator("#ledger-rows")).not_to_contain_text("heron")
    expect(page.locator("#ledger-rows tr", has_text="Credits added")).to_have_count(1)  # the account's grant

    page.context.clear_cookies()
    log_in(page, page_env, owner)
    charges = page.locator("#ledger-rows tr", has_text="Charged for")
    expect(charges).to_have_count(2)
    expect(page.locator("#ledger-rows tr", has_text="“mia's fox”").filter(has_text="Charged for")).to_contain_text(
        "by mia")
    heron = page.locator("#ledger-rows tr", has_text="“max's secret heron”").filter(has_text="Charged for")
    expect(heron).to_contain_text("by max")
    heron.get_by_role("link").click()
    expect(page.get_by_test_id("job-user")).to_have_text("max")
    expect(page.get_by_test_id("job-prompt")).to_have_text("max's secret heron")
