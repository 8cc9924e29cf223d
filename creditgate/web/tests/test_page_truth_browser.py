"""Issue 26 in Chromium: the Article generator, the generator first at 375 px, a member whose cap
binds sees it before clicking, the low-balance alert's state, each error said once, captions by
name, one date format; and issue 22's Content-Security-Policy: the page, the team page, a job's
page, the admin, the report and the API docs report no violation.

Tiers, prices and limits are read from the API or the catalog, never written here."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings
from creditgate.conftest import csp_violations
from creditgate.credits import services as credits_services
from creditgate.generation.models import Job

from .test_page_browser import (
    PASSWORD,
    account_balance,
    ai_config,
    credits_words,
    expect,
    log_in,
    make_user,
    page_env,  # noqa: F401 - the fixture `live` builds on
    pick,
    wait_for_images,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def live(page_env):  # noqa: F811 - the imported fixture
    """The live server, with the catalog, the sandbox and in-process jobs (test_page_browser)."""
    return page_env


def provider_ids() -> set[str]:
    return set(AIModelConfig.objects.values_list("model_name", flat=True))


def test_the_article_generator_writes_a_text_with_its_images(live, page):
    config = ai_config()
    tier = min(config["image_qualities"], key=lambda q: q["credits_per_image"])
    user = make_user("ada", 200)
    images = min(2, config["max_images"])
    log_in(page, live, user)

    # Its choices come from ai-config: every served tier, 0 up to the settings' images per article.
    options = page.get_by_label("Images in the article").locator("option").all_inner_texts()
    assert options == ["None", *[str(n) for n in range(1, config["max_images"] + 1)]]
    page.get_by_label("What should the article be about?").fill("a short article about red foxes")
    page.get_by_label("Image tier").select_option(tier["tier"])
    page.get_by_label("Images in the article").select_option(str(images))
    expect(page.locator("#article-total")).to_have_text(re.compile(r"^\d+ credits?$"))
    expect(page.locator("#article-coverage")).to_have_text("Your available credits cover this.")
    page.get_by_role("button", name="Create article").click()

    expect(page.locator("#article-job-summary")).to_have_text(re.compile(r"^Done: "), timeout=30_000)
    page.wait_for_function("""() => { const imgs = [...document.querySelectorAll('#article-images-out img')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }""", timeout=30_000)
    job = Job.objects.get(user=user)
    assert job.kind == "article" and job.image_count == images
    assert page.locator("#article-images-out img").count() == images
    assert page.locator("#article-output").inner_text().strip() == job.text.strip() != ""
    captions = page.locator("#article-images-out .image-model").all_inner_texts()
    assert len(captions) == images and not set(captions) & provider_ids(), captions
    expect(page.locator("#article-job-summary")).to_contain_text(f"charged {credits_words(job.credits_charged)}.")
    expect(page.locator("#bal-available")).to_have_text(str(account_balance(user)["available"]))


def test_at_375px_the_generator_comes_before_the_credit_packs(live, browser):
    user = make_user("mo", 50)
    context = browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    violations = csp_violations(context)
    try:
        page = context.new_page()
        log_in(page, live, user)
        page.wait_for_selector("#tiers .tier")
        tiers = page.locator("#tiers").bounding_box()
        packs = page.locator("#buy").bounding_box()  # the packs' card
        assert tiers is not None and packs is not None
        assert tiers["y"] < packs["y"], (tiers, packs)
        assert tiers["y"] < 667, "the tiers start on the first screen"
        # The balance card still links to the packs, further down.
        page.get_by_role("link", name="Buy credits").click()
        expect(page.locator("#buy")).to_be_in_viewport()
    finally:
        context.close()
    assert not violations


def test_a_member_whose_cap_binds_sees_it_before_clicking(live, page):
    config = ai_config()
    dearest = max(config["image_qualities"], key=lambda q: q["credits_per_image"])
    cheapest = min(config["image_qualities"], key=lambda q: q["credits_per_image"])
    cap = 10
    count = next(n for n in range(1, config["max_images_per_request"] + 1) if dearest["credits_per_image"] * n > cap)
    owner = make_user("olga", 500)
    writer = make_user("wes", 0)
    member = credits_services.account_member_add(account=credits_services.account_for_user(user=owner), user=writer)
    credits_services.member_update(actor=owner, member=member, monthly_cap=cap)

    log_in(page, live, writer)
    pick(page, tier=dearest, count=count)
    page.get_by_label("Describe the image").fill("a lighthouse at night")
    total = dearest["credits_per_image"] * count
    coverage = page.locator("#coverage")
    expect(coverage).to_have_text(f"This needs {credits_words(total)}, but your monthly cap leaves "
                                  f"{credits_words(cap)} this month (0 of {cap} used).")
    expect(coverage).to_have_class(re.compile(r"\bshort\b"))
    expect(coverage).not_to_have_text("Your available credits cover this.")
    expect(page.get_by_role("button", name="Generate")).to_be_disabled()

    pick(page, tier=cheapest, count=1)
    if cheapest["credits_per_image"] <= cap:
        expect(coverage).to_have_text(f"Within your monthly cap: {credits_words(cap)} of {credits_words(cap)} "
                                      f"left this month.")
        expect(page.get_by_role("button", name="Generate")).to_be_enabled()


def test_the_alert_says_armed_or_waiting_and_each_error_once(live, page):
    user = make_user("lou", 40)
    log_in(page, live, user)
    page.get_by_text("Email me when my credits run low").click()
    status = page.get_by_test_id("alert-status")

    page.get_by_label("When available credits fall below").fill("10")
    page.get_by_label("Send to").fill("not-an-address")
    page.get_by_role("button", name="Save").click()
    expect(status).to_have_text("Email: Enter a valid email address.")

    page.get_by_label("Send to").fill("lou@example.com")
    page.get_by_role("button", name="Save").click()
    expect(status).to_have_text("Armed: an email to lou@example.com when your available credits fall below 10.")

    page.get_by_label("When available credits fall below").fill("100")  # already below: it waits
    page.get_by_role("button", name="Save").click()
    expect(status).to_have_text(re.compile(r"^Waiting for a top-up: "))


def test_dates_read_the_same_on_the_history_and_the_job_page(live, page):
    tier = min(ai_config()["image_qualities"], key=lambda q: q["credits_per_image"])
    user = make_user("dee", 20)
    log_in(page, live, user)
    pick(page, tier=tier, count=1)
    page.get_by_label("Describe the image").fill("a kettle")
    page.get_by_role("button", name="Generate").click()
    wait_for_images(page, 1)
    caption = page.locator("#images .image-model").inner_text()
    assert caption and caption not in provider_ids()

    expect(page.locator("#ledger-rows a.job-link").first).to_be_visible()
    history_time = page.locator("#ledger-rows time").first.inner_text()
    page.locator("#ledger-rows a.job-link").first.click()
    job_time = page.locator("time.local-time").inner_text()
    # One format (the reader's locale, from one helper): the hold and the job were minutes apart at most.
    shape = re.sub(r"\d+", "0", history_time)
    assert re.sub(r"\d+", "0", job_time) == shape, (history_time, job_time)
    assert page.locator(".image-model").inner_text() == caption


@pytest.fixture
def operator(live):
    return get_user_model().objects.create_superuser(username="op", password=PASSWORD, email="op@example.com")


def test_no_page_needs_what_the_content_security_policy_forbids(live, browser, operator):
    """The page, the team page, the admin's pages (the report, the tier prices), and Swagger UI at
    /api/docs/ run with the policy and report no violation."""
    GlobalIntegrationSettings.objects.update(usd_per_credit=None)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    violations = csp_violations(context)
    try:
        page = context.new_page()
        response = page.goto(live.url + "/admin/login/?next=/admin/")
        assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
        page.get_by_label("Username").fill("op")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("link", name="AI models").first).to_be_visible()

        page.goto(live.url + "/admin/catalog/aimodelconfig/")
        expect(page.get_by_role("heading", name="Tier prices")).to_be_visible()
        page.goto(live.url + "/admin/catalog/imagetier/")
        page.goto(live.url + "/admin/audit/configchange/")
        page.goto(live.url + "/admin/reports/usagereport/")
        expect(page.locator("#report")).to_have_attribute("data-charts", "drawn")
        # No USD value per credit: no margin chart, a sentence saying why.
        expect(page.locator("#margin-explained")).to_contain_text("USD per credit")
        assert page.locator("#chart-margin").count() == 0

        response = page.goto(live.url + "/api/docs/")
        assert response is not None and "content-security-policy" in response.headers
        expect(page.locator(".opblock-tag", has_text="Generation")).to_be_visible()
        expect(page.locator(".opblock-summary-description").first).not_to_be_empty()

        tier = min(ai_config()["image_qualities"], key=lambda q: q["credits_per_image"])
        credits_services.credits_grant(account=credits_services.account_for_user(user=operator), amount=10,
                                       reason="test")
        page.goto(live.url + "/")
        page.wait_for_selector('#app[data-ready="true"]')
        pick(page, tier=tier, count=1)
        page.get_by_label("Describe the image").fill("a lamp")
        page.get_by_role("button", name="Generate").click()
        wait_for_images(page, 1)
        page.wait_for_function("() => !!Chart.getChart('usage-chart')")
        page.locator("#ledger-rows a.job-link").first.click()
        expect(page.locator("#job-images img")).to_have_count(1)
        page.goto(live.url + "/team/")
        page.wait_for_selector('#team[data-ready="true"]')
        page.get_by_role("link", name="Generate").click()
        page.get_by_role("link", name="API documentation").click()
        expect(page).to_have_url(re.compile(r"/api/docs/$"))
    finally:
        context.close()
    assert not violations, violations
