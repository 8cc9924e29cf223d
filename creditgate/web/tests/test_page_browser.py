"""The page in a real browser (Debian's Chromium through Playwright) against the live server,
with the provider sandbox answering every provider call.

Everything the tests expect of tiers and prices is read from the API or the catalog, never
written here, so the tests hold for any catalog an operator configures.
"""

from __future__ import annotations

import re
from functools import partial

import pytest
from django.test import Client

from creditgate.catalog.models import AIModelConfig, ImageTier
from creditgate.core import runtime
from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.models import LedgerEntry
from creditgate.credits.tests import factories

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

PASSWORD = "pw-browser-123"


@pytest.fixture
def page_env(transactional_db, seeded_catalog, sandbox, settings, live_server):
    """Committed rows the live server's thread can see, jobs run in-process, providers answered
    by the sandbox."""
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    yield live_server
    runtime.wait_idle()


make_user = partial(factories.make_user, password=PASSWORD, reason="browser test grant")


def account_balance(user) -> dict:
    return credits_selectors.balance_get(account=credits_services.account_for_user(user=user))


def ai_config() -> dict:
    response = Client().get("/api/v1/system/ai-config/")
    assert response.status_code == 200
    return response.json()


def credits_words(n: int) -> str:
    return f"{n} credit" + ("" if n == 1 else "s")


def log_in(page, live_server, user) -> None:
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector('#app[data-ready="true"]')


def shown_available(page) -> int:
    return int(page.locator("#bal-available").inner_text())


def pick(page, *, tier: dict, count: int) -> None:
    page.get_by_role("radio", name=re.compile(rf"^{re.escape(tier['label'])}\b")).check()
    page.get_by_label("How many images").select_option(str(count))


def wait_for_images(page, n: int) -> None:
    page.wait_for_function(
        """n => { const imgs = [...document.querySelectorAll('#images img')];
                  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=n, timeout=30_000)


def generate(page, *, tier: dict, count: int, prompt: str) -> None:
    pick(page, tier=tier, count=count)
    page.get_by_label("Describe the image").fill(prompt)
    page.get_by_role("button", name="Generate").click()


def test_tiers_prices_and_limits_appear_as_the_api_gives_them(page_env, page):
    user = make_user("tess", 50)
    config = ai_config()
    assert config["image_qualities"], "the seeded catalog serves tiers"

    log_in(page, page_env, user)

    radios = page.locator('#tiers input[type="radio"]')
    assert radios.count() == len(config["image_qualities"])
    for quality in config["image_qualities"]:
        label = page.locator(f'label[for="tier-{quality["tier"]}"]')
        assert label.locator(".tier-name").inner_text() == quality["label"]
        assert label.locator(".tier-price").inner_text() == f"{credits_words(quality['credits_per_image'])} per image"
    options = page.locator("#count option").all_inner_texts()
    assert options == [str(n) for n in range(1, config["max_images_per_request"] + 1)]
    assert page.locator("#text-model").inner_text().startswith(
        f"Text uses {config['text_model']}, chosen by your administrator.")
    assert page.locator("#tiers legend").inner_text() == "Tier"
    assert shown_available(page) == 50


def test_changing_tier_and_count_updates_the_total(page_env, page):
    user = make_user("theo", 10)
    config = ai_config()
    log_in(page, page_env, user)

    for quality in config["image_qualities"]:
        for count in (1, config["max_images_per_request"]):
            pick(page, tier=quality, count=count)
            total = quality["credits_per_image"] * count
            # Priced by the server's estimate endpoint, so wait for its answer.
            expect(page.locator("#total")).to_have_text(credits_words(total))
            covered = ("Your available credits cover this." if total <= 10
                       else f"This needs {total} credits; you have 10.")
            expect(page.locator("#coverage")).to_have_text(covered)


def test_generating_at_each_tier_shows_the_images_and_lowers_the_balance_by_the_total(page_env, page):
    config = ai_config()
    count = min(2, config["max_images_per_request"])
    needed = sum(q["credits_per_image"] * count for q in config["image_qualities"])
    user = make_user("gina", needed + 7)
    log_in(page, page_env, user)

    for quality in config["image_qualities"]:
        before = shown_available(page)
        total = quality["credits_per_image"] * count

        generate(page, tier=quality, count=count, prompt=f"a lighthouse at dusk, {quality['label']}")

        expect(page.locator("#image-job-summary")).to_have_text(
            f"Delivered {count} images; charged {credits_words(total)}.", timeout=30_000)
        wait_for_images(page, count)
        expect(page.locator("#bal-available")).to_have_text(str(before - total))
        assert page.locator("#bal-held").inner_text() == "0"
        title = f"{count} {quality['label']} images"
        first_charge = page.locator("#ledger-rows tr", has_text="Charged for").first
        # The ledger is fetched after the balance: wait for its new top row, then read it.
        expect(first_charge).to_contain_text(f"Charged for {title}")
        assert first_charge.locator("td").nth(1).inner_text().startswith(f"Charged for {title}\n")
        assert first_charge.locator("td").nth(2).inner_text() == f"-{total}"
        first_hold = page.locator("#ledger-rows tr", has_text="Held for").first
        assert first_hold.locator("td").nth(1).inner_text().startswith(f"Held for {title}\n")
        assert first_hold.locator("td").nth(2).inner_text() == f"{total} held"

    assert account_balance(user) == {"balance": 7, "held": 0, "available": 7}


def test_a_user_with_too_few_credits_sees_the_402_message_and_keeps_their_balance(page_env, page):
    config = ai_config()
    priciest = max(config["image_qualities"], key=lambda q: q["credits_per_image"])
    price = priciest["credits_per_image"]
    user = make_user("paula", price + 5)
    log_in(page, page_env, user)
    pick(page, tier=priciest, count=1)
    page.get_by_label("Describe the image").fill("a castle")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()  # once the server priced it

    # Meanwhile the credits are spent elsewhere (another tab, a script): the page still shows
    # the old balance, so only the server can refuse.
    left = price // 5
    credits_services.credits_grant(account=credits_services.account_for_user(user=user),
                                   amount=left - (price + 5), kind="adjustment", reason="spent elsewhere")
    entries_before = LedgerEntry.objects.count()

    page.get_by_role("button", name="Generate").click()

    message = f"This needs {price} credits; you have {left}."
    expect(page.get_by_role("alert")).to_have_text(message)
    expect(page.locator("#bal-available")).to_have_text(str(left))
    expect(page.locator("#coverage")).to_have_text(message)
    assert page.get_by_role("button", name="Generate").is_disabled()
    assert page.locator("#images img").count() == 0
    assert account_balance(user) == {"balance": left, "held": 0, "available": left}
    assert LedgerEntry.objects.count() == entries_before


def test_a_price_changed_in_the_catalog_appears_after_a_reload(page_env, page):
    user = make_user("rita", 100)
    quality = ai_config()["image_qualities"][0]
    log_in(page, page_env, user)
    label = page.locator(f'label[for="tier-{quality["tier"]}"] .tier-price')
    assert label.inner_text() == f"{credits_words(quality['credits_per_image'])} per image"

    tier = ImageTier.objects.get(tier=quality["tier"])
    tier.credits_per_image = quality["credits_per_image"] + 2
    tier.save()  # what the admin's tier page does
    page.reload()
    page.wait_for_selector('#app[data-ready="true"]')

    assert label.inner_text() == f"{credits_words(tier.credits_per_image)} per image"
    pick(page, tier=quality, count=3)
    expect(page.locator("#total")).to_have_text(credits_words(tier.credits_per_image * 3))


def test_text_job_shows_the_model_the_text_and_what_it_cost(stream_env, page):
    user = make_user("tom", 50)
    log_in(page, stream_env, user)

    page.get_by_label("What should it write?").fill("Write two sentences about lighthouses.")
    page.get_by_role("button", name="Write").click()

    summary = page.locator("#text-job-summary")
    expect(summary).to_contain_text("Done", timeout=30_000)
    assert page.locator("#text-output").inner_text().strip()
    found = re.search(r"charged (\d+) credit", summary.inner_text())
    assert found, summary.inner_text()
    charged = int(found.group(1))
    assert charged >= 1
    expect(page.locator("#bal-available")).to_have_text(str(50 - charged))
    assert account_balance(user)["available"] == 50 - charged


def test_partial_and_failed_jobs_say_what_was_delivered_and_charged(page_env, page, sandbox):
    config = ai_config()
    quality = config["image_qualities"][0]
    count = config["max_images_per_request"]
    user = make_user("pat", quality["credits_per_image"] * count * 2)
    log_in(page, page_env, user)

    sandbox.configure(error_rate=1.0, error_kind="content_refusal")
    generate(page, tier=quality, count=count, prompt="a refused prompt")
    summary = page.locator("#image-job-summary")
    expect(summary).to_contain_text("Failed", timeout=30_000)
    assert summary.inner_text().startswith("Failed: ")
    assert summary.inner_text().endswith("No credits were charged.")
    assert summary.inner_text().count("No credits were charged.") == 1
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()

    sandbox.configure(error_rate=0.5, error_kind="partial")
    before = account_balance(user)["available"]
    generate(page, tier=quality, count=count, prompt="a partly refused prompt")
    expect(summary).to_have_text(re.compile(r"^Delivered"), timeout=30_000)
    text = summary.inner_text()
    match = re.fullmatch(r"Delivered (\d+) (?:of (\d+) )?images?; charged (\d+) credits?\.", text)
    assert match, text
    delivered = int(match.group(1))
    assert int(match.group(3)) == delivered * quality["credits_per_image"]
    if match.group(2):  # partial (with a rate of 0.5 a full batch is possible, if unlikely)
        assert int(match.group(2)) == count
    wait_for_images(page, delivered)
    assert account_balance(user)["available"] == before - delivered * quality["credits_per_image"]


def test_the_page_at_375px_has_no_horizontal_scroll(page_env, browser):
    config = ai_config()
    quality = config["image_qualities"][0]
    count = config["max_images_per_request"]
    user = make_user("mia", quality["credits_per_image"] * count + 3)
    context = browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        log_in(page, page_env, user)
        generate(page, tier=quality, count=count,
                 prompt="a very long prompt without spaces " + "x" * 200)
        expect(page.locator("#image-job-summary")).to_have_text(re.compile(r"^Delivered"), timeout=30_000)
        wait_for_images(page, count)

        sizes = page.evaluate("""() => ({scroll: document.documentElement.scrollWidth,
                                          client: document.documentElement.clientWidth,
                                          body: document.body.scrollWidth})""")
        assert sizes["client"] == 375
        assert sizes["scroll"] <= sizes["client"] and sizes["body"] <= sizes["client"], sizes
    finally:
        context.close()


def test_every_control_is_reachable_with_the_keyboard_and_shows_focus(page_env, page):
    user = make_user("kim", 20)
    log_in(page, page_env, user)
    page.get_by_label("Describe the image").fill("a boat")

    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => { const el = document.activeElement;
            const style = getComputedStyle(el.matches('#tiers input') ? el.nextElementSibling : el);
            return {id: el.id, outline: style.outlineStyle}; }""")
        if info["id"]:
            reached.add(info["id"])
            assert info["outline"] != "none", f"#{info['id']} shows no focus"
    assert {"count", "image-prompt", "generate", "text-prompt"} <= reached
    assert any(i.startswith("tier-") for i in reached)


def test_a_tier_that_became_unavailable_is_explained_and_leaves_the_list(page_env, page):
    config = ai_config()
    gone = config["image_qualities"][-1]
    user = make_user("una", gone["credits_per_image"] * 2)
    log_in(page, page_env, user)
    pick(page, tier=gone, count=1)
    page.get_by_label("Describe the image").fill("a comet")
    # Ready to generate (the live total came back) before the tier goes: otherwise the page's own
    # estimate would already find it gone and keep the button disabled.
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()

    # The operator takes the tier's model out of service after the page was loaded.
    AIModelConfig.objects.filter(quality_tier=gone["tier"], is_active=True).update(is_active=False)
    from creditgate.catalog.ai_config_cache import ai_config_invalidate

    ai_config_invalidate()  # queryset.update() sends no signal; the admin's save would
    page.get_by_role("button", name="Generate").click()

    expect(page.get_by_role("alert")).to_have_text(
        f"{gone['label']} images aren't available right now. Pick another tier or try again later.")
    expect(page.locator(f"#tier-{gone['tier']}")).to_have_count(0)
    assert page.locator('#tiers input[type="radio"]').count() == len(config["image_qualities"]) - 1
    assert account_balance(user)["available"] == gone["credits_per_image"] * 2


def test_older_ledger_entries_load_on_request_newest_first(page_env, page):
    user = make_user("lee", 0)
    account = credits_services.account_for_user(user=user)
    for n in range(1, 23):
        credits_services.credits_grant(account=account, amount=n, reason=f"grant {n}")
    log_in(page, page_env, user)

    rows = page.locator("#ledger-rows tr")
    first_page = rows.count()
    assert 0 < first_page < 22
    assert rows.first.locator("td").nth(2).inner_text() == "+22"

    page.get_by_role("button", name="Show older entries").click()
    expect(rows).to_have_count(min(22, 2 * first_page))
    amounts = [int(rows.nth(i).locator("td").nth(2).inner_text()) for i in range(rows.count())]
    assert amounts == sorted(amounts, reverse=True)


# --- The page as a new user meets it (issue 16, item 5) -----------------------------------------

def visible_text_count(page, text: str) -> int:
    """How many elements show `text` on screen: hidden ones and screen-reader-only ones (clipped
    to a pixel) do not count."""
    return page.evaluate("""t => [...document.body.querySelectorAll('*')].filter(el => {
        if (!el.textContent.includes(t) || [...el.children].some(c => c.textContent.includes(t))) return false;
        const r = el.getBoundingClientRect();
        return r.width > 1 && r.height > 1 && getComputedStyle(el).visibility !== 'hidden';
    }).length""", text)


def test_generate_and_write_say_why_they_are_grey_until_a_prompt_is_typed(page_env, page):
    user = make_user("nina", 50)
    log_in(page, page_env, user)

    generate, write = page.get_by_role("button", name="Generate"), page.get_by_role("button", name="Write")
    expect(generate).to_be_disabled()
    expect(write).to_be_disabled()
    expect(page.locator("#generate-hint")).to_have_text("Describe the image to enable Generate.")
    expect(page.locator("#text-hint")).to_have_text("Type what it should write to enable Write.")
    assert page.locator("#generate-hint").is_visible() and page.locator("#text-hint").is_visible()
    # The hint is what a screen reader hears with the button.
    assert "generate-hint" in generate.get_attribute("aria-describedby")

    page.get_by_label("Describe the image").fill("a harbour")
    page.get_by_label("What should it write?").fill("A line about harbours.")

    expect(generate).to_be_enabled()
    expect(write).to_be_enabled()
    expect(page.locator("#generate-hint")).to_be_hidden()
    expect(page.locator("#text-hint")).to_be_hidden()

    page.get_by_label("Describe the image").fill("   ")
    expect(generate).to_be_disabled()
    expect(page.locator("#generate-hint")).to_have_text("Describe the image to enable Generate.")


def test_a_job_status_is_shown_once_and_still_announced(page_env, page):
    quality = ai_config()["image_qualities"][0]
    user = make_user("olga", quality["credits_per_image"] * 2)
    log_in(page, page_env, user)

    generate(page, tier=quality, count=1, prompt="a pier")
    done = f"Delivered 1 image; charged {credits_words(quality['credits_per_image'])}."
    expect(page.locator("#image-job-summary")).to_have_text(done, timeout=30_000)

    assert visible_text_count(page, done) == 1
    # The live region still tells a screen reader, without showing a second banner.
    status = page.locator("#status[role=status][aria-live=polite]")
    expect(status).to_have_text(done)
    box = status.bounding_box()
    assert box is None or (box["width"] <= 1 and box["height"] <= 1)


def test_history_names_each_job_and_links_to_its_page(stream_env, page):
    config = ai_config()
    quality = config["image_qualities"][-1]
    user = make_user("ivan", quality["credits_per_image"] * 2 + 20)
    log_in(page, stream_env, user)
    generate(page, tier=quality, count=2, prompt="two herons on a frozen lake")
    expect(page.locator("#image-job-summary")).to_have_text(re.compile(r"^Delivered 2 images"), timeout=30_000)
    page.get_by_label("What should it write?").fill("Write one sentence about herons.")
    page.get_by_role("button", name="Write").click()
    expect(page.locator("#text-job-summary")).to_contain_text("Done", timeout=30_000)

    title = f"2 {quality['label']} images"
    image_charge = page.locator("#ledger-rows tr", has_text=f"Charged for {title}")
    expect(image_charge).to_have_count(1)
    assert "“two herons on a frozen lake”" in image_charge.inner_text()
    text_charge = page.locator("#ledger-rows tr", has_text="Charged for Text")
    expect(text_charge).to_have_count(1)
    assert "“Write one sentence about herons.”" in text_charge.inner_text()
    assert page.locator("#ledger-rows tr", has_text="Credits added").locator("a").count() == 0

    image_charge.get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.get_by_test_id("job-prompt")).to_have_text("two herons on a frozen lake")
    expect(page.get_by_test_id("job-charged")).to_have_text(credits_words(quality["credits_per_image"] * 2))
    page.wait_for_function("""() => { const imgs = [...document.querySelectorAll('#job-images img')];
        return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }""")
    page.get_by_role("link", name="Back to your credits").click()
    page.wait_for_selector('#app[data-ready="true"]')


def chart_pixels(page) -> int:
    """Pixels the chart's canvas has drawn (not transparent)."""
    return page.evaluate("""() => { const c = document.getElementById('usage-chart');
        if (!c.width || !c.height) return 0;
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i]) n++; return n; }""")


def test_the_spending_chart_draws_what_was_spent(page_env, page):
    config = ai_config()
    quality = config["image_qualities"][0]
    user = make_user("cleo", quality["credits_per_image"] * 3 + 20)
    log_in(page, page_env, user)
    expect(page.get_by_test_id("usage-summary")).to_have_text("No credits spent in the last 30 days.")
    assert page.locator("#usage-chart").is_hidden()

    generate(page, tier=quality, count=3, prompt="three lanterns")
    expect(page.locator("#image-job-summary")).to_have_text(re.compile(r"^Delivered 3 images"), timeout=30_000)

    spent = quality["credits_per_image"] * 3
    expect(page.get_by_test_id("usage-summary")).to_have_text(
        f"{credits_words(spent)} spent in the last 30 days: {quality['label']} {spent}.")
    expect(page.locator("#usage-chart")).to_be_visible()
    page.wait_for_function("() => document.getElementById('usage-chart').width > 0")
    drawn = chart_pixels(page)
    assert drawn > 2000, drawn  # axes, labels, legend and a bar: far more than an empty canvas
    # What Chart.js drew: 30 days, today's column the tier's credits.
    chart = page.evaluate("""() => { const c = Chart.getChart('usage-chart');
        return {labels: c.data.labels.length, data: c.data.datasets.map(d => [d.label, d.data.at(-1)])}; }""")
    assert chart == {"labels": 30, "data": [[quality["label"], spent]]}

    # On a fresh load the chart may be drawn before the tiers arrive; it still gets the tier's colour.
    page.reload()
    page.wait_for_selector('#app[data-ready="true"]')
    page.wait_for_function("() => Chart.getChart('usage-chart') && Chart.getChart('usage-chart').data.datasets.length")
    colour = page.evaluate("() => Chart.getChart('usage-chart').data.datasets[0].backgroundColor")
    assert colour.lower() not in ("#8c959f", "rgba(0, 0, 0, 0.1)"), colour
    assert chart_pixels(page) > 2000


def test_the_favicon_is_served_and_the_page_loads_without_a_failed_request(page_env, page):
    user = make_user("fay", 5)
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    log_in(page, page_env, user)
    page.wait_for_load_state("networkidle")
    assert failed == []

    response = page.goto(page_env.url + "/favicon.ico")
    assert response.status == 200
    assert response.headers["content-type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert response.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file


def test_the_admin_models_list_shows_every_column_at_1400px(page_env, browser, admin_user):
    from django.utils import timezone

    # A retirement warning is the widest thing the list shows.
    AIModelConfig.objects.filter(quality_tier="premium", is_active=True).update(
        retires_on=timezone.localdate() + __import__("datetime").timedelta(days=12))
    admin_user.set_password(PASSWORD)
    admin_user.save()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(page_env.url + "/admin/login/?next=/admin/catalog/aimodelconfig/")
        page.get_by_label("Username").fill(admin_user.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#result_list")).to_be_visible()

        sizes = page.evaluate("""() => { const t = document.getElementById('result_list');
            return {table: t.scrollWidth, box: t.closest('.results').clientWidth,
                    page: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth}; }""")
        assert sizes["table"] <= sizes["box"] and sizes["page"] <= sizes["viewport"], sizes
        for header in ("Active", "Retirement"):
            cell = page.locator("#result_list thead th", has_text=re.compile(rf"^\s*{header}\s*$", re.IGNORECASE))
            box = cell.bounding_box()
            assert box and box["x"] + box["width"] <= sizes["viewport"], (header, box)
        expect(page.locator("#result_list")).to_contain_text("retires in 12 days")
    finally:
        context.close()


def test_the_admin_models_list_still_fits_at_1400px_with_lifecycle_flags_and_an_open_breaker(
        page_env, browser, admin_user, settings):
    import datetime as dt

    from django.utils import timezone

    from creditgate.catalog.models import ModelLifecycle
    from creditgate.providers import breaker

    premium = AIModelConfig.objects.get(model_name="google:4@2")
    premium.retires_on = timezone.localdate() + dt.timedelta(days=12)
    premium.save()
    for model, status, shutdown in ((premium, "retiring", None), (AIModelConfig.objects.get(model_name="gpt-image-2"),
                                                                  "retiring", dt.date(2026, 12, 24))):
        ModelLifecycle.objects.create(model=model, status=status, shutdown_on=shutdown, since=timezone.localdate(),
                                      checked_at=timezone.now())
    ModelLifecycle.objects.create(model=AIModelConfig.objects.get(model_name="runware:97@1"), status="gone",
                                  since=timezone.localdate(), checked_at=timezone.now())
    for _ in range(settings.CREDITGATE_BREAKER_FAILURES):
        breaker.breaker_record("openai", "gpt-image-2", False)
    admin_user.set_password(PASSWORD)
    admin_user.save()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(page_env.url + "/admin/login/?next=/admin/catalog/aimodelconfig/")
        page.get_by_label("Username").fill(admin_user.get_username())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#result_list")).to_contain_text("provider open until")
        expect(page.locator("#result_list")).to_contain_text("GONE since")
        sizes = page.evaluate("""() => { const t = document.getElementById('result_list');
            return {table: t.scrollWidth, box: t.closest('.results').clientWidth,
                    page: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth}; }""")
        assert sizes["table"] <= sizes["box"] and sizes["page"] <= sizes["viewport"], sizes
    finally:
        context.close()
