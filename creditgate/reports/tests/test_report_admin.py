"""The report's page, JSON and CSV through HTTP: who may see them, the filters, the same rows."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from creditgate.reports.tests.factories import job, owner
from creditgate.reports.tests.test_report import D1, D3, jobs  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

PAGE, DATA, CSV = "/admin/reports/usagereport/", "/admin/reports/usagereport/data/", "/admin/reports/usagereport/csv/"
RANGE = {"from": D1.date().isoformat(), "to": D3.date().isoformat()}


def client_for(*, staff=False, superuser=False, perm=False) -> Client:
    user = get_user_model().objects.create_user(username=f"u{staff}{superuser}{perm}", password="pw-123456789",
                                                is_staff=staff or superuser, is_superuser=superuser)
    if perm:
        user.user_permissions.add(Permission.objects.get(codename="view_usagereport"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", [PAGE, DATA, CSV])
def test_who_may_see_the_report(url):
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert client_for().get(url).status_code == 403                     # a user, not staff
    assert client_for(staff=True).get(url).status_code == 403           # staff without the permission
    assert client_for(staff=True, perm=True).get(url).status_code == 200
    assert client_for(superuser=True).get(url).status_code == 200


def test_the_admin_index_links_to_the_report():
    page = client_for(superuser=True).get("/admin/")
    assert PAGE in page.content.decode() and "Usage and margin report" in page.content.decode()


def test_the_page_shows_totals_rows_and_the_links_of_the_same_filters(jobs):  # noqa: F811
    page = client_for(superuser=True).get(PAGE, {**RANGE, "tier": "basic"})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="total-credits">3<' in html and 'id="total-jobs">3<' in html
    assert "data/?from=2026-03-02&amp;to=2026-03-10&amp;group=day&amp;tier=basic" in html
    assert "csv/?from=2026-03-02&amp;to=2026-03-10&amp;group=day&amp;tier=basic" in html
    table = html[html.index('id="report-rows"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + 2  # the header and the two basic rows


def test_json_and_csv_carry_the_same_rows(jobs):  # noqa: F811
    client = client_for(superuser=True)
    data = client.get(DATA, {**RANGE, "group": "week"}).json()
    assert (data["from"], data["to"], data["group"], data["tier"], data["usd_per_credit"]) == (
        "2026-03-02", "2026-03-10", "week", None, "0.010000")
    assert [r["period"] for r in data["rows"]] == ["2026-03-02"] * 3 + ["2026-03-09"]
    assert data["rows"][0] == {
        "period": "2026-03-02", "usage": "basic", "model": "runware:97@1", "provider": "runware", "jobs": 3,
        "refused": 0, "failed": 1, "images": 3, "tokens": 0, "credits": 3, "cost_usd": "0.027000",
        "revenue_usd": "0.030000", "margin_usd": "0.003000", "margin_pct": 10.0, "calls": 6, "failed_calls": 4,
        "p50_ms": 300, "p95_ms": 400}
    assert data["totals"]["credits"] == 21 and data["totals"]["cost_usd"] == "0.170000"
    assert data["series"]["periods"] == ["2026-03-02", "2026-03-09"]

    response = client.get(CSV, {**RANGE, "group": "week"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="usage-2026-03-02-2026-03-10-week.csv"' in response["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    expected = [{key: "" if value is None else str(value) for key, value in row.items()} for row in data["rows"]]
    assert table == expected


def test_filters_change_the_data(jobs):  # noqa: F811
    client = client_for(superuser=True)
    everything = client.get(DATA, RANGE).json()
    premium = client.get(DATA, {**RANGE, "tier": "premium"}).json()
    assert len(everything["rows"]) == 6 and [r["usage"] for r in premium["rows"]] == ["premium"]
    one_day = client.get(DATA, {"from": "2026-03-03", "to": "2026-03-03"}).json()
    assert {r["period"] for r in one_day["rows"]} == {"2026-03-03"} and one_day["totals"]["jobs"] == 2


@pytest.mark.parametrize("query, field", [
    ({"from": "2026-03-10", "to": "2026-03-01"}, "from"),
    ({"from": "2020-01-01", "to": "2026-03-01"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"group": "month"}, "group"),
    ({"tier": "gold"}, "tier"),
])
def test_bad_filters_are_refused_clearly(query, field):
    client = client_for(superuser=True)
    response = client.get(DATA, query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["details"]
    assert client.get(CSV, query).status_code == 400
    page = client.get(PAGE, query)
    assert page.status_code == 400 and "errornote" in page.content.decode()


def test_the_job_page_lists_each_provider_call(jobs):  # noqa: F811
    from creditgate.generation.models import Job

    retried = Job.objects.filter(calls__status="failed", kind="image", tier="basic", status="succeeded").first()
    assert retried is not None
    html = client_for(superuser=True).get(f"/admin/generation/job/{retried.pk}/change/").content.decode()
    assert "provider calls (each try, retries included)" in html.lower()
    assert html.count("runware runware:97@1: 2 images") == 2  # the failed try and its retry
    assert "$0.018000" in html and "Provider&#x27;s figure" in html


def test_an_empty_range_says_so():
    who = owner()
    job(who, at=D1, images=1, calls=[])
    html = client_for(superuser=True).get(PAGE, {"from": "2025-01-01", "to": "2025-01-31"}).content.decode()
    assert "Nothing was asked for in this range." in html


def test_the_ai_models_list_warns_of_a_model_whose_cost_drifts(settings):
    import datetime as dt
    from decimal import Decimal

    from django.utils import timezone

    from creditgate.catalog.models import AIModelConfig
    from creditgate.generation.models import CallStatus, CostSource

    settings.CREDITGATE_COST_DRIFT_PERCENT = 25
    settings.CREDITGATE_COST_DRIFT_MIN_UNITS = 10
    who = owner()
    recent = timezone.now() - dt.timedelta(days=2)
    ok = ("image", CallStatus.SUCCEEDED, 10, "0.13", 300, CostSource.PROVIDER)  # $0.013 per image
    job(who, at=recent, images=10, calls=[ok])
    client = client_for(superuser=True)
    AIModelConfig.objects.filter(model_name="runware:97@1").update(usd_per_image=Decimal("0.0110"))  # +18%
    assert "per image over the last 30 days" not in client.get("/admin/catalog/aimodelconfig/").content.decode()

    AIModelConfig.objects.filter(model_name="runware:97@1").update(usd_per_image=Decimal("0.0090"))  # +44%
    html = client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert ("HiDream-I1 Full (runware:97@1): the provider reported $0.013000 per image over the last 30 days "
            "(10 images), +44.4% from the catalog&#x27;s $0.0090.") in html
    job(who, at=timezone.now() - dt.timedelta(days=40), images=10, calls=[ok])  # older than the window: not counted
    assert "(10 images)" in client.get("/admin/catalog/aimodelconfig/").content.decode()
