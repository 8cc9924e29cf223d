"""The report in Chromium against the live server: the charts are drawn, the filters change the
data, the CSV download holds the rows the page shows, and a user who is not staff gets 403."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model

from creditgate.catalog.models import GlobalIntegrationSettings
from creditgate.generation.models import CallStatus, CostSource, JobKind, JobStatus
from creditgate.reports.tests.factories import job, owner

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

PASSWORD = "pw-browser-123"
START = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
DAYS = 14
URL = "/admin/reports/usagereport/?from=2026-03-02&to=2026-03-15"
OK, FAILED = CallStatus.SUCCEEDED, CallStatus.FAILED


@pytest.fixture
def report_env(transactional_db, seeded_catalog, live_server):
    """Two weeks of jobs at every tier and text, with retries, a refusal and failures."""
    GlobalIntegrationSettings.objects.update_or_create(id=1, defaults={"usd_per_credit": "0.012"})
    who = owner()
    for day in range(DAYS):
        at = START + dt.timedelta(days=day)
        job(who, at=at, images=2 + day % 3, calls=[("image", FAILED, 0, "0", 90, CostSource.NONE)] * (day % 2)
            + [("image", OK, 2 + day % 3, f"{0.009 * (2 + day % 3):.3f}", 2500 + 40 * day, CostSource.PROVIDER)])
        job(who, at=at, tier="quality", model="gpt-image-2", provider="openai", rate=5, images=1 + day % 2,
            calls=[("image", OK, 1 + day % 2, f"{0.042 * (1 + day % 2):.3f}", 9000, CostSource.CATALOG)])
        if day % 4 == 0:
            job(who, at=at, tier="premium", model="google:4@2", rate=15, images=1,
                calls=[("image", OK, 1, "0.138", 21000, CostSource.PROVIDER)])
        job(who, at=at, kind=JobKind.TEXT, text_model="gpt-5.1", tokens=1200 + 100 * day, tokens_per_credit=1000,
            credits=2, calls=[("text", OK, 1, "0.004", 3500, CostSource.USAGE)])
    job(who, at=START, tier="quality", model="gpt-image-2", provider="openai", rate=5, asked=1,
        status=JobStatus.FAILED, error_code="content_refused", calls=[("image", FAILED, 0, "0", 40, CostSource.NONE)])
    return live_server


def log_in(page, live_server, *, staff: bool) -> None:
    username = "ops" if staff else "someone"
    get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=staff, is_superuser=staff)
    # Staff log in on the admin's page; anyone else on the site's own (the admin's refuses them).
    page.goto(live_server.url + ("/admin/login/" if staff else "/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def drawn_pixels(page, canvas_id: str) -> int:
    return page.evaluate("""id => { const c = document.getElementById(id);
        if (!c.width || !c.height) return 0;
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i]) n++; return n; }""", canvas_id)


def table_rows(page) -> list[list[str]]:
    return page.evaluate("""() => [...document.querySelectorAll('#report-rows tbody tr')]
        .map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim()))""")


def chart_data(page, canvas_id: str) -> list:
    return page.evaluate("id => Chart.getChart(id).data.datasets.map(d => d.data)", canvas_id)


def test_the_charts_render_and_the_filters_change_the_data(report_env, page):
    log_in(page, report_env, staff=True)
    page.goto(report_env.url + "/admin/")
    page.get_by_role("link", name="Usage and margin report").click()  # two clicks from the admin's index
    expect(page.get_by_role("heading", name="Usage and margin")).to_be_visible()

    page.goto(report_env.url + URL)
    expect(page.locator("#report")).to_have_attribute("data-charts", "drawn")
    for canvas in ("chart-credits-cost", "chart-margin", "chart-failures"):
        assert drawn_pixels(page, canvas) > 2000, canvas  # axes, labels and data: far more than a blank canvas
    credits_per_day = chart_data(page, "chart-credits-cost")[0]
    assert len(credits_per_day) == DAYS and sum(credits_per_day) == int(page.locator("#total-credits").inner_text())
    margin_tiers = page.evaluate("() => Chart.getChart('chart-margin').data.labels")
    assert margin_tiers == ["Basic", "Quality", "Premium", "Text"]
    everything = table_rows(page)
    assert {row[1] for row in everything} == {"basic", "quality", "premium", "text"}

    page.get_by_label("Tier", exact=True).select_option("premium")
    page.get_by_label("By", exact=True).select_option("week")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#report")).to_have_attribute("data-charts", "drawn")
    premium = table_rows(page)
    assert {row[1] for row in premium} == {"premium"} and [row[0] for row in premium] == ["2026-03-02", "2026-03-09"]
    assert chart_data(page, "chart-credits-cost")[0] == [30, 30]  # premium jobs on days 0, 4 (week 1), 8, 12 (week 2)
    assert page.evaluate("() => Chart.getChart('chart-margin').data.labels") == ["Premium"]
    assert drawn_pixels(page, "chart-credits-cost") > 2000

    page.get_by_label("From", exact=True).fill("2026-03-10")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#report")).to_have_attribute("data-charts", "drawn")
    assert [row[0] for row in table_rows(page)] == ["2026-03-09"]  # the week of the 10th, from the 10th on
    assert chart_data(page, "chart-credits-cost")[0] == [30]


def test_the_csv_download_holds_the_rows_on_the_page(report_env, page):
    log_in(page, report_env, staff=True)
    page.goto(report_env.url + URL)
    expect(page.locator("#report")).to_have_attribute("data-charts", "drawn")
    shown = table_rows(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "usage-2026-03-02-2026-03-15-day.csv"
    with open(download.value.path(), encoding="utf-8") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["period", "usage", "model", "provider"] and len(body) == len(shown) > DAYS
    assert [[cell or "—" for cell in row] for row in body] == shown


def test_someone_who_is_not_staff_gets_403(report_env, page):
    log_in(page, report_env, staff=False)
    for path in (URL, "/admin/reports/usagereport/data/", "/admin/reports/usagereport/csv/"):
        response = page.goto(report_env.url + path)
        assert response.status == 403, path


def test_without_a_credit_value_the_margin_is_explained_and_the_table_stays_in_its_box(report_env, browser):
    GlobalIntegrationSettings.objects.update(usd_per_credit=None)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        log_in(page, report_env, staff=True)
        page.goto(report_env.url + URL)
        expect(page.locator("#report")).to_have_attribute("data-charts", "drawn")
        # No cost bars passing for a margin: a sentence says what the chart needs.
        assert page.locator("#chart-margin").count() == 0
        expect(page.locator("#margin-explained")).to_contain_text("Set USD per credit in the settings")
        headers = page.locator("#report-rows th").all_inner_texts()
        assert not {"Revenue (USD)", "Margin (USD)", "Margin %"} & set(headers)  # all dashes: left out
        box = page.evaluate("""() => { const box = document.querySelector('.table-scroll').getBoundingClientRect();
            const content = document.querySelector('#content').getBoundingClientRect();
            return {box: box.right, content: content.right, page: document.documentElement.scrollWidth,
                    view: document.documentElement.clientWidth}; }""")
        assert box["box"] <= box["content"] + 1 and box["page"] <= box["view"], box
    finally:
        context.close()
