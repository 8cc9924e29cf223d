"""The request layer through HTTP: replays answered first, the declared rules, estimate = hold."""

import pytest
from rest_framework.test import APIClient

from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings
from creditgate.core import runtime
from creditgate.credits import services as credits_services
from creditgate.generation.tests.conftest import START_CREDITS, balance, counts, make_user

pytestmark = pytest.mark.usefixtures("gen_env")

IMAGES = "/api/v1/images/generations/"
TEXT = "/api/v1/text/generations/"
ARTICLES = "/api/v1/articles/generations/"
ESTIMATE = "/api/v1/credits/estimate/"


def post(api, url, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(url, body, format="json", **headers)


def test_a_replay_while_over_the_limit_returns_its_job_not_429(api, settings):
    settings.CREDITGATE_GENERATION_RATE = (2, 60)
    body = {"prompt": "a fox", "tier": "basic", "count": 1}
    first = post(api, IMAGES, body, key="k-replay")
    assert first.status_code == 202
    assert post(api, TEXT, {"prompt": "Hello."}).status_code == 202
    assert post(api, IMAGES, body).status_code == 429  # the limit is reached
    before = counts()

    replay = post(api, IMAGES, body, key="k-replay")

    assert replay.status_code == 202, replay.content
    assert replay.json()["id"] == first.json()["id"]
    assert replay["Idempotent-Replayed"] == "true"
    assert counts() == before
    assert post(api, IMAGES, body).status_code == 429  # the replay did not count either


def test_a_rate_that_is_off_limits_nothing(api, settings):
    from creditgate.settings import _rate

    assert _rate(" OFF ") is None and _rate("120/min") == (120, 60)
    with pytest.raises(Exception, match="120/min"):
        _rate("0/min")
    settings.CREDITGATE_GENERATION_RATE = _rate("off")
    answers = [post(api, TEXT, {"prompt": f"Hello {n}."}).status_code for n in range(4)]
    assert answers == [202] * 4


def test_a_replay_with_another_body_is_409_even_over_the_limit(api, settings):
    settings.CREDITGATE_GENERATION_RATE = (1, 60)
    assert post(api, IMAGES, {"prompt": "a fox", "tier": "basic", "count": 1}, key="k-409").status_code == 202
    before = counts()
    response = post(api, IMAGES, {"prompt": "a fox", "tier": "basic", "count": 2}, key="k-409")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert counts() == before


def test_a_replay_after_the_tier_was_deactivated_and_the_credits_spent_returns_its_job(api, user):
    body = {"prompt": "a fox", "tier": "premium", "count": 2}
    first = post(api, IMAGES, body, key="k-gone")
    assert first.status_code == 202
    for model in AIModelConfig.objects.filter(quality_tier="premium", is_active=True):
        model.is_active = False
        model.save()  # as the admin saves it
    assert post(api, IMAGES, body).status_code == 422  # a new request is refused now
    # The first job has run meanwhile (on the in-process pool): with its tier gone it failed and its
    # hold came back. Spend everything only once it has, or its release would land after the spend.
    runtime.wait_idle()
    account = credits_services.account_for_user(user=user)
    credits_services.credits_grant(account=account, amount=-balance(user)["available"], kind="adjustment")
    assert balance(user)["available"] == 0
    replay = post(api, IMAGES, body, key="k-gone")
    assert (replay.status_code, replay.json()["id"]) == (202, first.json()["id"])


def test_a_replay_is_recognised_by_the_body_as_sent(api):
    """The fingerprint is the raw body's: a body that cleans to the same input is another request."""
    assert post(api, TEXT, {"prompt": "Hello."}, key="k-raw").status_code == 202
    assert post(api, TEXT, {"prompt": "Hello."}, key="k-raw").status_code == 202
    assert post(api, TEXT, {"prompt": " Hello. "}, key="k-raw").status_code == 409
    assert post(api, IMAGES, {"prompt": "Hello."}, key="k-raw").status_code == 409  # another endpoint


def test_admin_limits_are_the_rules_and_the_schemas_bounds(api):
    settings_row = GlobalIntegrationSettings.objects.get()
    settings_row.max_images_per_request = 3
    settings_row.save()  # as the admin saves it
    schema = APIClient().get("/api/schema/?format=json").json()["components"]["schemas"]
    assert schema["ImageGenerationRequest"]["properties"]["count"]["maximum"] == 3
    assert schema["ImageGenerationRequest"]["properties"]["tier"]["$ref"].endswith("/TierEnum")
    assert schema["TierEnum"]["enum"] == ["basic", "quality", "premium"]
    assert schema["TextGenerationRequest"]["required"] == ["prompt"]
    before = counts()
    response = post(api, IMAGES, {"prompt": "a fox", "tier": "basic", "count": 4})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["count"] == ["Ensure this value is less than or equal to 3."]
    assert counts() == before
    assert post(api, IMAGES, {"prompt": "a fox", "tier": "basic", "count": 3}).status_code == 202


BAD = [
    (IMAGES, {"prompt": "a fox", "tier": "Basic", "count": 1}, "tier"),
    (IMAGES, {"prompt": "\t\n ", "tier": "basic", "count": 1}, "prompt"),
    (IMAGES, {"prompt": "a\x00fox", "tier": "basic", "count": 1}, "prompt"),
    (IMAGES, {"prompt": "x" * 1801, "tier": "basic", "count": 1}, "prompt"),
    (TEXT, {"max_tokens": 10}, "prompt"),
    (TEXT, {"prompt": "Hello.", "max_tokens": 0}, "max_tokens"),
    (TEXT, {"prompt": "x" * 20001}, "prompt"),
    (ARTICLES, {"prompt": "Foxes", "image_count": 1}, "tier"),
    (ARTICLES, {"prompt": "Foxes", "tier": "basic", "image_count": -1}, "image_count"),
    (ARTICLES, {"prompt": "Foxes", "tier": "basic", "image_count": 5}, "image_count"),
    (ARTICLES, {"prompt": "Foxes", "tier": "basic", "max_tokens": True}, "max_tokens"),
    (ESTIMATE, {"kind": "article", "prompt": "Foxes", "tier": "basic", "image_count": 5}, "image_count"),
    (ESTIMATE, {"kind": "image", "tier": "basic", "count": 1.0}, "count"),
    (ESTIMATE, ["image"], "kind"),
]


@pytest.mark.parametrize("url,body,field", BAD)
def test_the_declared_rules_refuse_bad_input_with_400_and_change_nothing(api, user, url, body, field):
    before = counts()
    response = api.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert list(error["details"]) == [field]
    assert counts() == before
    assert balance(user)["available"] == START_CREDITS


@pytest.mark.parametrize("url,body", [
    (IMAGES, {"kind": "image", "prompt": "a fox", "tier": "quality", "count": 3}),
    (TEXT, {"kind": "text", "prompt": "  Write about foxes, at length. \u00e9\u00e9\u00e9 "}),
    (TEXT, {"kind": "text", "prompt": "Write about foxes.", "max_tokens": 700}),
    (ARTICLES, {"kind": "article", "prompt": "Foxes in winter", "tier": "premium", "image_count": 2,
                "max_tokens": 300}),
    (ARTICLES, {"kind": "article", "prompt": "Foxes in winter", "tier": "basic"}),  # the defaults
    (ARTICLES, {"kind": "article", "prompt": "Foxes in winter", "tier": "basic", "image_count": 0}),
])
def test_the_estimate_and_the_post_agree_on_the_price(api, url, body):
    estimate = api.post(ESTIMATE, body, format="json")
    assert estimate.status_code == 200, estimate.content
    quoted = estimate.json()
    job = api.post(url, {k: v for k, v in body.items() if k != "kind"}, format="json")
    assert job.status_code == 202, job.content
    assert job.json()["credits_held"] == quoted.get("credits", quoted.get("credits_max"))
    if "max_tokens" in quoted:
        assert job.json()["max_tokens"] == quoted["max_tokens"]


def test_an_article_estimate_says_what_it_priced(api):
    quoted = api.post(ESTIMATE, {"kind": "article", "prompt": "Foxes", "tier": "quality", "image_count": 2},
                      format="json").json()
    assert quoted["kind"] == "article" and quoted["image_count"] == 2 and quoted["tier"] == "quality"
    assert quoted["credits_per_image"] == 5
    assert quoted["credits_max"] > 2 * 5


def test_another_account_may_use_the_same_key(api):
    assert post(api, IMAGES, {"prompt": "a fox", "tier": "basic", "count": 1}, key="shared").status_code == 202
    other = APIClient()
    other.force_authenticate(make_user("bob"))
    response = post(other, IMAGES, {"prompt": "a wolf", "tier": "basic", "count": 1}, key="shared")
    assert response.status_code == 202
    assert "Idempotent-Replayed" not in response
