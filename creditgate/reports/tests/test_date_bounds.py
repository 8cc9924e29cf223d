"""Issue 22, item 5: every date parameter is bounded (core/dates.py: 1970-01-01 to 9998-12-31).
Out of range is a 400 in the contract's shape on the API, a form error on the admin's usage report
(its JSON and CSV: a 400 naming the field), a bad lookup on the configuration history's date
drill-down: never an overflow (a 500)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from creditgate.core import dates
from creditgate.reports.selectors import ReportFilter

pytestmark = pytest.mark.django_db

USAGE = "/api/v1/credits/usage/"
PAGE, DATA, CSV = "/admin/reports/usagereport/", "/admin/reports/usagereport/data/", "/admin/reports/usagereport/csv/"

# (query, the field named): each was a 500 (OverflowError) or is outside the range.
OUT_OF_RANGE = [
    ({"to": "9999-12-31"}, "to"),
    ({"from": "9999-12-30", "to": "9999-12-31"}, "from"),
    ({"to": "0001-01-05"}, "to"),
    ({"from": "0001-01-01", "to": "0001-01-05"}, "from"),
    ({"from": "1969-12-31", "to": "1970-01-05"}, "from"),
    ({"from": "9998-12-31", "to": "9999-01-01"}, "to"),
]
REPORT_OUT_OF_RANGE = [
    *OUT_OF_RANGE,
    ({"group": "week", "from": "9999-12-20", "to": "9999-12-31"}, "from"),
    ({"group": "week", "from": "0001-01-01", "to": "0001-01-07"}, "from"),
]
# The edges themselves are answered.
AT_THE_EDGES = [{"to": "9998-12-31"}, {"from": "1970-01-01", "to": "1970-01-01"}, {"to": "1970-01-05"},
                {"from": "9998-12-01", "to": "9998-12-31"}]


@pytest.fixture
def api():
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user(username="dates"))
    return client


@pytest.fixture
def admin():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="op", password="pw-123456789"))
    return client


@pytest.mark.parametrize(("query", "field"), OUT_OF_RANGE, ids=[str(q) for q, _ in OUT_OF_RANGE])
def test_the_usage_api_answers_an_out_of_range_day_with_a_400_naming_it(api, query, field):
    response = api.get(USAGE, query)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and set(error) == {"code", "message", "details"}
    assert field in error["details"]


@pytest.mark.parametrize("query", AT_THE_EDGES, ids=[str(q) for q in AT_THE_EDGES])
@pytest.mark.parametrize("group", ["day", "tier"])
def test_the_usage_api_answers_the_edges(api, query, group):
    response = api.get(USAGE, {**query, "group": group})
    assert response.status_code == 200, response.content
    assert dt.date.fromisoformat(response.json()["from"]) >= dates.FIRST_DAY
    assert response.json()["to"] == query["to"]


@pytest.mark.parametrize(("query", "field"), REPORT_OUT_OF_RANGE, ids=[str(q) for q, _ in REPORT_OUT_OF_RANGE])
def test_the_usage_report_shows_a_form_error_and_its_json_and_csv_a_400(admin, query, field):
    page = admin.get(PAGE, query)
    assert page.status_code == 400
    html = page.content.decode()
    assert "errornote" in html and dates.OUT_OF_RANGE in html
    for url in (DATA, CSV):
        response = admin.get(url, query)
        assert response.status_code == 400, (url, response.content)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and field in error["details"]


@pytest.mark.parametrize("query", [*AT_THE_EDGES, {"group": "week", "from": "9998-12-20", "to": "9998-12-31"},
                                   {"group": "week", "from": "1970-01-01", "to": "1970-01-10"}])
def test_the_usage_report_answers_the_edges(admin, query):
    for url in (PAGE, DATA, CSV):
        assert admin.get(url, query).status_code == 200, (url, query)


def test_a_report_filter_outside_the_range_is_refused_by_the_selectors_too():
    with pytest.raises(ValueError, match="1970-01-01 to 9998-12-31"):
        ReportFilter(start=dt.date(9999, 12, 20), end=dt.date(9999, 12, 31), group="week")


@pytest.mark.parametrize("query", ["changed_at__year=9999&changed_at__month=12&changed_at__day=31",
                                   "changed_at__year=9999&changed_at__month=12", "changed_at__year=9999",
                                   "changed_at__year=0&changed_at__month=1"])
def test_the_configuration_historys_date_drill_down_is_never_a_500(admin, query):
    response = admin.get(f"/admin/audit/configchange/?{query}")
    assert response.status_code == 302 and response["Location"].endswith("?e=1")  # Django's "bad lookup"
    assert admin.get("/admin/audit/configchange/?changed_at__year=9998&changed_at__month=12").status_code == 200
