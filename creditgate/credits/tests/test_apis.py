"""The credits API through HTTP: what a user sees, in the contract's shape."""

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from creditgate.catalog.models import AIModelConfig, ImageTier
from creditgate.credits import pricing, services

from .conftest import make_user, snapshot

pytestmark = pytest.mark.django_db


def test_balance_of_a_granted_user(api, account):
    services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f")
    response = api.get("/api/v1/credits/balance/")
    assert response.status_code == 200
    assert response.json() == {"balance": 100, "held": 30, "available": 70}


def test_anonymous_gets_401_in_the_error_shape():
    response = APIClient().get("/api/v1/credits/balance/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_token_authentication_with_drf_create_token(user):
    call_command("drf_create_token", user.username)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=user).key}")
    assert client.get("/api/v1/credits/balance/").json()["available"] == 100


def test_token_and_account_are_read_in_one_query_and_a_moved_member_follows(user, django_assert_num_queries):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.get("/api/v1/credits/balance/")
    with django_assert_num_queries(2):  # the token with user and account, then the counters
        assert client.get("/api/v1/credits/balance/").json()["available"] == 100
    team = make_user("team-owner", credits=40)
    services.credits_grant(account=services.account_for_user(user=user), amount=-100, kind="adjustment")
    services.account_member_add(account=services.account_for_user(user=team), user=user)
    assert client.get("/api/v1/credits/balance/").json()["available"] == 40


def test_session_authentication(client, user):
    client.force_login(user)
    assert client.get("/api/v1/credits/balance/").json()["balance"] == 100


def test_transactions_newest_first_paginated_and_only_the_users_own(api, account):
    other = make_user("mallory", credits=7)
    for i in range(25):
        services.credits_grant(account=account, amount=1, reason=f"r{i}")
    page1 = api.get("/api/v1/credits/transactions/").json()
    assert page1["count"] == 26 and len(page1["results"]) == 20 and page1["next"]
    newest = page1["results"][0]
    assert newest["reason"] == "r24" and newest["kind"] == "grant" and newest["amount"] == 1
    assert newest["available_after"] == 125 and newest["balance_after"] == 125
    ids = [e["id"] for e in page1["results"]]
    assert ids == sorted(ids, reverse=True)
    page2 = api.get(page1["next"]).json()
    assert [e["reason"] for e in page2["results"]][-1] == "test"
    assert not any("mallory" in str(e) or e["amount"] == 7 for e in page1["results"] + page2["results"])
    other_client = APIClient()
    other_client.force_authenticate(other)
    assert other_client.get("/api/v1/credits/transactions/").json()["count"] == 1


def test_entries_show_the_rate_they_applied(api, account):
    hold, _ = services.hold_place(account=account, amount=5, idempotency_key="k", fingerprint="f",
                                  rate={"model": "m", "credits_per_image": 5, "count": 1}, reference="job:x")
    services.hold_capture(hold_id=hold.pk, amount=5, rate=hold.rate)
    capture = api.get("/api/v1/credits/transactions/").json()["results"][0]
    assert capture["kind"] == "capture" and capture["amount"] == -5 and capture["reference"] == "job:x"
    assert capture["rate"]["credits_per_image"] == 5


@pytest.mark.parametrize("tier, per_image", [("basic", 1), ("quality", 5), ("premium", 15)])
@pytest.mark.parametrize("count", [1, 3, 8])
def test_image_estimates_follow_the_rule(api, tier, per_image, count):
    response = api.post("/api/v1/credits/estimate/", {"kind": "image", "tier": tier, "count": count}, format="json")
    assert response.status_code == 200
    assert response.json()["credits"] == per_image * count


def test_text_estimate_equals_the_pricing_modules_hold(api):
    model = AIModelConfig.objects.get(model_type="text", is_default=True)
    body = api.post("/api/v1/credits/estimate/", {"kind": "text", "prompt": "  A haiku  ", "max_tokens": 2000},
                    format="json").json()
    assert body["credits_max"] == pricing.price_text_max(model=model, prompt="A haiku", max_tokens=2000).credits
    default = api.post("/api/v1/credits/estimate/", {"kind": "text", "prompt": "A haiku"}, format="json").json()
    assert default["max_tokens"] == 1024


@pytest.mark.parametrize("body, field", [
    ({"kind": "image", "tier": "gold", "count": 1}, "tier"),
    ({"kind": "image", "tier": "basic", "count": 0}, "count"),
    ({"kind": "image", "tier": "basic", "count": 9}, "count"),
    ({"kind": "image", "tier": "basic", "count": "2"}, "count"),
    ({"kind": "image", "tier": "basic"}, "count"),
    ({"kind": "video"}, "kind"),
    ({"kind": "text"}, "prompt"),
    ({"kind": "text", "prompt": "   "}, "prompt"),
    ({"kind": "text", "prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({"kind": "text", "prompt": "hi", "max_tokens": 10**9}, "max_tokens"),
])
def test_bad_estimates_are_400_naming_the_field(api, account, body, field):
    before = snapshot(account)
    response = api.post("/api/v1/credits/estimate/", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["details"]
    assert snapshot(account) == before


def test_a_tier_with_no_servable_model_is_422(api):
    AIModelConfig.objects.filter(quality_tier="premium").update(is_active=False)
    response = api.post("/api/v1/credits/estimate/", {"kind": "image", "tier": "premium", "count": 1}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "tier_unavailable"


def test_a_price_change_moves_estimates_but_not_history(api, account):
    _hold, _ = services.hold_place(account=account, amount=5, idempotency_key="k", fingerprint="f",
                                  rate={"credits_per_image": 5})
    ImageTier.objects.filter(tier="quality").update(credits_per_image=7)
    estimate = api.post("/api/v1/credits/estimate/", {"kind": "image", "tier": "quality", "count": 2}, format="json")
    assert estimate.json()["credits"] == 14
    assert api.get("/api/v1/credits/transactions/").json()["results"][0]["rate"] == {"credits_per_image": 5}


def test_estimates_read_the_catalog_once_and_see_an_admin_change_at_once(api, django_assert_num_queries):
    body = {"kind": "image", "tier": "quality", "count": 2}
    api.post("/api/v1/credits/estimate/", body, format="json")
    # No catalog query: the two queries are the caller's binding limit (their cap and available
    # credits) and their jobs in flight (the fair shares' limit that binds).
    with django_assert_num_queries(2):
        assert api.post("/api/v1/credits/estimate/", body, format="json").json()["credits"] == 10
    tier = ImageTier.objects.get(tier="quality")
    tier.credits_per_image = 6
    tier.save()  # as the admin saves it
    assert api.post("/api/v1/credits/estimate/", body, format="json").json()["credits"] == 12
    for model in AIModelConfig.objects.filter(quality_tier="quality", is_active=True):  # the tier and its backup
        model.is_active = False
        model.save()
    assert api.post("/api/v1/credits/estimate/", body, format="json").status_code == 422
