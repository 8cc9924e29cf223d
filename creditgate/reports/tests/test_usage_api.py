"""GET /api/v1/credits/usage/: the account's credits spent per day and tier."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db.models import Sum
from rest_framework.test import APIClient

from creditgate.catalog.models import AIModelConfig
from creditgate.credits import pricing
from creditgate.credits import services as credits_services
from creditgate.credits.models import EntryKind, LedgerEntry
from creditgate.generation.models import Job, JobImage
from creditgate.generation.tests.conftest import finished, gen_env, jobs_inprocess, make_user  # noqa: F401

URL = "/api/v1/credits/usage/"
_keys = itertools.count()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def utc(day: dt.date, hour=12, minute=0, second=0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=dt.UTC)


def settled_job(user, *, kind: str, charged: int, when: dt.datetime, tier: str = "", images: int = 0,
                credits_per_image: int | None = None) -> Job:
    """A finished job as the charge path leaves it (the rows the usage reads), at `when`."""
    job = Job.objects.create(
        account=credits_services.account_for_user(user=user), user=user, kind=kind, status="succeeded",
        prompt="p", tier=tier, image_count=images, idempotency_key=f"k{next(_keys)}", request_fingerprint="f",
        credits_per_image=credits_per_image, credits_held=charged, credits_charged=charged, finished_at=when)
    JobImage.objects.bulk_create(JobImage(job=job, index=i, file=f"jobs/{job.pk}/{i}.png") for i in range(images))
    Job.objects.filter(pk=job.pk).update(created_at=when)
    return job


@pytest.fixture
def today():
    return dt.datetime.now(dt.UTC).date()


@pytest.mark.django_db
class TestAggregation:
    def test_days_are_dense_and_split_by_tier_with_articles_split_into_images_and_text(self, django_user_model,
                                                                                       today):
        user = django_user_model.objects.create_user(username="ulla")
        d1, d3 = today - dt.timedelta(days=3), today - dt.timedelta(days=1)
        settled_job(user, kind="image", tier="basic", charged=2, images=2, credits_per_image=1, when=utc(d1, 0, 0, 0))
        settled_job(user, kind="image", tier="premium", charged=30, images=2, credits_per_image=15,
                    when=utc(d1, 23, 59, 59))
        settled_job(user, kind="text", charged=4, when=utc(d3))
        # An article: 2 images delivered at 5 credits each, the rest (3) is its text.
        settled_job(user, kind="article", tier="quality", charged=13, images=2, credits_per_image=5, when=utc(d3))
        settled_job(user, kind="image", tier="basic", charged=0, when=utc(d3))  # failed: nothing charged

        body = client_for(user).get(URL, {"from": d1.isoformat(), "to": today.isoformat()}).json()

        assert body["group"] == "day" and body["timezone"] == "UTC"
        assert (body["from"], body["to"], body["total"]) == (d1.isoformat(), today.isoformat(), 49)
        assert body["labels"] == {"basic": "Basic", "quality": "Quality", "premium": "Premium", "text": "Text"}
        zero = {"basic": 0, "quality": 0, "premium": 0, "text": 0}
        assert body["rows"] == [
            {"date": d1.isoformat(), "credits": 32, "by_tier": {**zero, "basic": 2, "premium": 30}},
            {"date": (d1 + dt.timedelta(days=1)).isoformat(), "credits": 0, "by_tier": zero},
            {"date": d3.isoformat(), "credits": 17, "by_tier": {**zero, "quality": 10, "text": 7}},
            {"date": today.isoformat(), "credits": 0, "by_tier": zero},
        ]

        by_tier = client_for(user).get(URL, {"from": d1.isoformat(), "group": "tier"}).json()
        assert by_tier["rows"] == [{"tier": "basic", "label": "Basic", "credits": 2},
                                   {"tier": "quality", "label": "Quality", "credits": 10},
                                   {"tier": "premium", "label": "Premium", "credits": 30},
                                   {"tier": "text", "label": "Text", "credits": 7}]
        assert by_tier["total"] == 49

    def test_the_range_is_whole_utc_days_both_ends_included(self, django_user_model, today):
        user = django_user_model.objects.create_user(username="umar")
        day = today - dt.timedelta(days=5)
        settled_job(user, kind="text", charged=1, when=utc(day - dt.timedelta(days=1), 23, 59, 59))
        settled_job(user, kind="text", charged=2, when=utc(day, 0, 0, 0))
        settled_job(user, kind="text", charged=4, when=utc(day, 23, 59, 59))
        settled_job(user, kind="text", charged=8, when=utc(day + dt.timedelta(days=1), 0, 0, 0))

        body = client_for(user).get(URL, {"from": day.isoformat(), "to": day.isoformat()}).json()

        assert body["rows"] == [{"date": day.isoformat(), "credits": 6, "by_tier": {"text": 6}}]

    def test_defaults_to_the_last_30_days_and_only_this_account(self, django_user_model, today):
        user = django_user_model.objects.create_user(username="uma")
        other = django_user_model.objects.create_user(username="otto")
        settled_job(user, kind="text", charged=3, when=utc(today))
        settled_job(user, kind="text", charged=100, when=utc(today - dt.timedelta(days=30)))  # a day too old
        settled_job(other, kind="text", charged=50, when=utc(today))

        body = client_for(user).get(URL).json()

        assert (body["from"], body["to"]) == ((today - dt.timedelta(days=29)).isoformat(), today.isoformat())
        assert len(body["rows"]) == 30 and body["total"] == 3

    def test_no_spending_is_an_empty_range_not_an_error(self, django_user_model, today):
        user = django_user_model.objects.create_user(username="una")
        body = client_for(user).get(URL, {"group": "tier"}).json()
        assert (body["total"], body["labels"], body["rows"]) == (0, {}, [])

    def test_the_query_count_does_not_grow_with_the_jobs(self, django_user_model, today,
                                                         django_assert_max_num_queries):
        user = django_user_model.objects.create_user(username="uri")
        client = client_for(user)
        for n in range(40):
            settled_job(user, kind="article", tier="basic", charged=5, images=2, credits_per_image=1,
                        when=utc(today - dt.timedelta(days=n % 20)))
        # The account lookup, the aggregate: nothing per job or per day.
        with django_assert_max_num_queries(3):
            assert client.get(URL).json()["total"] == 200
        with django_assert_max_num_queries(3):
            assert client.get(URL, {"group": "tier"}).json()["rows"] == [
                {"tier": "basic", "label": "Basic", "credits": 80}, {"tier": "text", "label": "Text", "credits": 120}]


@pytest.mark.django_db
@pytest.mark.parametrize("query, field", [
    ({"from": "2026-13-01"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-02-30"}, "from"),
    ({"from": "2026-05-02", "to": "2026-05-01"}, "from"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "from"),  # 367 days
    ({"group": "week"}, "group"),
    ({"group": "DAY"}, "group"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(django_user_model, query, field):
    user = django_user_model.objects.create_user(username="bad")
    response = client_for(user).get(URL, query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert list(error["details"]) == [field], error
    assert error["message"] == f"Invalid input: {field}."


@pytest.mark.django_db
def test_empty_parameters_mean_the_defaults(django_user_model, today):
    user = django_user_model.objects.create_user(username="empty")
    body = client_for(user).get(URL + "?from=&to=&group=").json()
    assert (body["from"], body["to"], body["group"]) == (
        (today - dt.timedelta(days=29)).isoformat(), today.isoformat(), "day")


@pytest.mark.django_db
def test_a_full_year_is_allowed(django_user_model):
    user = django_user_model.objects.create_user(username="year")
    body = client_for(user).get(URL, {"from": "2025-01-01", "to": "2026-01-01"}).json()
    assert len(body["rows"]) == 366


@pytest.mark.django_db
def test_anonymous_gets_a_401_in_the_error_shape():
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.usefixtures("gen_env")
def test_real_jobs_add_up_to_the_ledger_captures_by_tier(today):
    """Through the real charge path (sandbox providers): what the usage says each tier cost is what
    the ledger captured for those jobs."""
    user = make_user("real", credits=500)
    api = client_for(user)
    basic = finished(api, api.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 2},
                                   format="json"))
    text = finished(api, api.post("/api/v1/text/generations/", {"prompt": "Write about foxes.", "max_tokens": 100},
                                  format="json"))
    article = finished(api, api.post("/api/v1/articles/generations/",
                                     {"prompt": "Foxes", "tier": "quality", "image_count": 2, "max_tokens": 100},
                                     format="json"))
    assert {basic["status"], text["status"], article["status"]} == {"succeeded"}
    quality_model = AIModelConfig.objects.filter(quality_tier="quality", is_active=True).first()
    assert quality_model is not None
    article_images = pricing.price_images(model=quality_model, count=len(article["images"])).credits

    body = api.get(URL, {"group": "tier"}).json()

    assert body["rows"] == [
        {"tier": "basic", "label": "Basic", "credits": basic["credits_charged"]},
        {"tier": "quality", "label": "Quality", "credits": article_images},
        {"tier": "text", "label": "Text",
         "credits": text["credits_charged"] + article["credits_charged"] - article_images},
    ]
    captured = LedgerEntry.objects.filter(account=credits_services.account_for_user(user=user),
                                          kind=EntryKind.CAPTURE).aggregate(total=Sum("amount"))["total"]
    assert body["total"] == -captured
    [day] = [row for row in api.get(URL).json()["rows"] if row["credits"]]
    assert day == {"date": today.isoformat(), "credits": body["total"],
                   "by_tier": {row["tier"]: row["credits"] for row in body["rows"]}}


def test_the_schema_declares_the_parameters_and_the_error_responses():
    from drf_spectacular.generators import SchemaGenerator

    operation = SchemaGenerator().get_schema(request=None, public=True)["paths"]["/api/v1/credits/usage/"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "group"}
    assert {p["schema"].get("enum", [None])[0] for p in operation["parameters"] if p["name"] == "group"} == {"day"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Usage")
    for status in ("400", "401"):
        assert operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


@pytest.mark.django_db
def test_a_to_with_no_default_range_before_it_is_a_400_not_a_500(django_user_model):
    user = django_user_model.objects.create_user(username="ancient")
    response = client_for(user).get(URL, {"to": "0001-01-05"})
    assert response.status_code == 400 and list(response.json()["error"]["details"]) == ["to"]
