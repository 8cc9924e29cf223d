"""Generation through HTTP against the sandbox emulator: the real adapters, a local far end."""

import math

import pytest
from rest_framework.test import APIClient

from creditgate.catalog.models import AIModelConfig, ImageTier, QualityTier
from creditgate.core import runtime
from creditgate.generation.tests.conftest import START_CREDITS, balance, counts, finished, make_user

pytestmark = pytest.mark.usefixtures("gen_env")

TIER_PRICES = {"basic": 1, "quality": 5, "premium": 15}


@pytest.mark.parametrize("tier", QualityTier.values)
@pytest.mark.parametrize("count", [1, 8])
def test_each_tier_charges_price_times_count_and_returns_that_many_images(api, user, tier, count):
    job = finished(api, api.post("/api/v1/images/generations/", {"prompt": "a red fox in snow", "tier": tier,
                                                                   "count": count}, format="json"))

    assert job["status"] == "succeeded", job
    assert job["credits_charged"] == TIER_PRICES[tier] * count
    assert len(job["images"]) == count
    for image in job["images"]:
        got = api.get(image["url"])
        assert got.status_code == 200
        assert got["Content-Type"] == "image/png"
        assert b"".join(got.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    assert balance(user) == {"balance": START_CREDITS - TIER_PRICES[tier] * count, "held": 0,
                             "available": START_CREDITS - TIER_PRICES[tier] * count}


def test_text_charges_ceil_of_reported_tokens(api, user):
    job = finished(api, api.post("/api/v1/text/generations/", {"prompt": "Write about foxes.", "max_tokens": 300},
                                 format="json"))

    assert job["status"] == "succeeded", job
    assert job["text"]
    assert job["text_model"] == AIModelConfig.objects.get(model_type="text", is_default=True).model_name
    tokens_per_credit = AIModelConfig.objects.get(model_type="text", is_default=True).tokens_per_credit
    expected = math.ceil(job["tokens"]["total"] / tokens_per_credit)
    assert job["tokens"]["total"] == job["tokens"]["prompt"] + job["tokens"]["completion"]
    assert job["credits_charged"] == expected
    assert balance(user)["available"] == START_CREDITS - expected


def test_article_charges_the_sum_of_both_rules(api, user):
    job = finished(api, api.post("/api/v1/articles/generations/",
                                 {"prompt": "Foxes in winter", "tier": "basic", "image_count": 3, "max_tokens": 200},
                                 format="json"))

    assert job["status"] == "succeeded", job
    assert len(job["images"]) == 3 and job["text"]
    default_text = AIModelConfig.objects.get(model_type="text", is_default=True)
    expected = 3 * 1 + math.ceil(job["tokens"]["total"] / default_text.tokens_per_credit)
    assert job["credits_charged"] == expected
    assert balance(user)["available"] == START_CREDITS - expected


def test_partial_batch_charges_only_delivered_images(api, user, sandbox):
    sandbox.configure(error_rate=1.0, error_kind="partial")
    job = finished(api, api.post("/api/v1/images/generations/", {"prompt": "foxes", "tier": "premium", "count": 4},
                                 format="json"))

    delivered = len(job["images"])
    assert 0 < delivered < 4, job
    assert job["status"] == "partial"
    assert job["credits_charged"] == 15 * delivered
    assert f"Delivered {delivered} of 4 images" in job["error"]["message"]
    left = START_CREDITS - 15 * delivered
    assert balance(user) == {"balance": left, "held": 0, "available": left}


@pytest.mark.parametrize("kind", ["server_error", "content_refusal"])
@pytest.mark.parametrize("tier", ["basic", "quality"])
def test_provider_failure_fails_the_job_and_charges_nothing(api, user, sandbox, kind, tier):
    sandbox.configure(error_rate=1.0, error_kind=kind)
    job = finished(api, api.post("/api/v1/images/generations/", {"prompt": "foxes", "tier": tier, "count": 2},
                                 format="json"))

    assert job["status"] == "failed"
    assert job["credits_charged"] == 0
    assert job["images"] == []
    assert "No credits were charged." in job["error"]["message"]
    assert "sandbox" not in job["error"]["message"].lower()  # no key, no raw provider body
    assert balance(user) == {"balance": START_CREDITS, "held": 0, "available": START_CREDITS}


def test_rate_limited_once_is_retried_and_charged_once(api, user, sandbox):
    sandbox.fail_next(1, "rate_limit")
    job = finished(api, api.post("/api/v1/images/generations/", {"prompt": "foxes", "tier": "basic", "count": 3},
                                 format="json"))

    assert job["status"] == "succeeded", job
    assert job["credits_charged"] == 3
    assert balance(user)["available"] == START_CREDITS - 3


def test_same_idempotency_key_and_body_is_one_job_charged_once(api, user):
    body = {"prompt": "foxes", "tier": "quality", "count": 2}
    first = api.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = api.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    finished(api, first)
    third = api.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert third.json()["id"] == first.json()["id"]
    assert balance(user)["available"] == START_CREDITS - 10


def test_same_idempotency_key_with_another_body_is_a_conflict(api, user):
    api.post("/api/v1/images/generations/", {"prompt": "foxes", "tier": "basic", "count": 1}, format="json",
             HTTP_IDEMPOTENCY_KEY="k-2")
    before = counts()
    response = api.post("/api/v1/images/generations/", {"prompt": "foxes", "tier": "basic", "count": 2},
                        format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert counts() == before


BAD_IMAGE_BODIES = [
    ({"prompt": "x", "tier": "basic", "count": 0}, "count"),
    ({"prompt": "x", "tier": "basic", "count": 9}, "count"),
    ({"prompt": "x", "tier": "basic", "count": -1}, "count"),
    ({"prompt": "x", "tier": "basic", "count": "abc"}, "count"),
    ({"prompt": "x", "tier": "basic", "count": 2.5}, "count"),
    ({"prompt": "x", "tier": "basic", "count": None}, "count"),
    ({"prompt": "x", "tier": "basic", "count": True}, "count"),
    ({"prompt": "x", "tier": "basic"}, "count"),
    ({"prompt": "x", "tier": "ultra", "count": 1}, "tier"),
    ({"prompt": "x", "tier": "runware:97@1", "count": 1}, "tier"),
    ({"prompt": "x", "count": 1}, "tier"),
    ({"tier": "basic", "count": 1}, "prompt"),
    ({"prompt": "", "tier": "basic", "count": 1}, "prompt"),
    ({"prompt": "   ", "tier": "basic", "count": 1}, "prompt"),
    ({"prompt": 42, "tier": "basic", "count": 1}, "prompt"),
    ({"prompt": ["a"], "tier": "basic", "count": 1}, "prompt"),
    ({"prompt": "x" * 5000, "tier": "basic", "count": 1}, "prompt"),
]


@pytest.mark.parametrize("body,field", BAD_IMAGE_BODIES)
def test_bad_image_input_is_a_400_naming_the_field_and_changes_nothing(api, user, body, field):
    before = counts()
    response = api.post("/api/v1/images/generations/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]
    assert counts() == before
    assert balance(user)["available"] == START_CREDITS


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_malformed_json_is_a_400(api, raw):
    before = counts()
    response = api.generic("POST", "/api/v1/images/generations/", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert counts() == before


@pytest.mark.parametrize("body,field", [
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 10_000_000}, "max_tokens"),
    ({"prompt": None}, "prompt"),
])
def test_bad_text_input_is_a_400(api, body, field):
    before = counts()
    response = api.post("/api/v1/text/generations/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert counts() == before


def test_article_with_more_images_than_allowed_is_a_400(api):
    response = api.post("/api/v1/articles/generations/", {"prompt": "x", "tier": "basic", "image_count": 5},
                        format="json")
    assert response.status_code == 400
    assert "image_count" in response.json()["error"]["details"]


def test_tier_without_a_servable_model_is_422(api):
    AIModelConfig.objects.filter(quality_tier="premium").update(is_active=False)
    before = counts()
    response = api.post("/api/v1/images/generations/", {"prompt": "x", "tier": "premium", "count": 1}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "tier_unavailable"
    assert counts() == before


def test_short_balance_is_402_with_required_and_available(settings):
    poor = make_user("poor", credits=3)
    client = APIClient()
    client.force_authenticate(poor)
    before = counts()
    response = client.post("/api/v1/images/generations/", {"prompt": "x", "tier": "premium", "count": 1},
                           format="json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["details"] == {"required": 15, "available": 3}
    assert error["message"] == "This needs 15 credits; you have 3."
    assert counts() == before


def test_another_users_job_and_images_are_404(api):
    job = finished(api, api.post("/api/v1/images/generations/", {"prompt": "x", "tier": "basic", "count": 1},
                                 format="json"))
    other = APIClient()
    other.force_authenticate(make_user("mallory"))
    assert other.get(f"/api/v1/jobs/{job['id']}/").status_code == 404
    assert other.get(job["images"][0]["url"]).status_code == 404
    assert other.get("/api/v1/jobs/").json()["count"] == 0
    assert api.get("/api/v1/jobs/").json()["count"] == 1


def test_over_the_generation_rate_is_429_with_retry_after_and_changes_nothing(api, settings):
    settings.CREDITGATE_GENERATION_RATE = (2, 60)
    body = {"prompt": "x", "tier": "basic", "count": 1}
    assert api.post("/api/v1/images/generations/", {**body, "count": 0}, format="json").status_code == 400
    for _ in range(2):  # the refused request above did not count
        assert api.post("/api/v1/images/generations/", body, format="json").status_code == 202
    before = counts()
    response = api.post("/api/v1/text/generations/", {"prompt": "x"}, format="json")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert 1 <= error["details"]["retry_after"] <= 60
    assert response["Retry-After"] == str(error["details"]["retry_after"])
    assert counts() == before
    other = APIClient()  # another account has its own allowance
    other.force_authenticate(make_user("bob"))
    assert other.post("/api/v1/images/generations/", body, format="json").status_code == 202


def test_anonymous_is_401():
    response = APIClient().post("/api/v1/images/generations/", {"prompt": "x", "tier": "basic", "count": 1},
                                format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_price_change_after_hold_does_not_change_the_charge(api, user, sandbox):
    sandbox.configure(latency_ms=300)
    response = api.post("/api/v1/images/generations/", {"prompt": "x", "tier": "quality", "count": 2}, format="json")
    ImageTier.objects.filter(tier="quality").update(credits_per_image=50)
    job = finished(api, response)
    assert job["credits_charged"] == 10


def test_a_jobs_answer_is_what_its_declared_fields_give(api, user, sandbox):
    """JobOutputSerializer writes its representation out (it is on every answer's path): it must
    stay what DRF makes of the declared fields, the schema's, for every kind of job and state."""
    from rest_framework import serializers

    from creditgate.generation.apis import JobOutputSerializer
    from creditgate.generation.models import Job

    bodies = [("images", {"prompt": "a fox", "tier": "basic", "count": 2}),
              ("articles", {"prompt": "Foxes.", "tier": "basic", "image_count": 1}),
              ("text", {"prompt": "Foxes."})]
    ids = [finished(api, api.post(f"/api/v1/{kind}/generations/", body, format="json"))["id"]
           for kind, body in bodies]
    sandbox.configure(error_rate=1.0, error_kind="content_refusal")
    ids.append(finished(api, api.post("/api/v1/text/generations/", {"prompt": "Foxes."}, format="json"))["id"])
    queued = api.post("/api/v1/text/generations/", {"prompt": "Foxes."}, format="json")
    ids.append(queued.json()["id"])

    request = api.get("/api/v1/jobs/").wsgi_request
    for job in Job.objects.filter(pk__in=ids).select_related("user").prefetch_related("images"):
        serializer = JobOutputSerializer(job, context={"request": request})
        declared = serializers.Serializer.to_representation(serializer, job)
        assert list(serializer.data.items()) == list(declared.items())
    runtime.wait_idle()
